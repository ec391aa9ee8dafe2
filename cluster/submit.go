package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	fanout "github.com/fanout/fanout"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
)

// ErrNoSweep: the sweep is not (or no longer) on the server.
var ErrNoSweep = errors.New("no such sweep on this server")

// Record is a submitted sweep as kept in the sweeps bucket.
type Record struct {
	ID        string      `json:"id"`
	Spec      fanout.Spec `json:"spec"`
	Total     uint64      `json:"total"`     // targets in the sweep's order
	TaskSize  uint64      `json:"task_size"` // targets per task (the last may be short)
	Tasks     uint64      `json:"tasks"`
	Submitted time.Time   `json:"submitted"`
	Submitter string      `json:"submitter"`
	Published bool        `json:"published"` // every task is in the tasks stream
}

// taskSizes bound how many targets one task carries, per job kind: many
// cheap ICMP or TCP probes, few slow SSH sessions or local commands. A task
// has a fixed cost (a fetch, a batch socket, a results message, an ack), so
// ICMP tasks stay large even when that leaves few of them.
var taskSizes = map[string]struct{ min, max uint64 }{
	"ping": {4096, 4096},
	"tcp":  {128, 1024},
	"exec": {4, 64},
	"ssh":  {1, 16},
}

// TaskSize is the task size for a sweep of n targets of kind: enough tasks
// (64) for many workers to share, within the kind's bounds.
func TaskSize(kind string, n uint64) uint64 {
	b, ok := taskSizes[kind]
	if !ok {
		b.min, b.max = 16, 256
	}
	return max(1, min(b.max, max(b.min, (n+63)/64), n))
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
}

// Submit puts spec into the sweeps bucket and publishes its tasks. The spec
// must stand alone (no "-" or "@FILE" left: see fanout.Spec). It returns the
// sweep's record; results are read with Collect.
func (c *Client) Submit(ctx context.Context, spec fanout.Spec, o SubmitOptions) (Record, error) {
	_, order, _, err := spec.Build()
	if err != nil {
		return Record{}, err
	}
	n := order.Len()
	id := o.ID
	if id == "" {
		id = NewSweepID()
	}
	if !ValidSweepID(id) {
		return Record{}, fmt.Errorf("sweep id %q: want letters, digits, - and _", id)
	}
	size := o.TaskSize
	if size == 0 {
		size = TaskSize(spec.Job, n)
	}
	h, _ := os.Hostname()
	rec := Record{
		ID: id, Spec: spec, Total: n, TaskSize: size, Tasks: (n + size - 1) / size,
		Submitted: time.Now().UTC(), Submitter: fmt.Sprintf("%s-%d", h, os.Getpid()),
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return Record{}, err
	}
	if len(b) > int(c.nc.MaxPayload())-4096 {
		return Record{}, fmt.Errorf("sweep spec is %d bytes, over the server's %d-byte message limit (a long host list?): split it with --shard", len(b), c.nc.MaxPayload())
	}
	if _, err := c.s.sweeps.Create(ctx, id, b); err != nil {
		return Record{}, fmt.Errorf("sweep %s: %w", id, err)
	}
	if err := c.publishTasks(ctx, rec); err != nil {
		return rec, err
	}
	rec.Published = true
	b, _ = json.Marshal(rec)
	if _, err := c.s.sweeps.Put(ctx, id, b); err != nil {
		return rec, fmt.Errorf("sweep %s: %w", id, err)
	}
	return rec, nil
}

// publishTasks publishes every task of rec, each with a message id, so a
// second attempt (after a crash mid-way) adds only what is missing while the
// duplicate window lasts.
func (c *Client) publishTasks(ctx context.Context, rec Record) error {
	for chunk := uint64(0); chunk < rec.Tasks; chunk++ {
		lo := chunk * rec.TaskSize
		hi := min(lo+rec.TaskSize, rec.Total)
		b, _ := json.Marshal(task{Sweep: rec.ID, Chunk: chunk, Lo: lo, Hi: hi, Job: rec.Spec.Job})
		subj := taskSubject(rec.ID, chunk)
		if _, err := c.s.js.PublishMsgAsync(&nats.Msg{
			Subject: subj, Data: b, Header: nats.Header{"Nats-Msg-Id": []string{subj[len(tasksPrefix):]}},
		}); err != nil {
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
	return nil
}

// Lookup returns a submitted sweep's record.
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
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, fmt.Errorf("sweep %s: bad record: %w", id, err)
	}
	return rec, nil
}

// CollectOptions say where a sweep's results go.
type CollectOptions struct {
	// Have, when set, reports indexes the caller already holds (its store):
	// those are counted done but not emitted again.
	Have func(index uint64) bool
	// Counters, when set, follow the sweep: Total, Done, Up, Down, Errors.
	Counters *engine.Counters
	// Emit receives each Result once, from one goroutine.
	Emit func(job.Result)
}

// Collect streams sweep id's results, each index once, until every target
// has a Result or ctx is done. It replays from the start of the results
// stream, so a restarted or re-attached submitter gets everything; the
// ordered consumer survives server restarts.
func (c *Client) Collect(ctx context.Context, id string, o CollectOptions) error {
	rec, err := c.Lookup(ctx, id)
	if err != nil {
		return err
	}
	if !rec.Published {
		// The submitter died while publishing tasks: finish the job (task
		// message ids make this idempotent within the duplicate window;
		// beyond it, a repeated task only repeats refused work).
		if err := c.publishTasks(ctx, rec); err != nil {
			return err
		}
		rec.Published = true
		b, _ := json.Marshal(rec)
		if _, err := c.s.sweeps.Put(ctx, id, b); err != nil {
			return err
		}
	}
	cnt := o.Counters
	if cnt == nil {
		cnt = new(engine.Counters)
	}
	cnt.Total.Store(int64(rec.Total))
	if cnt.Began.Load() == 0 {
		cnt.Began.Store(time.Now().UnixNano())
	}
	seen := newBitmap(rec.Total)
	var done uint64
	if rec.Total == 0 {
		return nil
	}
	cons, err := c.s.js.OrderedConsumer(ctx, ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{resultsPrefix + id + ".>"},
	})
	if err != nil {
		return fmt.Errorf("sweep %s: results consumer: %w", id, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("sweep %s: results: %w", id, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for done < rec.Total {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return err
			}
			// Server gone for a while: the ordered consumer recreates itself
			// from the last sequence it delivered once it is back.
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		rs, err := decodeBatch(msg.Data())
		if err != nil {
			return fmt.Errorf("sweep %s: %s: %w", id, msg.Subject(), err)
		}
		for _, r := range rs {
			if r.Index >= rec.Total || seen.get(r.Index) {
				continue
			}
			seen.set(r.Index)
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
				o.Emit(r)
			}
		}
	}
	return nil
}

// bitmap marks indexes seen, one bit each (a /8 costs 2 MiB).
type bitmap []uint64

func newBitmap(n uint64) bitmap    { return make(bitmap, (n+63)/64) }
func (b bitmap) get(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint64)      { b[i/64] |= 1 << (i % 64) }
