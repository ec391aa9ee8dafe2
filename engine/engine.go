// Package engine runs a job over an ordered set of targets: bounded
// concurrency, rate, per-attempt timeout, retries, cancellation and progress
// counters. It knows nothing of ICMP or SSH: it drives job.Job and job.Batcher.
package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Options bound a sweep.
type Options struct {
	Concurrency int           // targets in flight at most; <= 0 means 1000
	Rate        float64       // targets started per second; 0 = unlimited
	Timeout     time.Duration // per attempt; 0 = none beyond ctx
	Retries     int           // extra attempts for retryable classes (timeout, refused)
	Backoff     time.Duration // wait before the first retry, doubled each time; 0 = 100ms
	// Skip, when set, is asked for every index before it is started; true
	// means the target already has a Result (resume) and is not run.
	Skip func(index uint64) bool
}

// Counters are the sweep's progress, safe to read from any goroutine while it
// runs (the progress bar, metrics). Updated lock-free.
type Counters struct {
	Total    atomic.Int64 // targets the sweep will visit (after Skip, as known at start)
	Started  atomic.Int64
	Done     atomic.Int64
	Up       atomic.Int64
	Down     atomic.Int64
	Errors   atomic.Int64
	InFlight atomic.Int64
	Skipped  atomic.Int64
	Began    atomic.Int64 // unix nanoseconds when the sweep started
}

// Rate is the average completion rate since the sweep began, per second.
func (c *Counters) Rate() float64 {
	b := c.Began.Load()
	if b == 0 {
		return 0
	}
	el := time.Since(time.Unix(0, b)).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(c.Done.Load()) / el
}

// Run visits order's indexes of set with j, calling emit once per finished
// target from a single goroutine (sinks need no locks). It returns ctx.Err()
// when interrupted, after emitting every Result that had finished; no
// goroutine it started outlives it. c may be nil.
func Run(ctx context.Context, set target.Set, order target.Order, j job.Job, opts Options, c *Counters, emit func(job.Result)) error {
	return run(ctx, set, order, j, opts, c, emit)
}
