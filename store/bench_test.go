package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// BenchmarkWriter is the store's cost per ping-like Result: what --db adds to
// a sweep's CPU time (the writer runs beside the sweep, on its own goroutine).
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
	for i := 0; i < b.N; i++ {
		a := "127.0.0.1"
		w.Write(job.Result{Index: uint64(i), Host: a, Addr: a, Job: "ping", Status: job.Up,
			RTT: 41 * time.Microsecond, Sent: 1, Recv: 1, RTTMin: 41 * time.Microsecond, RTTAvg: 41 * time.Microsecond,
			RTTMax: 41 * time.Microsecond, Attempts: 1, Start: now, End: now})
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
