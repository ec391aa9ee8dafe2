package store

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// BenchmarkWriter is the store's cost per ping-like Result: what --db adds to
// a sweep's CPU time (the writer runs beside the sweep, on its own goroutine:
// cpu-ns/op is the process's CPU time, all threads, per Result; ns/op is
// wall time, which a loaded machine inflates).
func BenchmarkWriter(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	id, _ := s.CreateSweep(testSpec(), Meta{Total: uint64(b.N)})
	w, _ := s.NewWriter(id, WriterOptions{})
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		a := "127.0.0.1"
		w.Write(job.Result{Index: uint64(i), Host: a, Addr: a, Job: "ping", Status: job.Up,
			RTT: 41 * time.Microsecond, Sent: 1, Recv: 1, RTTMin: 41 * time.Microsecond, RTTAvg: 41 * time.Microsecond,
			RTTMax: 41 * time.Microsecond, Attempts: 1, Start: now, End: now})
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBindRows is the Go side of BenchmarkWriter: a ping-like Result's
// column values bound into the insert's arguments, without SQLite.
func BenchmarkBindRows(b *testing.B) {
	w := &Writer{bind: bindOpts{sweep: 1, maxOutput: 1 << 20, codes: &codes{of: map[statusKey]int64{{job.Up, ""}: upCode}}}}
	now := time.Now()
	rows := make([]job.Result, defaultBatch)
	for i := range rows {
		a := fmt.Sprintf("127.0.%d.%d", i>>8, i&255)
		rows[i] = job.Result{Index: uint64(i), Host: a, Addr: a, Job: "ping", Status: job.Up,
			RTT: 41 * time.Microsecond, Sent: 1, Recv: 1, RTTMin: 41 * time.Microsecond, RTTAvg: 41 * time.Microsecond,
			RTTMax: 41 * time.Microsecond, Attempts: 1, Start: now, End: now}
	}
	cols := w.bindRows(rows, 0)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i += len(rows) {
		w.bindRows(rows, cols)
		w.unbind()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
