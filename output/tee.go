package output

import (
	"sync"
	"time"

	"github.com/fanout/fanout/job"
)

// Tee is a Writer that hands every Result to several Writers, in the order
// given: the lines a user reads, a JSONL file, a store. A Writer whose
// Write fails is skipped from then on (Err says why), while the others
// still get every Result: a store keeps recording when stdout is gone.
// Tee is safe for concurrent use, so that Flush (or FlushEvery) may run
// beside the goroutine that writes.
type Tee struct {
	mu   sync.Mutex
	ws   []Writer
	errs []error // per Writer, its first Write error
}

var _ Writer = (*Tee)(nil)

// NewTee is a Tee of ws.
func NewTee(ws ...Writer) *Tee {
	return &Tee{ws: ws, errs: make([]error, len(ws))}
}

// Write hands r to every Writer that has not failed, and returns the first
// error of this call (nil when every Writer took r).
func (t *Tee) Write(r job.Result) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first error
	for i, w := range t.ws {
		if t.errs[i] != nil {
			continue
		}
		if err := w.Write(r); err != nil {
			t.errs[i] = err
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Err is the first Write error of the i-th Writer, nil while it takes
// every Result.
func (t *Tee) Err(i int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.errs[i]
}

// Flush pushes out what the Writers that buffer (a Flush method) hold, but
// those that failed; it returns the first error. A Writer whose Flush fails
// fails its next Write too, and is skipped from then on.
func (t *Tee) Flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first error
	for i, w := range t.ws {
		fl, ok := w.(interface{ Flush() error })
		if !ok || t.errs[i] != nil {
			continue
		}
		if err := fl.Flush(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// FlushEvery flushes the Tee every d until stop is called, so that a slow
// sweep piped into another program (or watched in a file) still streams.
// stop waits for the flushing goroutine to end; it may be called more than
// once.
func (t *Tee) FlushEvery(d time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(d)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				_ = t.Flush() // a failing Writer fails its next Write
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// Close closes every Writer, failed ones too (what they buffer is flushed
// where it can be), and returns the first error.
func (t *Tee) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first error
	for _, w := range t.ws {
		if err := w.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
