package store

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// BenchmarkWriter is the store's cost per Result of a 65,536-target ping
// sweep (127.0.0.0/16, every target up, as job/icmp makes its Results), as
// a --db sweep pays it: one op is one sweep written into a new file, from
// NewWriter to the store's Close (its last checkpoint). cpu-ns/row is the
// process's CPU time, all threads (the writer commits beside the sweep, on
// goroutines and a thread of its own), per Result; sys-ns/row the kernel's
// part of it; B/row the bytes it allocates per Result. ns/op is wall time,
// which a loaded machine inflates: compare cpu-ns/row, over many runs (on
// 2 shared cores one run's differs from the next by 20-50%).
//
// ordered is bench/store.sh's sweep: Results in index order, each batch
// appended at the end of the table. shuffled is the same sweep in
// --shuffle order: each commit's rows land all over the table, so a commit
// writes most of its leaf pages to the WAL again (about 4x the CPU per
// Result, half of it in the kernel).
func BenchmarkWriter(b *testing.B) {
	b.Run("ordered", func(b *testing.B) { benchmarkWriter(b, pingSweep(1<<16)) })
	rows := pingSweep(1 << 16)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	b.Run("shuffled", func(b *testing.B) { benchmarkWriter(b, rows) })
}

func benchmarkWriter(b *testing.B, rows []job.Result) {
	var cpu, sys time.Duration
	var alloc uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := Open(filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		id, err := s.CreateSweep(testSpec(), Meta{Total: uint64(len(rows))})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		alloc0 := ms.TotalAlloc
		b.StartTimer()
		cpu0, sys0 := cpuTime(), sysTime()
		w, err := s.NewWriter(id, WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rows {
			w.Write(r)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
		sys += sysTime() - sys0
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		alloc += ms.TotalAlloc - alloc0
		b.StartTimer()
	}
	n := float64(b.N * len(rows))
	b.ReportMetric(float64(cpu)/n, "cpu-ns/row")
	b.ReportMetric(float64(sys)/n, "sys-ns/row")
	b.ReportMetric(float64(alloc)/n, "B/row")
}

// pingSweep is n Results as job/icmp makes them for 127.0.0.0/16: the host
// is the address (Addr equal to Host), one request and one reply, RTTs of
// 20-80 µs, starts and ends a few µs apart in index order.
func pingSweep(n int) []job.Result {
	rows := make([]job.Result, n)
	t0 := time.Now()
	for i := range rows {
		a := fmt.Sprintf("127.0.%d.%d", i>>8&255, i&255)
		rtt := time.Duration(20_000 + i*7919%60_000)
		start := t0.Add(time.Duration(i) * 3 * time.Microsecond)
		rows[i] = job.Result{Index: uint64(i), Host: a, Addr: a, Job: "ping", Status: job.Up,
			RTT: rtt, Sent: 1, Recv: 1, RTTMin: rtt, RTTAvg: rtt, RTTMax: rtt, Attempts: 1,
			Start: start, End: start.Add(rtt + 5*time.Microsecond)}
	}
	return rows
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sysTime is the process's system CPU time.
func sysTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Stime.Nano())
}

// BenchmarkBindRows is the Go side of BenchmarkWriter: a ping-like Result's
// column values bound into the insert's arguments, without SQLite.
func BenchmarkBindRows(b *testing.B) {
	w := &Writer{bind: bindOpts{sweep: 1, maxOutput: 1 << 20, codes: &codes{of: map[statusKey]int64{{job.Up, ""}: upCode}}}}
	rows := pingSweep(defaultBatch)
	cols := w.bindRows(rows, 0)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	n := 0 // rows bound: whole batches, b.N or more
	for ; n < b.N; n += len(rows) {
		w.bindRows(rows, cols)
		w.unbind()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/row")
}
