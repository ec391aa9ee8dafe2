package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// holdBatch is a batch job that holds every target it receives (counted in
// track) until release is closed, then emits it up.
type holdBatch struct {
	track   *maxTracker
	release <-chan struct{}
}

func (*holdBatch) Kind() string { return "hold" }
func (b *holdBatch) Run(ctx context.Context, t target.Target) job.Result {
	return up(t)
}
func (b *holdBatch) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for t := range in {
		b.track.enter()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-b.release:
			case <-ctx.Done():
			}
			b.track.leave()
			emit(up(t))
		}()
	}
	return nil
}

// Runs sharing a Gate have at most its size of targets in flight between
// them, whatever each Run's own Concurrency, on both paths; every slot
// comes back when they end.
func TestGateBoundsRuns(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		name := "run"
		if batch {
			name = "batch"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const runs, n, size = 3, 20, 4
			g := NewGate(size)
			var m maxTracker
			release := make(chan struct{})
			var j job.Job = funcJob(func(ctx context.Context, tg target.Target) job.Result {
				m.enter()
				defer m.leave()
				select {
				case <-release:
				case <-ctx.Done():
				}
				return up(tg)
			})
			if batch {
				j = &holdBatch{track: &m, release: release}
			}
			var wg sync.WaitGroup
			counts := make([]int, runs)
			errs := make([]error, runs)
			for i := range runs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = Run(context.Background(), addrs(n), target.Identity(n), j, Options{Concurrency: n, Gate: g}, nil,
						func(job.Result) { counts[i]++ })
				}()
			}
			testwait.For(t, "the gate full", func() bool { return m.cur.Load() >= size })
			close(release)
			wg.Wait()
			for i := range runs {
				if errs[i] != nil || counts[i] != n {
					t.Errorf("run %d: %d Results, err %v; want %d", i, counts[i], errs[i], n)
				}
			}
			if mx := m.max.Load(); mx != size {
				t.Errorf("%d targets in flight at most across %d Runs, gate of %d", mx, runs, size)
			}
			if l := len(g.sem); l != 0 {
				t.Errorf("%d slots of the gate still taken after every Run returned", l)
			}
		})
	}
}

// An attempt's timeout starts once it has a slot of the gate: waiting
// behind another Run's target, longer than the timeout, does not time it
// out (a cluster worker's task queued behind others).
func TestGateTimeoutStartsWithSlot(t *testing.T) {
	t.Parallel()
	const timeout = 20 * time.Millisecond
	g := NewGate(1)
	hold := make(chan struct{})
	holding := make(chan struct{})
	first := funcJob(func(ctx context.Context, tg target.Target) job.Result {
		close(holding)
		<-hold
		return up(tg)
	})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- Run(context.Background(), addrs(1), target.Identity(1), first, Options{Gate: g}, nil, nil)
	}()
	testwait.Recv(t, "the first Run holding the gate", holding)

	var c Counters
	second := funcJob(func(ctx context.Context, tg target.Target) job.Result {
		if ctx.Err() != nil {
			return down(tg, job.ClassTimeout) // the wait for the slot ate the timeout
		}
		return up(tg)
	})
	var got []job.Result
	secondDone := make(chan error, 1)
	go func() {
		secondDone <- Run(context.Background(), addrs(1), target.Identity(1), second, Options{Gate: g, Timeout: timeout}, &c,
			func(r job.Result) { got = append(got, r) })
	}()
	testwait.For(t, "the second Run waiting for the gate", func() bool { return c.Total.Load() == 1 })
	waited := time.Now()
	// The second target waits for the slot longer than its timeout.
	testwait.For(t, "more than the timeout to pass", func() bool { return time.Since(waited) > 3*timeout })
	if s := c.Started.Load(); s != 0 {
		t.Fatalf("the second Run started %d targets while the gate was full", s)
	}
	close(hold)
	if err, _ := testwait.Recv(t, "the first Run", firstDone); err != nil {
		t.Fatal(err)
	}
	if err, _ := testwait.Recv(t, "the second Run", secondDone); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Status != job.Up {
		t.Fatalf("second Run: %+v, want its one target up: the timeout must start with the slot", got)
	}
}

// Runs sharing a Pacer share its tokens: a token one Run took is not there
// for the other (a sweep's --rate over a worker's tasks).
func TestPacerShared(t *testing.T) {
	t.Parallel()
	p := NewPacer(1.0 / 3600) // one token, the next in an hour
	var ran atomic.Int64
	j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
		ran.Add(1)
		return up(tg)
	})
	if err := Run(context.Background(), addrs(1), target.Identity(1), j, Options{Pacer: p}, nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var c Counters
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, addrs(1), target.Identity(1), j, Options{Pacer: p}, &c, nil)
	}()
	testwait.For(t, "the second Run waiting for a token", func() bool { return c.Total.Load() == 1 })
	cancel()
	if err, _ := testwait.Recv(t, "the second Run", done); err == nil {
		t.Errorf("the second Run returned no error, want it cancelled")
	}
	if n := ran.Load(); n != 1 || c.Started.Load() != 0 {
		t.Errorf("%d targets ran, the second Run started %d: the first Run's token was used twice", n, c.Started.Load())
	}
	if NewPacer(0) != nil {
		t.Errorf("NewPacer(0) is not nil (unlimited)")
	}
}

// A batch job that returns without emitting some targets it received still
// hands their slots of a shared Gate back: the gate outlives the Run.
func TestGateBatchLostSlots(t *testing.T) {
	t.Parallel()
	g := NewGate(8)
	b := &quitBatch{quota: 10, emitN: 7}
	_, err := collect(t, context.Background(), 10, b, Options{Concurrency: 4, Gate: g}, nil)
	if err == nil {
		t.Fatal("a batch job that forgot Results: no error")
	}
	if l := len(g.sem); l != 0 {
		t.Fatalf("%d slots of the gate still taken after the Run", l)
	}
}
