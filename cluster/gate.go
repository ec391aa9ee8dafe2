package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// gate bounds the targets in flight across all the tasks a worker runs at
// once (its -c), so that a worker can hold several small tasks (ssh) or
// overlap the tail of one big task with the start of the next.
type gate struct {
	sem chan struct{}
}

func newGate(n int) *gate { return &gate{sem: make(chan struct{}, n)} }

func (g *gate) acquire(ctx context.Context) bool {
	select {
	case g.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (g *gate) release() { <-g.sem }

// gated wraps j so that each attempt first takes a slot of g. The attempt's
// timeout starts once it has the slot (the engine runs gated jobs with no
// timeout of its own, or waiting for a slot would eat it).
func gated(j job.Job, g *gate, timeout time.Duration) job.Job {
	gj := &gatedJob{j: j, g: g, timeout: timeout}
	if b, ok := j.(job.Batcher); ok {
		return &gatedBatcher{gatedJob: gj, b: b}
	}
	return gj
}

type gatedJob struct {
	j       job.Job
	g       *gate
	timeout time.Duration
}

func (gj *gatedJob) Kind() string { return gj.j.Kind() }

func (gj *gatedJob) Run(ctx context.Context, t target.Target) job.Result {
	if !gj.g.acquire(ctx) {
		r := job.For(t, gj.j.Kind())
		r.Status, r.Class, r.Error = job.Error, job.ClassCanceled, ctx.Err().Error()
		now := time.Now()
		r.Start, r.End = now, now
		return r
	}
	defer gj.g.release()
	if gj.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, gj.timeout)
		defer cancel()
	}
	return gj.j.Run(ctx, t)
}

// gatedBatcher feeds a batch job only the targets that have a slot; a slot
// is freed when the job emits that target's Result.
type gatedBatcher struct {
	*gatedJob
	b job.Batcher
}

func (gb *gatedBatcher) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var held atomic.Int64 // slots taken for targets not yet emitted
	inner := make(chan target.Target)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(inner)
		for {
			var t target.Target
			select {
			case tt, ok := <-in:
				if !ok {
					return
				}
				t = tt
			case <-lctx.Done():
				return
			}
			if !gb.g.acquire(lctx) {
				return
			}
			held.Add(1)
			select {
			case inner <- t:
			case <-lctx.Done():
				held.Add(-1)
				gb.g.release()
				return
			}
		}
	}()
	err := gb.b.RunBatch(lctx, inner, cfg, func(r job.Result) {
		held.Add(-1)
		gb.g.release()
		emit(r)
	})
	cancel()
	wg.Wait()
	for n := held.Load(); n > 0; n-- {
		gb.g.release()
	}
	return err
}
