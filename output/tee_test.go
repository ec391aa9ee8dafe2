package output_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
)

// recWriter records what it is given; it fails Write from failAt on (when
// > 0), and counts Flush and Close.
type recWriter struct {
	mu      sync.Mutex
	got     []uint64
	failAt  int
	flushes atomic.Int64
	closed  atomic.Int64
	flushed chan struct{} // when set, signalled (without blocking) on each Flush
}

func (w *recWriter) Write(r job.Result) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failAt > 0 && len(w.got)+1 >= w.failAt {
		return errors.New("disk full")
	}
	w.got = append(w.got, r.Index)
	return nil
}

func (w *recWriter) Flush() error {
	w.flushes.Add(1)
	if w.flushed != nil {
		select {
		case w.flushed <- struct{}{}:
		default:
		}
	}
	return nil
}

func (w *recWriter) Close() error {
	w.closed.Add(1)
	if w.failAt > 0 {
		return errors.New("close: disk full")
	}
	return nil
}

// plainWriter has no Flush.
type plainWriter struct{ n int }

func (w *plainWriter) Write(job.Result) error { w.n++; return nil }
func (w *plainWriter) Close() error           { return nil }

// Every Writer gets every Result in order; one that fails is skipped from
// then on while the others go on; Write says so once, on the call that
// failed; Close closes them all and returns the first error.
func TestTee(t *testing.T) {
	t.Parallel()
	a, bad, c := &recWriter{}, &recWriter{failAt: 3}, &plainWriter{}
	tee := output.NewTee(a, bad, c)
	var errs []int
	for i := range 10 {
		if err := tee.Write(job.Result{Index: uint64(i)}); err != nil {
			errs = append(errs, i)
		}
	}
	if len(errs) != 1 || errs[0] != 2 {
		t.Errorf("Write failed on results %v, want only on 2 (the failing writer's first error)", errs)
	}
	if len(a.got) != 10 || c.n != 10 || a.got[9] != 9 {
		t.Errorf("the healthy writers got %v and %d results, want all 10 in order", a.got, c.n)
	}
	if len(bad.got) != 2 {
		t.Errorf("the failed writer got %v after failing, want only the 2 before", bad.got)
	}
	if tee.Err(0) != nil || tee.Err(1) == nil || tee.Err(2) != nil {
		t.Errorf("Err: %v, %v, %v; want only the second writer's", tee.Err(0), tee.Err(1), tee.Err(2))
	}
	if err := tee.Flush(); err != nil || a.flushes.Load() != 1 || bad.flushes.Load() != 0 {
		t.Errorf("Flush: %v; flushed the healthy writer %d times, the failed one %d, want 1 and 0", err, a.flushes.Load(), bad.flushes.Load())
	}
	if err := tee.Close(); err == nil || a.closed.Load() != 1 || bad.closed.Load() != 1 {
		t.Errorf("Close: %v; closed %d and %d times, want the failed writer's error and both closed once", err, a.closed.Load(), bad.closed.Load())
	}
}

// FlushEvery flushes while Results are written from another goroutine
// (under -race), until stopped; stop may be called twice.
func TestTeeFlushEvery(t *testing.T) {
	t.Parallel()
	w := &recWriter{flushed: make(chan struct{}, 1)}
	tee := output.NewTee(w)
	stop := tee.FlushEvery(time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 1000 {
			if err := tee.Write(job.Result{Index: uint64(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 3 {
		testwait.Recv(t, "a periodic flush", w.flushed)
	}
	wg.Wait()
	stop()
	stop()
	n := w.flushes.Load()
	if len(w.got) != 1000 || n < 3 {
		t.Fatalf("%d results, %d flushes", len(w.got), n)
	}
	if err := tee.Close(); err != nil {
		t.Fatal(err)
	}
	if w.flushes.Load() != n {
		t.Errorf("flushed after stop")
	}
}
