// Package engine runs a job over an ordered set of targets: bounded
// concurrency, rate, per-attempt timeout, retries, cancellation and progress
// counters. It knows nothing of ICMP or SSH: it drives job.Job and job.Batcher.
package engine

import (
	"context"
	"sync"
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
	// NoBatch runs a job.Batcher through its per-target Run instead.
	NoBatch bool
	// Gate, when set, bounds the targets in flight across every Run that
	// shares it (a cluster worker's -c over the tasks it runs at once): a
	// target takes a slot of this Run (Concurrency), then one of Gate. As
	// with Concurrency, an attempt's Timeout starts once it has its slots.
	Gate *Gate
	// Pacer, when set, is the start rate shared by every Run that uses it
	// (a sweep's --rate over a worker's tasks of it), in place of Rate.
	Pacer *Pacer
	// PaceSlack lets a start come up to this much before its rate token's
	// time, so that a paced sweep sleeps about once per PaceSlack instead
	// of once per target (a watch's --spread paces tens of thousands of
	// starts a second, where a sleep per start cost half again the CPU of
	// the round). 0: every start waits for its token. Over any window T at
	// most burst + Rate*(T+PaceSlack) targets start.
	PaceSlack time.Duration
	// Stop, when closed, ends the sweep gently: no target starts after it
	// (a wait for a slot or a rate token ends at once), and the targets in
	// flight finish with their real Result, their ctx untouched. Run then
	// returns nil once they are emitted (a watch's SIGINT: finish the round's
	// in-flight targets, not cancel them).
	Stop <-chan struct{}
	// Buffers, when set, lends the Run what it would allocate in
	// proportion to its concurrency (the queue of finished Results of a
	// batch job, up to 8,192 of them) and takes it back when the Run
	// returns: Runs one after another (a watch's rounds) reuse it instead
	// of each leaving megabytes of garbage, which the heap's peak would
	// drift with. Runs at once may share it: one that finds it lent
	// allocates its own.
	Buffers *Buffers
}

// Gate is a bound on targets in flight shared by several Runs (see
// Options.Gate). Safe for concurrent use.
type Gate struct{ sem chan struct{} }

// NewGate is a Gate of n slots; n <= 0 means DefaultConcurrency.
func NewGate(n int) *Gate {
	if n <= 0 {
		n = DefaultConcurrency
	}
	return &Gate{sem: make(chan struct{}, n)}
}

// Pacer is a start rate shared by several Runs (see Options.Pacer). Safe
// for concurrent use.
//
// It is a token bucket, as golang.org/x/time/rate's Limiter is, kept here
// because a start must not allocate: Limiter.Reserve returns a new
// Reservation per call, a watch's round of 65,536 targets 3 MB of garbage.
type Pacer struct {
	rate  float64
	burst float64

	mu     sync.Mutex
	tokens float64   // may be negative: starts reserved ahead of their time
	last   time.Time // when tokens was last brought up to date
	latest time.Time // the due time of the latest reservation
}

// NewPacer is a Pacer of perSecond target starts, or nil (unlimited) when
// perSecond <= 0. Its bucket holds 50 ms worth of starts (at least one) and
// starts with one token, as a Run's own Rate does.
func NewPacer(perSecond float64) *Pacer {
	if perSecond <= 0 {
		return nil
	}
	// One token, not a full bucket: the rate holds from the first second,
	// and the bucket only absorbs oversleeps later.
	now := time.Now()
	return &Pacer{rate: perSecond, burst: float64(burst(perSecond)), tokens: 1, last: now, latest: now}
}

// reserve takes a token at now and returns when it is due (now or later).
func (p *Pacer) reserve(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.After(p.last) {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
		p.last = now
	}
	p.tokens--
	due := p.last
	if p.tokens < 0 {
		due = due.Add(time.Duration(-p.tokens / p.rate * float64(time.Second)))
	}
	if due.After(p.latest) {
		p.latest = due
	}
	return due
}

// cancel gives back the token of a start due at due that will not happen,
// less what later reservations already counted on (as Limiter's Cancel).
func (p *Pacer) cancel(due time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	back := 1 - p.latest.Sub(due).Seconds()*p.rate
	if back <= 0 {
		return
	}
	p.tokens = min(p.burst, p.tokens+back)
	if !due.Before(p.latest) {
		p.latest = due.Add(-time.Duration(float64(time.Second) / p.rate))
	}
}

// Counters are the sweep's progress, safe to read from any goroutine while it
// runs (the progress bar, metrics). Updated lock-free. Counters may be shared
// by several Runs (a cluster worker's chunks): every field accumulates, and
// Began is set by the first.
type Counters struct {
	// Total is the targets the sweep will visit: the order's length, less
	// each index Skip passes over (resume), as the sweep reaches it.
	Total    atomic.Int64
	Started  atomic.Int64
	Done     atomic.Int64
	Up       atomic.Int64
	Down     atomic.Int64
	Errors   atomic.Int64
	InFlight atomic.Int64
	Skipped  atomic.Int64
	// Interrupted counts targets cancelled before they had a trustworthy
	// Result: they were not emitted, and a resume runs them again.
	Interrupted atomic.Int64
	Began       atomic.Int64 // unix nanoseconds when the sweep started
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

// InPlace is an optional interface of a job whose Run stays parked for
// long (an ssh command): RunInto does what Run does, into a Result the engine
// allocated on the heap, so no Result sits in the frames of the goroutine
// while it waits. The engine calls RunInto instead of Run when a job has it.
type InPlace interface {
	job.Job
	RunInto(ctx context.Context, t target.Target, r *job.Result)
}

// Run visits order's indexes of set with j, calling emit once per finished
// target from a single goroutine (sinks need no locks). It returns ctx.Err()
// when interrupted, after emitting every Result that had finished; no
// goroutine it started outlives it. c may be nil.
//
// At most opts.Concurrency targets are in flight (a Result waiting for emit
// counts as in flight), no more than opts.Gate's slots across the Runs that
// share it, and targets start at no more than opts.Rate per second (or
// opts.Pacer's rate, shared likewise). Each attempt gets its own ctx with opts.Timeout; an attempt whose
// Class is retryable (timeout, refused) is retried up to opts.Retries times
// after a doubling, jittered backoff, keeping its slot meanwhile. The engine
// sets Result.Index and Attempts, and Start/End, Host, Addr, Port and Job
// where the job left them empty.
//
// Cancellation: no new target starts; in-flight attempts see their ctx done.
// A target whose Result is not up when ctx is done is NOT emitted (counted
// in Counters.Interrupted): a cancelled probe would look like a dead host,
// so every target is either emitted with a real outcome or left for resume.
//
// When j implements job.Batcher (and opts.NoBatch is false) Run feeds it the
// targets instead; retries are then the job's, per job.BatchConfig. A batch
// job that fails, stops before reading every target, or leaves received
// targets without a Result makes Run return an error naming the job kind.
func Run(ctx context.Context, set target.Set, order target.Order, j job.Job, opts Options, c *Counters, emit func(job.Result)) error {
	return run(ctx, set, order, j, opts, c, emit)
}
