package cluster

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/target"
)

// ErrNoSweep: the sweep is not (or no longer) on the server.
var ErrNoSweep = errors.New("no such sweep on this server")

// Record is a submitted sweep as kept in the sweeps bucket. It is written
// once (KV Create) and never changed: its SHA-256 is the sweep's digest,
// which the submitter prints, its tasks carry and attach checks.
type Record struct {
	ID        string    `json:"id"`
	Spec      spec.Spec `json:"spec"`
	Total     uint64    `json:"total"`     // targets in the sweep's order
	TaskSize  uint64    `json:"task_size"` // targets per task (the last may be short)
	Tasks     uint64    `json:"tasks"`
	Submitted time.Time `json:"submitted"`
	Submitter string    `json:"submitter"`
	// Retention is how long the server keeps the spec, tasks and results
	// (per-message TTLs); a task not run by then is dropped.
	Retention time.Duration `json:"retention_ns,omitempty"`
	// On pins the sweep to the workers whose tags include all of these
	// (--on dc=paris); none: any worker.
	On map[string]string `json:"on,omitempty"`

	Digest   string `json:"-"` // SHA-256 (hex) of the record as stored
	Revision uint64 `json:"-"` // its revision in the sweeps bucket
}

// Retention bounds: what the server keeps of a sweep, unless told otherwise
// (--retention), and at most (the streams' own MaxAge, which also bounds
// anything stored without a TTL).
const (
	DefaultRetention = 24 * time.Hour
	MaxRetention     = resultsMaxAge
)

// Keys of the sweeps bucket beside a sweep's record (a "/" never occurs in
// a sweep id).
const (
	stdinKeySuffix     = "/stdin"     // the sweep's stdin bytes (ssh --stdin)
	publishedKeySuffix = "/published" // every task is in the tasks stream
)

// ErrSpecChanged: the sweep's record on the server is not the one submitted.
var ErrSpecChanged = errors.New("the sweep's spec on the server is not the one submitted")

// digest is the SHA-256 (hex) of a stored record.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// decodeRecord reads the stored record of sweep id and checks what every
// reader relies on before it sizes anything: the id, and a task layout that
// adds up (Tasks tasks of TaskSize cover Total). Targets are checked against
// the Spec where the Spec is rebuilt (worker, collector).
func decodeRecord(id string, b []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("sweep %s: bad record: %w", id, err)
	}
	if rec.ID != id {
		return Record{}, fmt.Errorf("sweep %s: the record names sweep %q", id, rec.ID)
	}
	switch {
	case rec.Total == 0 && rec.Tasks == 0:
	case rec.TaskSize == 0 || rec.Tasks != rec.Total/rec.TaskSize+min(rec.Total%rec.TaskSize, 1):
		return Record{}, fmt.Errorf("sweep %s: bad record: %d tasks of %d do not make %d targets", id, rec.Tasks, rec.TaskSize, rec.Total)
	}
	if rec.Retention < 0 || rec.Retention > MaxRetention {
		return Record{}, fmt.Errorf("sweep %s: bad record: retention %v", id, rec.Retention)
	}
	if err := CheckTags(rec.On); err != nil {
		return Record{}, fmt.Errorf("sweep %s: bad record: on: %w", id, err)
	}
	if err := rec.Spec.Standalone(); err != nil {
		return Record{}, fmt.Errorf("sweep %s: %w", id, err)
	}
	rec.Digest = digest(b)
	return rec, nil
}

// visit rebuilds the set and order of rec's Spec (no job is built) and
// checks that they have rec.Total targets, at most max.
func (rec Record) visit(max uint64) (target.Set, target.Order, error) {
	if rec.Total > max {
		return nil, nil, fmt.Errorf("sweep %s: %d targets, over the limit of %d here (--max-targets)", rec.ID, rec.Total, max)
	}
	set, order, err := rec.Spec.Visit()
	if err != nil {
		return nil, nil, fmt.Errorf("sweep %s: %w", rec.ID, err)
	}
	if order.Len() != rec.Total {
		return nil, nil, fmt.Errorf("sweep %s: %d targets here, %d in its record (different fanout versions?)", rec.ID, order.Len(), rec.Total)
	}
	return set, order, nil
}

// defaultTaskSize bounds the tasks of a kind this process has not
// registered (a library user's, known to its workers only).
var defaultTaskSize = [2]uint64{16, 256}

// TaskSize is the task size for a sweep of n targets of kind: enough tasks
// (64) for many workers to share, within the kind's bounds (its registered
// job.Traits.TaskSize: many cheap probes, few slow commands).
func TaskSize(kind string, n uint64) uint64 {
	b := defaultTaskSize
	if t, ok := job.TraitsOf(kind); ok {
		b = t.TaskSize
	}
	return max(1, min(b[1], max(b[0], (n+63)/64), n))
}

// Client talks to a cluster as a submitter or for status.
type Client struct {
	nc *nats.Conn
	s  *setup
}

// NewClient prepares a client on nc (streams are created when missing).
func NewClient(ctx context.Context, nc *nats.Conn) (*Client, error) {
	s, err := ensure(ctx, nc)
	if err != nil {
		return nil, err
	}
	return &Client{nc: nc, s: s}, nil
}

// SubmitOptions tune a submission.
type SubmitOptions struct {
	ID       string // sweep id; default NewSweepID()
	TaskSize uint64 // targets per task; default TaskSize(kind, n)
	// Retention is how long the server keeps the sweep (spec, tasks,
	// results); default DefaultRetention, at most MaxRetention.
	Retention time.Duration
	// On pins the sweep to the workers tagged with all of these (ParseTags).
	On map[string]string
}

// Submit puts spec into the sweeps bucket and publishes its tasks. n is
// the number of targets the spec visits (the length of the order that
// Spec.Build or Spec.Visit gives): the caller has built or visited the
// sweep already, so Submit neither parses its targets again nor builds its
// job (an ssh job reads keys and may ask a passphrase). Workers and the
// collector check n against the spec and refuse a record whose count is
// not the spec's. "@FILE" targets are read here (the spec carries them to
// the workers, which never read a file a spec names); "-" is an error
// (Spec.Inline it first). Stdin bytes of the job's options (ssh --stdin)
// are kept beside the record, not in it. It returns the sweep's record,
// Digest included; results are read with Collect.
func (c *Client) Submit(ctx context.Context, spec spec.Spec, n uint64, o SubmitOptions) (Record, error) {
	spec, err := spec.Inline(nil)
	if err != nil {
		return Record{}, err
	}
	spec, stdin, err := spec.SplitStdin()
	if err != nil {
		return Record{}, err
	}
	if max := cmp.Or(spec.MaxTargets, target.DefaultMaxTargets); n > max {
		return Record{}, fmt.Errorf("%w: %d targets, more than the limit of %d; raise it with --max-targets N", target.ErrTooMany, n, max)
	}
	id := o.ID
	if id == "" {
		id = NewSweepID()
	}
	if !ValidSweepID(id) {
		return Record{}, fmt.Errorf("sweep id %q: want letters, digits, - and _", id)
	}
	ret := o.Retention
	if ret == 0 {
		ret = DefaultRetention
	}
	if ret < time.Second || ret > MaxRetention {
		return Record{}, fmt.Errorf("retention %v: want 1s to %v", ret, MaxRetention)
	}
	if err := CheckTags(o.On); err != nil {
		return Record{}, fmt.Errorf("on: %w", err)
	}
	size := o.TaskSize
	if size == 0 {
		size = TaskSize(spec.Job, n)
	}
	h, _ := os.Hostname()
	rec := Record{
		ID: id, Spec: spec, Total: n, TaskSize: size, Tasks: n/size + min(n%size, 1),
		Submitted: time.Now().UTC(), Submitter: fmt.Sprintf("%s-%d", h, os.Getpid()), Retention: ret, On: o.On,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return Record{}, err
	}
	limit := int(c.nc.MaxPayload()) - 4096
	if len(b) > limit {
		return Record{}, fmt.Errorf("sweep spec is %d bytes, over the server's %d-byte message limit (a long host list?): split it with --shard", len(b), c.nc.MaxPayload())
	}
	if len(stdin) > limit {
		return Record{}, fmt.Errorf("stdin is %d bytes, over the server's %d-byte message limit", len(stdin), c.nc.MaxPayload())
	}
	ttl := jetstream.KeyTTL(ret)
	if stdin != nil {
		// Before the record: a worker that sees the sweep finds its stdin.
		if _, err := c.s.sweeps.Create(ctx, id+stdinKeySuffix, stdin, ttl); err != nil {
			return Record{}, fmt.Errorf("sweep %s: stdin: %w", id, err)
		}
	}
	if rec.Revision, err = c.s.sweeps.Create(ctx, id, b, ttl); err != nil {
		if stdin != nil {
			_ = c.s.sweeps.Purge(ctx, id+stdinKeySuffix, jetstream.PurgeTTL(time.Minute))
		}
		return Record{}, fmt.Errorf("sweep %s: %w", id, err)
	}
	rec.Digest = digest(b)
	if err := c.publishTasks(ctx, rec); err != nil {
		return rec, err
	}
	return rec, nil
}

// publishTasks publishes every task of rec, each with a message id, so a
// second attempt (after a crash mid-way) adds only what is missing while the
// duplicate window lasts; then marks the sweep published. Tasks expire with
// the sweep's retention: one no worker runs does not wait longer.
func (c *Client) publishTasks(ctx context.Context, rec Record) error {
	ttl := rec.Retention
	if ttl == 0 {
		ttl = MaxRetention
	}
	for chunk := uint64(0); chunk < rec.Tasks; chunk++ {
		lo := chunk * rec.TaskSize
		hi := min(lo+rec.TaskSize, rec.Total)
		b, _ := json.Marshal(task{Sweep: rec.ID, Chunk: chunk, Lo: lo, Hi: hi, Job: rec.Spec.Job, Rev: rec.Revision, SHA256: rec.Digest})
		subj := taskSubject(rec.ID, chunk)
		if _, err := c.s.js.PublishMsgAsync(&nats.Msg{
			Subject: subj, Data: b, Header: nats.Header{"Nats-Msg-Id": []string{subj[len(tasksPrefix):]}},
		}, jetstream.WithMsgTTL(ttl)); err != nil {
			return fmt.Errorf("sweep %s: publish task %d: %w", rec.ID, chunk, err)
		}
	}
	select {
	case <-c.s.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return fmt.Errorf("sweep %s: tasks not acknowledged by the server after 1m", rec.ID)
	}
	_, err := c.s.sweeps.Create(ctx, rec.ID+publishedKeySuffix, []byte(rec.Digest), jetstream.KeyTTL(ttl))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("sweep %s: %w", rec.ID, err)
	}
	return nil
}

// published reports whether every task of sweep id is in the tasks stream.
func (c *Client) published(ctx context.Context, id string) (bool, error) {
	_, err := c.s.sweeps.Get(ctx, id+publishedKeySuffix)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Lookup returns a submitted sweep's record, its Digest and Revision set.
func (c *Client) Lookup(ctx context.Context, id string) (Record, error) {
	return getRecord(ctx, c.s, id)
}

func getRecord(ctx context.Context, s *setup, id string) (Record, error) {
	if !ValidSweepID(id) {
		return Record{}, fmt.Errorf("sweep id %q: want letters, digits, - and _", id)
	}
	e, err := s.sweeps.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Record{}, fmt.Errorf("sweep %q: %w (see fanout status)", id, ErrNoSweep)
		}
		return Record{}, fmt.Errorf("sweep %s: %w", id, err)
	}
	rec, err := decodeRecord(id, e.Value())
	rec.Revision = e.Revision()
	return rec, err
}

// CollectOptions say where a sweep's results go.
type CollectOptions struct {
	// Digest, when set, is the sweep's digest as printed at submission:
	// Collect refuses (ErrSpecChanged) a record on the server that differs.
	Digest string
	// MaxTargets bounds the sweep's size (and the memory its bookkeeping
	// takes, a bit per target); 0 means target.DefaultMaxTargets.
	MaxTargets uint64
	// Have, when set, reports indexes the caller already holds (its store):
	// those are counted done but not emitted again.
	Have func(index uint64) bool
	// Counters, when set, follow the sweep: Total, Done, Up, Down, Errors.
	Counters *engine.Counters
	// Dropped, when set, counts what was refused on the way.
	Dropped *Dropped
	// Emit receives each Result once, from one goroutine.
	Emit func(job.Result)
}

// Dropped counts what a collector refused: results that do not belong to
// the sweep where they were found, and messages that do not decode. Anyone
// who may publish results can store them; none reaches Emit.
type Dropped struct {
	Forged    atomic.Int64 // host (or address), port or job unlike the target at the result's index
	Invalid   atomic.Int64 // index outside the sweep, or outside the task it was stored for
	Malformed atomic.Int64 // results messages that do not decode (each counted once)
	why       atomic.Pointer[string]
}

// MalformedReason says why the first malformed message was refused (a
// results batch of another fanout version, ...), or "" when none was.
func (d *Dropped) MalformedReason() string {
	if p := d.why.Load(); p != nil {
		return *p
	}
	return ""
}

func (d *Dropped) malformed(why string) {
	d.Malformed.Add(1)
	d.why.CompareAndSwap(nil, &why)
}

// Results is how many results were dropped, forged or invalid.
func (d *Dropped) Results() int64 { return d.Forged.Load() + d.Invalid.Load() }

// checker tells a sweep's genuine results from others: each result's index
// must be visited by the sweep, in the task (chunk) whose subject it was
// stored under, and its host (the address, for an address target) and port
// must be those of the target at that index, its job the sweep's.
type checker struct {
	rec   Record
	set   target.Set
	order target.Order
}

var (
	errInvalid = errors.New("invalid")
	errForged  = errors.New("forged")
)

// check returns the result's position in the sweep's order, or errInvalid
// or errForged (wrapped, saying why).
func (c *checker) check(chunk uint64, r *job.Result) (uint64, error) {
	k, ok := target.Position(c.order, r.Index)
	if !ok {
		return 0, fmt.Errorf("%w: index %d is not in sweep %s", errInvalid, r.Index, c.rec.ID)
	}
	if k/c.rec.TaskSize != chunk {
		return 0, fmt.Errorf("%w: index %d (position %d) stored for task %d", errInvalid, r.Index, k, chunk)
	}
	t := c.set.At(r.Index)
	switch {
	case !sameHost(r.Host, t):
		return 0, fmt.Errorf("%w: index %d is %s, the result says host %q", errForged, r.Index, t.Name(), r.Host)
	case t.Port != 0 && r.Port != int(t.Port):
		return 0, fmt.Errorf("%w: index %d is port %d, the result says %d", errForged, r.Index, t.Port, r.Port)
	case r.Job != c.rec.Spec.Job:
		return 0, fmt.Errorf("%w: index %d: the result says job %q, the sweep is %q", errForged, r.Index, r.Job, c.rec.Spec.Job)
	}
	return k, nil
}

// sameHost reports whether a result's host names target t: its name, or
// for an address target its address (in any of its spellings: a job may
// show a v4-mapped address unmapped). A result's Addr is where the job
// connected (a config's HostName, a bastion), so it is not compared.
func sameHost(host string, t target.Target) bool {
	if t.Host != "" {
		return host == t.Host
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.WithZone("").Unmap() == t.Addr.WithZone("").Unmap()
}

// resultChunk is the chunk of a results subject fanout.results.<id>.<chunk>.<slot>.
func resultChunk(id, subject string) (uint64, bool) {
	rest, ok := strings.CutPrefix(subject, resultsPrefix+id+".")
	if !ok {
		return 0, false
	}
	cs, slot, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, false
	}
	chunk, err := strconv.ParseUint(cs, 10, 64)
	if err != nil || fmt.Sprint(chunk) != cs {
		return 0, false
	}
	if _, err := strconv.ParseUint(slot, 10, 31); err != nil {
		return 0, false
	}
	return chunk, true
}

// collectRetry spaces a collector's reads while the server is away.
var collectRetry = backoff.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second}

// Collect streams sweep id's results, each index once, until every target
// has a Result or ctx is done. It replays from the start of the results
// stream, so a restarted or re-attached submitter gets everything; the
// ordered consumer survives server restarts. Results that are not the
// sweep's (see Dropped) and messages that do not decode are skipped and
// counted. Once every result is in, the sweep's stdin, if any, is deleted
// from the server.
func (c *Client) Collect(ctx context.Context, id string, o CollectOptions) error {
	rec, err := c.Lookup(ctx, id)
	if err != nil {
		return err
	}
	if o.Digest != "" && o.Digest != rec.Digest {
		return fmt.Errorf("sweep %s: %w (SHA-256 %s, submitted %s)", id, ErrSpecChanged, rec.Digest, o.Digest)
	}
	max := o.MaxTargets
	if max == 0 {
		max = target.DefaultMaxTargets
	}
	set, order, err := rec.visit(max)
	if err != nil {
		return err
	}
	chk := &checker{rec: rec, set: set, order: order}
	if ok, err := c.published(ctx, id); err != nil {
		return fmt.Errorf("sweep %s: %w", id, err)
	} else if !ok {
		// The submitter died while publishing tasks: finish the job (task
		// message ids make this idempotent within the duplicate window;
		// beyond it, a repeated task only repeats refused work).
		if err := c.publishTasks(ctx, rec); err != nil {
			return err
		}
	}
	cnt := o.Counters
	if cnt == nil {
		cnt = new(engine.Counters)
	}
	drop := o.Dropped
	if drop == nil {
		drop = new(Dropped)
	}
	cnt.Total.Store(int64(rec.Total))
	if cnt.Began.Load() == 0 {
		cnt.Began.Store(time.Now().UnixNano())
	}
	if rec.Total == 0 {
		return nil
	}
	seen := newBitmap(rec.Total) // by position in the order
	var done uint64
	fails := 0 // reads failed in a row
	// A streamReader: replaced when it stalls after a server of the cluster
	// died, resuming where it was.
	it := newStreamReader(c.s.js, ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{resultsPrefix + id + ".>"},
	}, jetstream.PullMaxMessages(64))
	if err := it.open(ctx); err != nil {
		return fmt.Errorf("sweep %s: results consumer: %w", id, err)
	}
	defer it.Stop()
	for done < rec.Total {
		msg, err := it.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, nats.ErrConnectionClosed) {
				return err
			}
			// Server gone for a while: the ordered consumer recreates itself
			// from the last sequence it delivered once it is back.
			fails++
			backoff.Sleep(ctx, collectRetry.Delay(fails))
			continue
		}
		fails = 0
		chunk, ok := resultChunk(id, msg.Subject())
		if !ok || chunk >= rec.Tasks {
			drop.malformed(fmt.Sprintf("results message on %s: not a task of the sweep", msg.Subject()))
			continue
		}
		rs, err := decodeBatch(msg.Data())
		if err != nil {
			drop.malformed(fmt.Sprintf("%s: %v", msg.Subject(), err))
			continue
		}
		for i := range rs {
			r := &rs[i]
			k, err := chk.check(chunk, r)
			if err != nil {
				if errors.Is(err, errForged) {
					drop.Forged.Add(1)
				} else {
					drop.Invalid.Add(1)
				}
				continue
			}
			if seen.get(k) {
				continue
			}
			seen.set(k)
			done++
			if o.Have != nil && o.Have(r.Index) {
				cnt.Skipped.Add(1)
				cnt.Done.Add(1)
				continue
			}
			switch r.Status {
			case job.Up:
				cnt.Up.Add(1)
			case job.Down:
				cnt.Down.Add(1)
			default:
				cnt.Errors.Add(1)
			}
			cnt.Done.Add(1)
			if o.Emit != nil {
				o.Emit(*r)
			}
		}
	}
	if rec.Spec.StdinDigest() != "" {
		// No worker needs it any more: a task still held only repeats work.
		_ = c.s.sweeps.Purge(ctx, id+stdinKeySuffix, jetstream.PurgeTTL(time.Minute))
	}
	return nil
}

// bitmap marks indexes seen, one bit each (a /8 costs 2 MiB).
type bitmap []uint64

func newBitmap(n uint64) bitmap    { return make(bitmap, (n+63)/64) }
func (b bitmap) get(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint64)      { b[i/64] |= 1 << (i % 64) }
