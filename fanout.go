// Package fanout runs a job against thousands to millions of hosts: a sweep
// is (targets, job, options), and every target has an index in one canonical
// order, so shuffling, sharding, resume and distribution are arithmetic.
//
// A job is anything with Kind and Run (see Job); Sweep runs it over a Set of
// targets with bounded concurrency, a rate limit, per-attempt timeouts and
// retries, and hands every Result to one callback. The job kinds the fanout
// command uses live in job/exec, job/tcp, job/icmp and job/ssh.
package fanout

import (
	"context"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

type (
	// Job runs one attempt against one target; see job.Job. Start the
	// Result with job.For(t, kind), set Status (and Class and Error when
	// it is not up), and return when ctx is done.
	Job = job.Job
	// Result is the envelope every job kind fills; see job.Result.
	Result = job.Result
	// Target is one entry of a target Set.
	Target = target.Target
	// Set is an indexable, lazy list of targets; target.Parse builds one.
	Set = target.Set
)

// Options of a Sweep.
type Options struct {
	engine.Options
	// Order is the visiting order; nil visits targets in canonical order.
	Order target.Order
	// Counters, when set, are updated as the sweep runs (progress bars).
	Counters *engine.Counters
	// OnResult is called once per finished target, from one goroutine.
	OnResult func(Result)
}

// Sweep runs j against every target of targets (in opts.Order) and calls
// opts.OnResult with each Result. It returns ctx.Err() when interrupted, after
// every finished Result has been delivered; targets cut short by the
// interruption get no Result (see engine.Run), so a resume runs them again.
// No goroutine of the sweep outlives the call.
func Sweep(ctx context.Context, targets Set, j Job, opts Options) error {
	order := opts.Order
	if order == nil {
		order = target.Identity(targets.Len())
	}
	emit := opts.OnResult
	if emit == nil {
		emit = func(Result) {}
	}
	return engine.Run(ctx, targets, order, j, opts.Options, opts.Counters, emit)
}
