package cluster

import (
	"context"
	"time"

	"golang.org/x/time/rate"

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

// gated wraps a (non-batch) job so that each attempt first takes a slot of g. The attempt's
// timeout starts once it has the slot (the engine runs gated jobs with no
// timeout of its own, or waiting for a slot would eat it).
func gated(j job.Job, g *gate, timeout time.Duration, lim *rate.Limiter) job.Job {
	return &gatedJob{j: j, g: g, timeout: timeout, rate: lim}
}

type gatedJob struct {
	j       job.Job
	g       *gate
	timeout time.Duration
	rate    *rate.Limiter // the sweep's --rate on this worker; nil: unlimited
}

func (gj *gatedJob) Kind() string { return gj.j.Kind() }

func (gj *gatedJob) Run(ctx context.Context, t target.Target) job.Result {
	if (gj.rate != nil && gj.rate.Wait(ctx) != nil) || !gj.g.acquire(ctx) {
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
