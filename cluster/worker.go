package cluster

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// task is what a tasks message carries: positions [Lo, Hi) of the sweep's
// order. Job is repeated so a worker can refuse a kind without the Spec;
// Rev and SHA256 name the record the submitter created (its revision in the
// sweeps bucket and its digest), the only one the task runs with.
type task struct {
	Sweep  string `json:"sweep"`
	Chunk  uint64 `json:"chunk"`
	Lo     uint64 `json:"lo"`
	Hi     uint64 `json:"hi"`
	Job    string `json:"job"`
	Rev    uint64 `json:"rev"`
	SHA256 string `json:"sha256"`
}

// decodeTask reads a tasks message and checks it against its own subject;
// whether it fits its sweep is checked once the record is read (checkTask).
func decodeTask(subject string, data []byte) (task, error) {
	var t task
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("malformed: %w", err)
	}
	switch {
	case !ValidSweepID(t.Sweep):
		return t, fmt.Errorf("sweep id %q: want letters, digits, - and _", t.Sweep)
	case subject != taskSubject(t.Sweep, t.Chunk):
		return t, fmt.Errorf("says sweep %s task %d, stored as %s", t.Sweep, t.Chunk, subject)
	case t.Lo >= t.Hi:
		return t, fmt.Errorf("empty range [%d, %d)", t.Lo, t.Hi)
	case t.Rev == 0 || len(t.SHA256) != 64:
		return t, fmt.Errorf("names no record revision and digest (from an older fanout?)")
	}
	if _, err := hex.DecodeString(t.SHA256); err != nil {
		return t, fmt.Errorf("digest %q: %w", t.SHA256, err)
	}
	return t, nil
}

// DefaultAllow is every registered job kind but those that run local
// commands on the worker (exec) or log in elsewhere with its keys (ssh)
// (job.Traits Local, LendsIdentity): a worker must opt in to them.
func DefaultAllow() []string {
	var out []string
	for _, k := range job.Kinds() {
		if t, _ := job.TraitsOf(k); !t.Local && !t.LendsIdentity {
			out = append(out, k)
		}
	}
	return out
}

// confined reports whether a worker runs kind only with a Confine of its
// own: its options name files and keys of the machine that runs it
// (job.Traits.LendsIdentity).
func confined(kind string) bool {
	t, _ := job.TraitsOf(kind)
	return t.LendsIdentity
}

// WorkerOptions configure a worker.
type WorkerOptions struct {
	Name        string        // shown in status and in each Result's Worker; default host-pid
	Concurrency int           // targets in flight at most, across all tasks; default 1000
	Allow       []string      // job kinds this worker runs; nil: DefaultAllow()
	AckWait     time.Duration // for the shared consumer when this worker creates it
	Verbose     bool          // log every task's timing
	Logf        func(format string, args ...any)
	// Confine, per job kind, rewrites a sweep's job options (from the bus:
	// untrusted) into what runs here, or refuses them: the worker's own
	// files, keys and policies replace the spec's (ssh: job/ssh.Confine).
	// A kind that lends the worker's identity (job.Traits.LendsIdentity:
	// ssh) may be allowed only with one.
	Confine map[string]func(options json.RawMessage) (json.RawMessage, error)
	// Rounds, per job kind, rewrites a watch's confined job options for a
	// job this worker keeps across the watch's rounds (ssh: keep each
	// host's connection between rounds, job/ssh.KeepForRounds). A kind
	// without one runs its rounds with the options as confined.
	Rounds map[string]func(options json.RawMessage) (json.RawMessage, error)
	// Tags are published in the heartbeat: sweeps and watches pinned to
	// tags (--on) run only on the workers that have them all (ParseTags).
	Tags map[string]string
	// Metrics, when set, counts what this worker runs (NewWorkerMetrics).
	Metrics *WorkerMetrics
}

// Worker pulls tasks and runs them with the local engine.
type Worker struct {
	opts WorkerOptions
	nc   *nats.Conn
	s    *setup
	cons jetstream.Consumer
	// gate bounds the targets in flight across all the tasks the worker
	// runs at once (its -c), so that it can hold several small tasks (ssh)
	// or overlap the tail of one big task with the start of the next.
	gate  *engine.Gate
	allow map[string]bool
	// batchMu runs one batch task at a time: a raw ICMP socket receives
	// every reply on the host, so two batches at once would each read both
	// tasks' replies. The next task still overlaps the last one's publish.
	batchMu sync.Mutex

	mu      sync.Mutex
	sweeps  map[string]*sweepRun // cache of rebuilt sweeps, by id
	active  map[string]int       // sweep -> tasks held
	refused map[string]time.Time // sweep -> last time a refusal was logged

	maxBatch int // bytes per results message; 0: the server's limit less headroom

	outstanding atomic.Int64 // targets of held tasks without a Result yet
	tasksDone   atomic.Int64
	resultsDone atomic.Int64
	inFlight    atomic.Int64
	started     time.Time
}

// sweepRun is a sweep rebuilt from its Spec, cached per worker.
type sweepRun struct {
	rec   Record
	set   target.Set
	order target.Order
	job   job.Job
	chk   *checker      // tells the sweep's results from others (read back)
	rate  *engine.Pacer // --rate, per worker across the sweep's tasks; nil: none
	used  time.Time
	err   error // a refusal (*leaveError), cached like a sweep
}

// NewWorker prepares a worker on nc (streams and the shared consumer are
// created when missing).
func NewWorker(ctx context.Context, nc *nats.Conn, o WorkerOptions) (*Worker, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 1000
	}
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if o.Allow == nil {
		o.Allow = DefaultAllow()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := CheckTags(o.Tags); err != nil {
		return nil, fmt.Errorf("worker tags: %w", err)
	}
	allow := map[string]bool{}
	for _, k := range o.Allow {
		allow[k] = true
		if confined(k) && o.Confine[k] == nil {
			return nil, fmt.Errorf("allow %s: a worker runs %s sweeps only with its own files and keys (WorkerOptions.Confine[%q])", k, k, k)
		}
	}
	s, err := ensure(ctx, nc)
	if err != nil {
		return nil, err
	}
	cons, err := s.taskConsumer(ctx, o.AckWait)
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: %w", TasksStream, WorkerConsumer, err)
	}
	w := &Worker{
		opts: o, nc: nc, s: s, cons: cons, gate: engine.NewGate(o.Concurrency), allow: allow,
		sweeps: map[string]*sweepRun{}, active: map[string]int{}, refused: map[string]time.Time{},
		started: time.Now(),
	}
	o.Metrics.attach(w)
	return w, nil
}

// Heartbeat is what a worker publishes in the workers bucket.
type Heartbeat struct {
	Name        string            `json:"name"`
	Host        string            `json:"host"`
	PID         int               `json:"pid"`
	Allow       []string          `json:"allow"`
	Tags        map[string]string `json:"tags,omitempty"`
	Concurrency int               `json:"concurrency"`
	InFlight    int64             `json:"in_flight"`   // targets running now
	Outstanding int64             `json:"outstanding"` // targets of held tasks not finished
	Sweeps      map[string]int    `json:"sweeps"`      // tasks held, per sweep
	TasksDone   int64             `json:"tasks_done"`
	ResultsDone int64             `json:"results_done"`
	Started     time.Time         `json:"started"`
	Seen        time.Time         `json:"seen"`
}

func (w *Worker) heartbeat(ctx context.Context) {
	h, _ := os.Hostname()
	w.mu.Lock()
	sw := make(map[string]int, len(w.active))
	for k, v := range w.active {
		sw[k] = v
	}
	w.mu.Unlock()
	b, _ := json.Marshal(Heartbeat{
		Name: w.opts.Name, Host: h, PID: os.Getpid(), Allow: w.opts.Allow, Tags: w.opts.Tags,
		Concurrency: w.opts.Concurrency, InFlight: w.inFlight.Load(), Outstanding: w.outstanding.Load(),
		Sweeps: sw, TasksDone: w.tasksDone.Load(), ResultsDone: w.resultsDone.Load(),
		Started: w.started, Seen: time.Now(),
	})
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := w.s.workers.Put(hctx, keySafe(w.opts.Name), b); err != nil && ctx.Err() == nil {
		w.opts.Logf("heartbeat: %v", err)
	}
}

// Run pulls and runs tasks until ctx is done. Tasks still running then are
// handed back (nak) so other workers take them at once.
func (w *Worker) Run(ctx context.Context) error {
	tags := ""
	if len(w.opts.Tags) > 0 {
		tags = ", tags " + FormatTags(w.opts.Tags)
	}
	w.opts.Logf("worker %s: pulling tasks (-c %d, allow %s%s)", w.opts.Name, w.opts.Concurrency, strings.Join(w.opts.Allow, ","), tags)
	var wg sync.WaitGroup
	defer w.closeJobs() // after every task has returned (defers run last first)
	defer wg.Wait()
	// The first heartbeat waits until the worker follows the watches' ticks
	// (or a while): the others give a live worker its share of each round,
	// so it must not look alive before it can see the rounds.
	following := make(chan struct{})
	var once sync.Once
	ready := func() { once.Do(func() { close(following) }) }
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-following:
		case <-time.After(10 * time.Second):
		case <-ctx.Done():
		}
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			w.heartbeat(ctx)
			select {
			case <-ctx.Done():
				// Leave the live list now rather than when the TTL runs out.
				dctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = w.s.workers.Delete(dctx, keySafe(w.opts.Name))
				return
			case <-t.C:
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.watchLoop(ctx, ready) // cluster watches (watchworker.go)
	}()
	// Hold only what the worker can start soon: fetch another task while
	// fewer targets than 1.5x the concurrency are outstanding, so the next
	// task's targets fill the slots the current one's tail frees, and no
	// task waits long enough to expire.
	limit := int64(w.opts.Concurrency + w.opts.Concurrency/2)
	// After refusing a task, wait before the next fetch (refuseRetry) so
	// that a worker that can run nothing queued does not churn the queue;
	// after a failed fetch, likewise (fetchRetry).
	refusals, fetchFails := 0, 0
	for ctx.Err() == nil {
		if refusals > 0 {
			backoff.Sleep(ctx, refuseRetry.Delay(refusals))
		}
		if w.outstanding.Load() >= limit {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		batch, err := w.cons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				break
			}
			w.opts.Logf("fetch: %v", err)
			fetchFails++
			backoff.Sleep(ctx, fetchRetry.Delay(fetchFails))
			continue
		}
		fetchFails = 0
		for msg := range batch.Messages() {
			t, err := decodeTask(msg.Subject(), msg.Data())
			if err != nil {
				w.logSweep(msg.Subject(), "task %s: %v: refused", msg.Subject(), err)
				_ = msg.TermWithReason("malformed task")
				continue
			}
			if !w.allow[t.Job] {
				w.refuse(t, msg, fmt.Sprintf("is job kind %q, not allowed here (--allow %s)", t.Job, strings.Join(w.opts.Allow, ",")))
				refusals++
				continue
			}
			sr, err := w.sweep(ctx, t)
			if err == nil {
				err = checkTask(sr.rec, t)
			}
			if err == nil {
				err = sr.err // this worker's refusal of the sweep
			}
			var leave *leaveError
			switch {
			case errors.As(err, &leave):
				w.refuse(t, msg, leave.Error())
				refusals++
				continue
			case errors.Is(err, ErrNoSweep), errors.Is(err, errBadTask):
				// Deleted, expired, rewritten or forged: it will never run.
				w.logSweep(t.Sweep, "task %s/%d: %v; dropped", t.Sweep, t.Chunk, err)
				_ = msg.TermWithReason("task refused")
				continue
			case err != nil:
				w.opts.Logf("task %s/%d: %v; left for other workers", t.Sweep, t.Chunk, err)
				_ = msg.NakWithDelay(5 * time.Second)
				continue
			}
			refusals = 0
			w.outstanding.Add(int64(t.Hi - t.Lo))
			w.hold(t.Sweep, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer w.hold(t.Sweep, -1)
				n := w.runTask(ctx, t, sr, msg)
				w.outstanding.Add(-int64(t.Hi-t.Lo) + n)
			}()
		}
		cancel()
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			// No responders while the consumer's leader is re-elected
			// (a server of the cluster died): back off, as for a fetch
			// that failed outright, not a busy loop of log lines.
			w.opts.Logf("fetch: %v", err)
			fetchFails++
			backoff.Sleep(ctx, fetchRetry.Delay(fetchFails))
		}
	}
	return nil
}

func (w *Worker) hold(sweep string, d int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.active[sweep] += d
	if w.active[sweep] <= 0 {
		delete(w.active, sweep)
	}
}

// refuse leaves a task this worker does not run (its kind, or its options
// under this worker's policy) for the others.
func (w *Worker) refuse(t task, msg jetstream.Msg, why string) {
	w.logSweep(t.Sweep, "worker %s: sweep %s %s: leaving its tasks to other workers", w.opts.Name, t.Sweep, why)
	_ = msg.NakWithDelay(2 * time.Second)
}

// logSweep logs a refusal, at most once per sweep every 10 s: a sweep's
// tasks are all refused alike.
func (w *Worker) logSweep(sweep, format string, args ...any) {
	w.mu.Lock()
	last := w.refused[sweep]
	logIt := time.Since(last) > 10*time.Second
	if logIt {
		if len(w.refused) >= 1024 { // forget them all rather than grow without bound
			clear(w.refused)
		}
		w.refused[sweep] = time.Now()
	}
	w.mu.Unlock()
	if logIt {
		w.opts.Logf(format, args...)
	}
}

// leaveError: this worker does not run the sweep (job kind, or options its
// policy refuses); other workers may.
type leaveError struct{ err error }

func (e *leaveError) Error() string { return e.err.Error() }
func (e *leaveError) Unwrap() error { return e.err }

// errBadTask: a task that no worker should run (it does not fit its
// sweep's record, or names a record that is not the submitted one).
var errBadTask = errors.New("refused")

// checkTask checks t against the record it runs with: the job kind that
// will run (whether this worker allows it is the rebuilt sweep's err) is
// the one the task says, and the range is the task's own in the record's
// layout (so within the sweep's targets).
func checkTask(rec Record, t task) error {
	if kind := rec.Spec.Job; kind != t.Job {
		return fmt.Errorf("%w: the task says job %q, its sweep's spec runs %q", errBadTask, t.Job, kind)
	}
	lo := t.Chunk * rec.TaskSize
	if t.Chunk >= rec.Tasks || t.Lo != lo || t.Hi != min(lo+rec.TaskSize, rec.Total) {
		return fmt.Errorf("%w: task %d is [%d, %d), the sweep's layout (%d targets in tasks of %d) says otherwise",
			errBadTask, t.Chunk, t.Lo, t.Hi, rec.Total, rec.TaskSize)
	}
	return nil
}

// runTask runs one task, publishes its results, then acks it. It returns
// how many Results it emitted (each already taken off w.outstanding).
func (w *Worker) runTask(ctx context.Context, t task, sr *sweepRun, msg jetstream.Msg) int64 {
	// Tell the server the task is alive while it runs (AckWait/3).
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		every := w.ackWait() / 3
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-tk.C:
				_ = msg.InProgress()
			}
		}
	}()
	spec := sr.rec.Spec
	opts := spec.EngineOptions()
	opts.Concurrency = w.opts.Concurrency
	if spec.Concurrency > 0 && spec.Concurrency < opts.Concurrency {
		opts.Concurrency = spec.Concurrency
	}
	// Every task's targets take a slot of the worker's one gate (its -c
	// across tasks; an attempt's timeout starts once it has one), and the
	// sweep's --rate is shared by this worker's tasks of it.
	opts.Gate, opts.Pacer = w.gate, sr.rate
	j := sr.job
	_, batch := j.(job.Batcher)
	if batch {
		// Only one batch runs at a time (see batchMu).
		w.batchMu.Lock()
		opts.Concurrency = int(min(uint64(opts.Concurrency), t.Hi-t.Lo))
	}
	// Results stream out while the task runs, every flushEvery results or
	// second, so the submitter is not left waiting for a whole task and a
	// big task's results never sit in memory.
	t0 := time.Now()
	pub := &chunkPublisher{w: w, t: t, sr: sr}
	batches := make(chan []job.Result, 4)
	pubErr := make(chan error, 1)
	go func() {
		var err error
		for rs := range batches {
			if err == nil {
				err = pub.publish(ctx, rs)
			}
		}
		pubErr <- err
	}()
	buf := make([]job.Result, 0, min(flushEvery, t.Hi-t.Lo)) // grown once, not by doubling
	var got int64
	var byStatus [3]int // for the metrics
	var byClass map[string]int
	lastFlush := time.Now()
	var c engine.Counters
	stopInflight := w.trackInflight(tctx, &c)
	err := engine.Run(tctx, sr.set, target.Slice(sr.order, t.Lo, t.Hi), j, opts, &c, func(r job.Result) {
		r.Worker = w.opts.Name
		buf = append(buf, r)
		got++
		if w.opts.Metrics != nil {
			byStatus[statusIndex(r.Status)]++
			if r.Status != job.Up {
				if byClass == nil {
					byClass = map[string]int{}
				}
				byClass[classLabel(r.Class)]++
			}
		}
		w.outstanding.Add(-1)
		if len(buf) >= flushEvery || time.Since(lastFlush) > time.Second {
			batches <- buf
			buf, lastFlush = make([]job.Result, 0, flushEvery), time.Now()
		}
	})
	stopInflight()
	if batch {
		w.batchMu.Unlock()
	}
	t1 := time.Now()
	if len(buf) > 0 {
		batches <- buf
	}
	close(batches)
	perr := <-pubErr
	if err != nil || ctx.Err() != nil || uint64(got) != t.Hi-t.Lo {
		// Interrupted (worker stopping): hand the task back whole; what ran
		// will run again, and what was published is not published twice.
		_ = msg.Nak()
		w.opts.Metrics.handedBack()
		return got
	}
	if perr != nil {
		w.opts.Logf("task %s/%d: publish results: %v; the task will be redelivered", t.Sweep, t.Chunk, perr)
		_ = msg.Nak()
		w.opts.Metrics.handedBack()
		return got
	}
	stop()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		// The results are stored; a redelivery only repeats refused work.
		w.opts.Logf("task %s/%d: ack: %v", t.Sweep, t.Chunk, err)
	}
	w.tasksDone.Add(1)
	w.resultsDone.Add(got)
	w.opts.Metrics.task(t1.Sub(t0), byStatus, byClass, got)
	if w.opts.Verbose {
		w.opts.Logf("task %s/%d: %d targets run in %v, results published and task acked in %v",
			t.Sweep, t.Chunk, got, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	}
	return got
}

// trackInflight adds a task's in-flight count to the worker's, for status.
func (w *Worker) trackInflight(ctx context.Context, c *engine.Counters) func() {
	done := make(chan struct{})
	var last int64
	go func() {
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
			case <-done:
			case <-tk.C:
				n := c.InFlight.Load()
				w.inFlight.Add(n - last)
				last = n
				continue
			}
			w.inFlight.Add(-last)
			return
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

func (w *Worker) ackWait() time.Duration {
	if ci := w.cons.CachedInfo(); ci != nil && ci.Config.AckWait > 0 {
		return ci.Config.AckWait
	}
	return DefaultAckWait
}

// sweep returns the sweep t runs in, rebuilt from the record t names (its
// revision, checked against its digest), from the cache or the bucket. A
// record that is not there at that revision, or not with that digest, is
// not the one submitted: ErrNoSweep or errBadTask. A sweep this worker
// refuses to run (its kind, or its options under Confine) comes back with
// its err set to a *leaveError, and is cached too.
func (w *Worker) sweep(ctx context.Context, t task) (*sweepRun, error) {
	key := t.Sweep + "@" + t.SHA256
	w.mu.Lock()
	if sr, ok := w.sweeps[key]; ok {
		sr.used = time.Now()
		w.mu.Unlock()
		return sr, nil
	}
	w.mu.Unlock()
	var value []byte
	e, err := w.s.sweeps.GetRevision(ctx, t.Sweep, t.Rev)
	if err == nil {
		value = e.Value()
	} else if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Maybe a replica without it yet: the leader says (see leaderGet).
		value, err = leaderGet(ctx, w.nc, "KV_"+SweepsBucket, kvPre+SweepsBucket+"."+t.Sweep, t.Rev)
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("sweep %q revision %d: %w (deleted, expired or rewritten)", t.Sweep, t.Rev, ErrNoSweep)
	}
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", t.Sweep, err)
	}
	if d := digest(value); d != t.SHA256 {
		return nil, fmt.Errorf("%w: sweep %s revision %d has digest %s, its task says %s", errBadTask, t.Sweep, t.Rev, d, t.SHA256)
	}
	rec, err := decodeRecord(t.Sweep, value)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadTask, err)
	}
	rec.Revision = t.Rev
	sr, err := w.rebuild(ctx, rec)
	var leave *leaveError
	if errors.As(err, &leave) {
		sr, err = &sweepRun{rec: rec, err: leave}, nil
	}
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sweeps) >= 16 { // forget the least recently used sweep
		var oldest string
		for k, v := range w.sweeps {
			if oldest == "" || v.used.Before(w.sweeps[oldest].used) {
				oldest = k
			}
		}
		if c, ok := w.sweeps[oldest].job.(io.Closer); ok && w.active[w.sweeps[oldest].rec.ID] == 0 {
			_ = c.Close()
		}
		delete(w.sweeps, oldest)
	}
	sr.used = time.Now()
	w.sweeps[key] = sr
	return sr, nil
}

// closeJobs releases what cached jobs hold open (an ssh job's agent
// connection and bastions) once no task runs any more.
func (w *Worker) closeJobs() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, sr := range w.sweeps {
		if c, ok := sr.job.(io.Closer); ok {
			_ = c.Close()
		}
		delete(w.sweeps, id)
	}
}

// rebuild builds what rec runs with here: its kind must be allowed, its
// job options confined to this worker's own settings (WorkerOptions.Confine),
// its stdin (kept beside the record) the bytes its digest names.
func (w *Worker) rebuild(ctx context.Context, rec Record) (*sweepRun, error) {
	return w.rebuildFor(ctx, rec, false)
}

// rebuildFor is rebuild; with rounds, for a watch (WorkerOptions.Rounds).
func (w *Worker) rebuildFor(ctx context.Context, rec Record, rounds bool) (*sweepRun, error) {
	spec := rec.Spec
	if !w.allow[spec.Job] {
		return nil, &leaveError{fmt.Errorf("is job kind %q, not allowed here (--allow %s)", spec.Job, strings.Join(w.opts.Allow, ","))}
	}
	if !TagsMatch(w.opts.Tags, rec.On) {
		return nil, &leaveError{pinnedError(w.opts.Name, w.opts.Tags, rec.On)}
	}
	if spec.StdinDigest() != "" {
		var stdin []byte
		e, err := w.s.sweeps.Get(ctx, rec.ID+stdinKeySuffix)
		if err == nil {
			stdin = e.Value()
		} else if errors.Is(err, jetstream.ErrKeyNotFound) {
			// Maybe a replica without it yet: the leader says (see leaderGet).
			stdin, err = leaderGet(ctx, w.nc, "KV_"+SweepsBucket, kvPre+SweepsBucket+"."+rec.ID+stdinKeySuffix, 0)
		}
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("sweep %s: its stdin is gone (the sweep is complete or expired): %w", rec.ID, ErrNoSweep)
		}
		if err != nil {
			return nil, fmt.Errorf("sweep %s: stdin: %w", rec.ID, err)
		}
		if spec, err = spec.JoinStdin(stdin); err != nil {
			return nil, fmt.Errorf("%w: sweep %s: %v", errBadTask, rec.ID, err)
		}
	}
	if confine := w.opts.Confine[spec.Job]; confine != nil {
		opts, err := confine(spec.JobOptions)
		if err != nil {
			return nil, &leaveError{err}
		}
		spec.JobOptions = opts
	}
	if keep := w.opts.Rounds[spec.Job]; rounds && keep != nil {
		opts, err := keep(spec.JobOptions)
		if err != nil {
			return nil, &leaveError{err}
		}
		spec.JobOptions = opts
	}
	set, order, j, err := spec.Build()
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", rec.ID, err)
	}
	if order.Len() != rec.Total {
		if c, ok := j.(io.Closer); ok {
			_ = c.Close()
		}
		return nil, fmt.Errorf("%w: sweep %s: %d targets here, %d in its record (different fanout versions?)", errBadTask, rec.ID, order.Len(), rec.Total)
	}
	sr := &sweepRun{rec: rec, set: set, order: order, job: j, chk: &checker{rec: rec, set: set, order: order}}
	sr.rate = engine.NewPacer(rec.Spec.Rate)
	return sr, nil
}

// flushEvery is how many Results a running task gathers before publishing.
const flushEvery = 1024

// chunkPublisher stores one task's results, as they come, in messages under
// the server's size limit, each on its own subject
// fanout.results.<sweep>.<chunk>.<slot> (message id sweep.chunk.slot). Slots
// are taken in order. A slot that already holds a message (another run of
// the same task, redelivered, got there first) refuses ours: then that
// message is read back, its indexes are remembered, and only indexes no
// stored message holds are published, in the next free slot. Every slot
// below the one a run writes was either written or read by that run, so
// each index is stored exactly once per chunk whatever runs race or die.
type chunkPublisher struct {
	w    *Worker
	t    task
	sr   *sweepRun
	slot int             // next slot to try
	have map[uint64]bool // indexes stored by other runs, read back

	// A watch round's chunk (watchworker.go) names its own subjects and
	// stream; nil: the sweep's.
	subject func(slot int) string
	stream  jetstream.Stream
	// stored, when set, receives the results this run stored (not those
	// another run stored first).
	stored func([]job.Result)
}

func (p *chunkPublisher) publish(ctx context.Context, results []job.Result) error {
	w := p.w
	slices.SortFunc(results, func(a, b job.Result) int { return cmp.Compare(a.Index, b.Index) })
	max := int(w.nc.MaxPayload()) - 16<<10
	if w.maxBatch > 0 {
		max = w.maxBatch
	}
	pending := p.unstored(results)
	for len(pending) > 0 {
		data, n, err := encodeBatch(pending, max)
		if err != nil {
			return err
		}
		subj := resultSubject(p.t.Sweep, p.t.Chunk, p.slot)
		if p.subject != nil {
			subj = p.subject(p.slot)
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ack, err := w.s.js.PublishMsg(pctx, &nats.Msg{
			Subject: subj, Data: data,
			Header: nats.Header{"Nats-Msg-Id": []string{strings.TrimPrefix(subj, resultsPrefix)}},
		}, jetstream.WithRetryAttempts(20), jetstream.WithRetryWait(250*time.Millisecond), jetstream.WithMsgTTL(p.ttl()))
		cancel()
		if err == nil && !ack.Duplicate {
			if p.stored != nil {
				p.stored(pending[:n])
			}
			pending = pending[n:]
			p.slot++
			continue
		}
		var apiErr *jetstream.APIError
		if err != nil && !errors.As(err, &apiErr) {
			return err
		}
		// Refused or duplicate: another run (or anyone who may publish
		// results) stored this slot first.
		stored, err := p.storedIndexes(ctx, subj)
		if err != nil {
			return fmt.Errorf("%s: read back: %w", subj, err)
		}
		if p.have == nil {
			p.have = map[uint64]bool{}
		}
		for i := range stored {
			p.have[i] = true
		}
		p.slot++
		pending = p.unstored(pending)
	}
	return nil
}

// unstored is rs without the indexes another run is known to have stored.
func (p *chunkPublisher) unstored(rs []job.Result) []job.Result {
	if len(p.have) == 0 {
		return rs
	}
	keep := rs[:0:0]
	for _, r := range rs {
		if !p.have[r.Index] {
			keep = append(keep, r)
		}
	}
	return keep
}

// ttl is how long the server keeps the results: the sweep's retention.
func (p *chunkPublisher) ttl() time.Duration {
	if r := p.sr.rec.Retention; r > 0 {
		return r
	}
	return MaxRetention
}

// storedIndexes are the indexes of the message stored at subj that hold a
// genuine result of this task (see checker): a message that does not decode,
// or results of other targets, leave their indexes to be published again.
func (p *chunkPublisher) storedIndexes(ctx context.Context, subj string) (map[uint64]bool, error) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st := p.w.s.results
	if p.stream != nil {
		st = p.stream
	}
	m, err := st.GetLastMsgForSubject(gctx, subj)
	if err != nil {
		return nil, err
	}
	rs, err := decodeBatch(m.Data)
	if err != nil {
		p.w.logSweep(p.t.Sweep, "%s: stored message skipped: %v", subj, err)
		return nil, nil
	}
	have := make(map[uint64]bool, len(rs))
	bad := 0
	for i := range rs {
		if _, err := p.sr.chk.check(p.t.Chunk, &rs[i]); err != nil {
			bad++
			continue
		}
		have[rs[i].Index] = true
	}
	if bad > 0 {
		p.w.logSweep(p.t.Sweep, "%s: %d stored results are not this task's (forged?): their targets are published again", subj, bad)
	}
	return have, nil
}

// The waits of a worker's fetch loop (internal/backoff's one rule): after
// refusing tasks, from 50 ms doubling to 1 s; after a failed fetch, from
// 250 ms doubling to 2 s.
var (
	refuseRetry = backoff.Policy{Base: 50 * time.Millisecond, Max: time.Second}
	fetchRetry  = backoff.Policy{Base: 250 * time.Millisecond, Max: 2 * time.Second}
)
