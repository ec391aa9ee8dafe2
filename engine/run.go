package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

const (
	// DefaultConcurrency is used when Options.Concurrency <= 0.
	DefaultConcurrency = 1000
	// DefaultBackoff is used when Options.Backoff <= 0.
	DefaultBackoff = backoff.DefaultBase
	// MaxBackoff caps the doubling so a long retry chain stays responsive.
	MaxBackoff = backoff.DefaultMax
)

// sweep is one Run's shared state.
type sweep struct {
	set   target.Set
	order target.Order
	opts  Options
	c     *Counters
	pace  *Pacer         // nil: unlimited
	sem   chan struct{}  // a token per target in flight
	gate  chan struct{}  // Options.Gate's slots, shared with other Runs; nil: none
	held  atomic.Int64   // batch: targets handed to the job without a Result yet
	retry backoff.Policy // the wait between a target's attempts
}

func run(ctx context.Context, set target.Set, order target.Order, j job.Job, opts Options, c *Counters, emit func(job.Result)) error {
	if c == nil {
		c = new(Counters)
	}
	if emit == nil {
		emit = func(job.Result) {}
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	s := &sweep{set: set, order: order, opts: opts, c: c, sem: make(chan struct{}, opts.Concurrency),
		retry: backoff.Policy{Base: opts.Backoff, Max: MaxBackoff}}
	if s.pace = opts.Pacer; s.pace == nil {
		s.pace = NewPacer(opts.Rate)
	}
	if opts.Gate != nil {
		s.gate = opts.Gate.sem
	}
	c.Total.Add(int64(order.Len()))
	c.Began.CompareAndSwap(0, time.Now().UnixNano())
	feed, stopFeed := s.feedContext(ctx)
	defer stopFeed()
	if b, ok := j.(job.Batcher); ok && !opts.NoBatch {
		return s.runBatch(ctx, feed, j.Kind(), b, emit)
	}
	return s.runEach(ctx, feed, j, emit)
}

// feedContext is the context that starting targets waits under: ctx, also
// done once opts.Stop is closed. Attempts run under ctx itself.
func (s *sweep) feedContext(ctx context.Context) (context.Context, func()) {
	if s.opts.Stop == nil {
		return ctx, func() {}
	}
	feed, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-s.opts.Stop:
			cancel()
		case <-feed.Done():
		}
	}()
	return feed, func() { cancel(); <-done }
}

// errStopped is acquire's error once ctx is done or opts.Stop closed.
var errStopped = errors.New("no more targets start")

// stopped reports whether opts.Stop is closed.
func (s *sweep) stopped() bool {
	select {
	case <-s.opts.Stop:
		return true
	default:
		return false
	}
}

// burst is the limiter's bucket: 50 ms worth of targets, at least 1, so a
// late timer on a loaded machine is caught up rather than lost, and high
// rates are not bound by timer resolution (a sleep per target cannot pace
// 100k/s). Over any window T at most burst + Rate*T targets start.
func burst(r float64) int {
	b := int(r / 20)
	if b < 1 {
		return 1
	}
	return b
}

// next walks the order from position *k, skipping (and counting) indexes
// that opts.Skip says are done; ok is false at the end.
func (s *sweep) next(k *uint64) (target.Target, bool) {
	for ; *k < s.order.Len(); *k++ {
		i := s.order.At(*k)
		if s.opts.Skip != nil && s.opts.Skip(i) {
			s.c.Skipped.Add(1)
			s.c.Total.Add(-1)
			continue
		}
		*k++
		return s.set.At(i), true
	}
	return target.Target{}, false
}

// acquire takes a concurrency slot, then one of the shared gate, then a
// rate token, so a target waiting for a slot does not hoard a token (nor
// a slot of the gate that other Runs could use). It fails only when ctx
// is done. The attempt's timeout starts after it, in attempts.
func (s *sweep) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Both may have been ready (the select chose at random), and Stop is
	// seen here before its goroutine has cancelled ctx.
	if ctx.Err() != nil || s.stopped() {
		<-s.sem
		return errStopped
	}
	if s.gate != nil {
		select {
		case s.gate <- struct{}{}:
		case <-ctx.Done():
			<-s.sem
			return ctx.Err()
		}
	}
	if s.pace != nil {
		// Reserve+sleep, not Wait: Wait fails at once when ctx has a
		// deadline nearer than the token, which would end the sweep early.
		due := s.pace.reserve(time.Now())
		if d := time.Until(due); d > s.opts.PaceSlack && !backoff.Sleep(ctx, d) {
			s.pace.cancel(due)
			s.release()
			return ctx.Err()
		}
	}
	return nil
}

// release frees what acquire took: the shared gate's slot first, so that
// another Run may take it, then this Run's.
func (s *sweep) release() {
	if s.gate != nil {
		<-s.gate
	}
	<-s.sem
}

// resultBuf sizes the channel of finished Results: one per slot, but a
// Result is a few hundred bytes, so -c 1000000 must not preallocate them all.
func (s *sweep) resultBuf() int { return min(cap(s.sem), 8192) }

// count updates the outcome counters for a Result about to be emitted.
func (s *sweep) count(r *job.Result) {
	switch r.Status {
	case job.Up:
		s.c.Up.Add(1)
	case job.Down:
		s.c.Down.Add(1)
	default:
		s.c.Errors.Add(1)
	}
	s.c.Done.Add(1)
}

// interrupted reports whether r must not be emitted because ctx was cancelled
// while it ran: a cancelled probe looks like a dead host, and recording it as
// down would make a resume skip a target that was never really tried. An up
// Result cannot be an artefact of cancellation, so it is kept.
func interrupted(ctx context.Context, r *job.Result) bool {
	return ctx.Err() != nil && r.Status != job.Up
}

// fill completes what the engine knows better than the job.
func fill(r *job.Result, t target.Target, kind string) {
	r.Index = t.Index
	if r.Host == "" {
		r.Host = t.Name()
	}
	if r.Addr == "" && t.Addr.IsValid() {
		r.Addr = t.Addr.String()
	}
	if r.Port == 0 && t.Port != 0 {
		r.Port = int(t.Port)
	}
	if r.Job == "" {
		r.Job = kind
	}
	if r.Status == "" {
		r.Status, r.Class = job.Error, job.ClassLocal
		if r.Error == "" {
			r.Error = kind + " job returned no status"
		}
	}
}

// runEach drives j.Run with a pool of workers that grows on demand up to
// the concurrency bound (a 10-target sweep starts 10 goroutines, not 1000);
// results are funnelled to this goroutine, which alone calls emit.
//
// A worker stays parked under j.Run for the whole target (an ssh command
// that runs for minutes): the engine's frames beneath it are held once per
// target in flight, and frames that push the stack past its size double it.
// So those frames hold no Result by value: only call does, while j.Run runs.
func (s *sweep) runEach(ctx, feed context.Context, j job.Job, emit func(job.Result)) error {
	results := make(chan *job.Result, s.resultBuf())
	work := make(chan target.Target)
	kind := j.Kind()
	var wg sync.WaitGroup
	worker := func(t target.Target) {
		defer wg.Done()
		for ok := true; ok; t, ok = <-work {
			s.done(s.attempts(ctx, j, kind, t), results)
		}
	}
	go func() {
		defer close(results)
		defer wg.Wait()
		defer close(work)
		workers := 0
		for k := uint64(0); feed.Err() == nil; {
			t, ok := s.next(&k)
			if !ok || s.acquire(feed) != nil {
				return
			}
			s.c.Started.Add(1)
			s.c.InFlight.Add(1)
			select {
			case work <- t: // an idle worker took it
				continue
			default:
			}
			if workers < cap(s.sem) {
				workers++
				wg.Add(1)
				go worker(t)
				continue
			}
			// Every worker exists; holding a slot means one is about to be
			// free, so this wait is short.
			work <- t
		}
	}()
	for r := range results {
		s.count(r)
		emit(*r)
	}
	return ctx.Err()
}

// done hands a worker's Result (nil: interrupted) over and frees its slot.
//
//go:noinline
func (s *sweep) done(r *job.Result, results chan<- *job.Result) {
	s.c.InFlight.Add(-1)
	if r != nil {
		results <- r
	} else {
		s.c.Interrupted.Add(1)
	}
	s.release() // after the send: results queued count as in flight
}

// attempts runs up to 1+Retries attempts at t, retrying only retryable
// classes after a jittered, doubling backoff. It returns nil when ctx ended
// the target before it had a trustworthy Result.
func (s *sweep) attempts(ctx context.Context, j job.Job, kind string, t target.Target) *job.Result {
	start := time.Now()
	for n := 1; ; n++ {
		var r *job.Result
		if s.opts.Timeout <= 0 {
			r = call(ctx, j, t)
		} else {
			r = s.timed(ctx, j, t)
		}
		// A job that retries inside one attempt (ssh handshakes) counts its own.
		r.Attempts = n - 1 + max(r.Attempts, 1)
		if interrupted(ctx, r) {
			return nil
		}
		if n > s.opts.Retries || !r.Class.Retryable() {
			finish(r, t, kind, start)
			return r
		}
		if !backoff.Sleep(ctx, s.retry.Delay(n)) {
			return nil
		}
	}
}

// call runs one attempt: RunInto a Result on the heap when j has it, else
// Run (see callRun).
//
//go:noinline
func call(ctx context.Context, j job.Job, t target.Target) *job.Result {
	if in, ok := j.(InPlace); ok {
		r := new(job.Result)
		in.RunInto(ctx, t, r)
		return r
	}
	return callRun(ctx, j, t)
}

// callRun is j.Run with nothing else in its frame, which holds the Result
// that the call returns while the job runs; the Result is moved to the heap
// after.
//
//go:noinline
func callRun(ctx context.Context, j job.Job, t target.Target) *job.Result {
	r := j.Run(ctx, t)
	return &r
}

// timed is one attempt under the per-attempt timeout. A job that gave up at
// the deadline without saying why is classed timeout.
//
//go:noinline
func (s *sweep) timed(ctx context.Context, j job.Job, t target.Target) *job.Result {
	actx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	// The job's messages name the timeout that fired (job.TimedOut).
	actx = job.WithAttemptTimeout(actx, s.opts.Timeout)
	r := call(actx, j, t)
	if r.Status != job.Up && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) &&
		(r.Class == job.ClassNone || r.Class == job.ClassCanceled) {
		timedOut(r, s.opts.Timeout)
	}
	return r
}

// timedOut is apart so that its formatting is not in timed's frame.
//
//go:noinline
func timedOut(r *job.Result, d time.Duration) {
	if r.Error == "" || r.Class == job.ClassCanceled {
		r.Error = fmt.Sprintf("timed out after %v", d)
	}
	r.Status, r.Class = job.Down, job.ClassTimeout
}

// finish completes r after its last attempt: what the engine knows better
// than the job, and the times the job left unset. Apart so that its
// temporaries are not in the frame parked under j.Run.
//
//go:noinline
func finish(r *job.Result, t target.Target, kind string, start time.Time) {
	fill(r, t, kind)
	if r.Start.IsZero() {
		r.Start = start
	}
	if r.End.IsZero() {
		r.End = time.Now()
	}
}

// Buffers is what Runs one after another reuse (see Options.Buffers).
// Safe for concurrent use. The zero value is ready.
type Buffers struct {
	mu      sync.Mutex
	lent    bool
	gen     uint64 // the lending's number, carried by what is queued
	results chan batched
}

// NewBuffers is an empty Buffers: the first Run that uses it fills it.
func NewBuffers() *Buffers { return new(Buffers) }

// batched is a batch job's Result queued for the engine, with the number of
// the Run's lending of the queue: a job that emits after its RunBatch
// returned must not reach the next Run that borrows the queue.
type batched struct {
	gen uint64
	r   job.Result
}

// resultQueue is a queue of at least n Results: b's when b is set and
// free (give it back with put), else a new one.
func (b *Buffers) resultQueue(n int) (chan batched, uint64) {
	if b == nil {
		return make(chan batched, n), 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lent {
		return make(chan batched, n), 0
	}
	b.lent = true
	b.gen++
	if cap(b.results) < n {
		b.results = make(chan batched, n)
	}
	return b.results, b.gen
}

// put takes back the queue resultQueue lent as gen (0: not lent).
func (b *Buffers) put(gen uint64) {
	if b == nil || gen == 0 {
		return
	}
	b.mu.Lock()
	b.lent = false
	b.mu.Unlock()
}

// runBatch drives a Batcher: a feeder goroutine sends targets (each after a
// slot and a rate token), the job runs in another, and emitted Results come
// back to this goroutine, which frees their slots and alone calls emit. No
// goroutine per target.
func (s *sweep) runBatch(ctx, feed context.Context, kind string, b job.Batcher, emit func(job.Result)) error {
	in := make(chan target.Target)
	results, gen := s.opts.Buffers.resultQueue(s.resultBuf())
	defer s.opts.Buffers.put(gen)
	stop := make(chan struct{}) // closed once emitted Results are no longer read
	jobEmit := func(r job.Result) {
		// A job that emits after RunBatch returned must not block or panic.
		select {
		case results <- batched{gen, r}:
		case <-stop:
		}
	}
	cfg := job.BatchConfig{Timeout: s.opts.Timeout, Retries: s.opts.Retries, Concurrency: cap(s.sem)}
	if s.pace != nil {
		cfg.Rate = s.pace.rate
	}
	batchDone := make(chan error, 1)
	go func() { batchDone <- b.RunBatch(ctx, in, cfg, jobEmit) }()

	// feedCtx also ends when the job returns early, so the feeder never
	// waits on a reader that is gone (and at opts.Stop).
	feedCtx, stopFeed := context.WithCancel(feed)
	defer stopFeed()
	fed := make(chan struct{})
	exhausted := false // every target was handed over; read after <-fed
	go func() {
		defer close(fed)
		defer close(in)
		for k := uint64(0); ; {
			// next before the ctx check: a job that stops once it has read
			// the last target has still been handed every target.
			t, ok := s.next(&k)
			if !ok {
				exhausted = true
				return
			}
			if feedCtx.Err() != nil || s.acquire(feedCtx) != nil {
				return
			}
			s.c.Started.Add(1)
			s.c.InFlight.Add(1) // before the send: the Result may come back first
			s.held.Add(1)
			select {
			case in <- t:
			case <-feedCtx.Done():
				s.c.Started.Add(-1)
				s.c.InFlight.Add(-1)
				s.held.Add(-1)
				s.release()
				return
			}
		}
	}()

	var batchErr error
	for running := true; running; {
		select {
		case b := <-results:
			if b.gen == gen {
				s.batchResult(ctx, &b.r, kind, emit)
			}
		case batchErr = <-batchDone:
			running = false
		}
	}
	stopFeed()
	<-fed
	// Emits made before RunBatch returned are queued: deliver them.
	for drained := false; !drained; {
		select {
		case b := <-results:
			if b.gen == gen {
				s.batchResult(ctx, &b.r, kind, emit)
			}
		default:
			drained = true
		}
	}
	close(stop)
	// Targets the job received but never emitted were interrupted; their
	// slots go back (a shared Gate outlives this Run).
	lost := s.c.InFlight.Swap(0)
	s.c.Interrupted.Add(lost)
	for n := s.held.Swap(0); n > 0; n-- {
		s.release()
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case batchErr != nil:
		return fmt.Errorf("%s batch: %w", kind, batchErr)
	case !exhausted && !s.stopped():
		return fmt.Errorf("%s batch: returned before reading every target", kind)
	case lost > 0:
		return fmt.Errorf("%s batch: returned without a Result for %d targets", kind, lost)
	}
	return nil
}

// batchResult frees r's slot, then emits it unless cancellation made it
// untrustworthy (see interrupted).
func (s *sweep) batchResult(ctx context.Context, r *job.Result, kind string, emit func(job.Result)) {
	s.held.Add(-1)
	s.release()
	s.c.InFlight.Add(-1)
	if interrupted(ctx, r) {
		s.c.Interrupted.Add(1)
		return
	}
	if r.Job == "" {
		r.Job = kind
	}
	if r.Status == "" {
		r.Status, r.Class = job.Error, job.ClassLocal
		if r.Error == "" {
			r.Error = kind + " job returned no status"
		}
	}
	if r.Attempts == 0 {
		r.Attempts = 1
	}
	if r.End.IsZero() {
		r.End = time.Now()
	}
	if r.Start.IsZero() {
		r.Start = r.End // the job did not say; the batch path keeps no per-target clock
	}
	s.count(r)
	emit(*r)
}
