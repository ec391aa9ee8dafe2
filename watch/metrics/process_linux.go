package metrics

// The process_* metrics, read the cheap way: client_golang's process
// collector (procfs) opens and parses /proc/self/stat, /proc/stat (for the
// boot time), /proc/self/limits and the namespace's /proc/net/netstat at
// every scrape, which was most of a scrape's registry time. Here the start
// time is read once, the CPU time is one getrusage, the memory one read of
// /proc/self/statm, the limits two getrlimit and the open files one
// directory read. The network counters are left out: /proc/self/net/netstat
// counts the whole network namespace, not the process.

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

type processCollector struct {
	cpu, openFDs, maxFDs, vsize, maxVsize, rss, start *prometheus.Desc
	startTime                                         float64 // 0: unknown
	page                                              float64
}

func newProcessCollector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &processCollector{
		cpu:       d("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."),
		openFDs:   d("process_open_fds", "Number of open file descriptors."),
		maxFDs:    d("process_max_fds", "Maximum number of open file descriptors."),
		vsize:     d("process_virtual_memory_bytes", "Virtual memory size in bytes."),
		maxVsize:  d("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes."),
		rss:       d("process_resident_memory_bytes", "Resident memory size in bytes."),
		start:     d("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
		startTime: processStart(),
		page:      float64(os.Getpagesize()),
	}
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.openFDs, c.maxFDs, c.vsize, c.maxVsize, c.rss, c.start} {
		ch <- d
	}
}

// Collect sends what it could read; a metric it could not is left out.
func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, s)
	}
	if size, res, ok := statm(); ok {
		ch <- prometheus.MustNewConstMetric(c.vsize, prometheus.GaugeValue, float64(size)*c.page)
		ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(res)*c.page)
	}
	if n, err := openFiles(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.openFDs, prometheus.GaugeValue, float64(n))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(c.maxFDs, prometheus.GaugeValue, float64(lim.Cur))
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(c.maxVsize, prometheus.GaugeValue, float64(lim.Cur))
	}
	if c.startTime > 0 {
		ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, c.startTime)
	}
}

// statm is the process' virtual and resident size, in pages.
func statm() (size, resident uint64, ok bool) {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	var buf [256]byte
	n, _ := f.Read(buf[:])
	fs := bytes.Fields(buf[:n])
	if len(fs) < 2 {
		return 0, 0, false
	}
	size, err1 := strconv.ParseUint(string(fs[0]), 10, 64)
	resident, err2 := strconv.ParseUint(string(fs[1]), 10, 64)
	return size, resident, err1 == nil && err2 == nil
}

// openFiles counts the entries of /proc/self/fd but the one reading it,
// without a string per entry.
func openFiles() (int, error) {
	fd, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	var buf [8192]byte
	n := 0
	for {
		k, err := syscall.ReadDirent(fd, buf[:])
		if err != nil {
			return 0, err
		}
		if k <= 0 {
			return n - 1, nil
		}
		// linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
		for off := 0; off+19 < k; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen == 0 {
				break
			}
			if buf[off+19] != '.' {
				n++
			}
			off += reclen
		}
	}
}

// userHZ is the unit of /proc/PID/stat's times, fixed by the kernel's ABI.
const userHZ = 100

// processStart is the process' start time in seconds since the epoch, from
// its start in clock ticks since boot and the boot time; 0 when unknown.
func processStart() float64 {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// After the command's name, in parentheses, starttime is the 20th field.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fs := bytes.Fields(stat[i+1:])
	if len(fs) < 20 {
		return 0
	}
	ticks, err := strconv.ParseUint(string(fs[19]), 10, 64)
	if err != nil {
		return 0
	}
	all, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(all, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			boot, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0
			}
			return float64(boot) + float64(ticks)/userHZ
		}
	}
	return 0
}
