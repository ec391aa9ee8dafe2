package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SweepStatus is one sweep as `fanout status` shows it.
type SweepStatus struct {
	Record
	SHA256       string    `json:"sha256"`        // the record's digest (attach --digest)
	Expires      time.Time `json:"expires"`       // when the server drops the sweep (its retention)
	Published    bool      `json:"published"`     // every task is in the tasks stream
	ChunksDone   uint64    `json:"chunks_done"`   // tasks whose results are stored
	TasksQueued  uint64    `json:"tasks_queued"`  // tasks still in the work queue (waiting or running)
	DoneApprox   uint64    `json:"done"`          // targets with results (chunks done x task size)
	Workers      []string  `json:"workers"`       // workers holding its tasks now
	Rate         float64   `json:"rate"`          // targets per second since submission (until done)
	Complete     bool      `json:"complete"`      // every task's results are stored
	LastActivity time.Time `json:"last_activity"` // when the newest results were stored
}

// Status is the cluster's state: sweeps, newest first, and live workers.
type Status struct {
	Sweeps  []SweepStatus `json:"sweeps"`
	Workers []Heartbeat   `json:"workers"`
}

// Status reads the sweeps and workers buckets and the streams' per-subject
// counts. It never blocks a sweep.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	var err error
	if st.Workers, err = c.Workers(ctx); err != nil {
		return st, err
	}

	sl, err := c.s.sweeps.ListKeys(ctx)
	if err != nil {
		return st, err
	}
	for id := range sl.Keys() {
		if strings.Contains(id, "/") { // a sweep's stdin or published mark
			continue
		}
		rec, err := getRecord(ctx, c.s, id)
		if err != nil {
			continue
		}
		ss := SweepStatus{Record: rec, SHA256: rec.Digest}
		ret := rec.Retention
		if ret == 0 {
			ret = MaxRetention
		}
		ss.Expires = rec.Submitted.Add(ret)
		ss.Published, _ = c.published(ctx, id)
		if n, last, err := subjectCount(ctx, c.s.results, resultsPrefix+id+".*.0"); err == nil {
			ss.ChunksDone, ss.LastActivity = n, last
		}
		if n, _, err := subjectCount(ctx, c.s.tasks, tasksPrefix+id+".*"); err == nil {
			ss.TasksQueued = n
		}
		ss.DoneApprox = min(ss.ChunksDone*rec.TaskSize, rec.Total)
		ss.Complete = ss.Published && ss.ChunksDone >= rec.Tasks
		end := time.Now()
		if ss.Complete && !ss.LastActivity.IsZero() {
			end = ss.LastActivity
		}
		if el := end.Sub(rec.Submitted).Seconds(); el > 0 {
			ss.Rate = float64(ss.DoneApprox) / el
		}
		for _, w := range st.Workers {
			if w.Sweeps[id] > 0 {
				ss.Workers = append(ss.Workers, w.Name)
			}
		}
		st.Sweeps = append(st.Sweeps, ss)
	}
	sort.Slice(st.Sweeps, func(a, b int) bool { return st.Sweeps[a].Submitted.After(st.Sweeps[b].Submitted) })
	return st, nil
}

// Workers are the live workers (a heartbeat within WorkerTTL), by name.
func (c *Client) Workers(ctx context.Context) ([]Heartbeat, error) {
	wl, err := c.s.workers.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []Heartbeat
	for k := range wl.Keys() {
		e, err := c.s.workers.Get(ctx, k)
		if err != nil {
			continue
		}
		var h Heartbeat
		if json.Unmarshal(e.Value(), &h) == nil {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// subjectCount is how many distinct subjects match filter in stream s, and
// when the newest of them was stored.
func subjectCount(ctx context.Context, s jetstream.Stream, filter string) (uint64, time.Time, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, time.Time{}, err
	}
	n := uint64(len(info.State.Subjects))
	var last time.Time
	if n > 0 {
		m, err := s.GetLastMsgForSubject(ctx, filter)
		if err == nil {
			last = m.Time
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, last, nil
		}
	}
	return n, last, nil
}

// Delete removes a sweep: its record, stdin, queued tasks and stored
// results. What is left of a sweep whose record is gone is removed too,
// and the answer is then ErrNoSweep.
func (c *Client) Delete(ctx context.Context, id string) error {
	if !ValidSweepID(id) {
		return fmt.Errorf("sweep id %q: want letters, digits, - and _", id)
	}
	_, lerr := c.Lookup(ctx, id)
	if lerr != nil && !errors.Is(lerr, ErrNoSweep) {
		return lerr
	}
	if err := c.s.tasks.Purge(ctx, jetstream.WithPurgeSubject(tasksPrefix+id+".>")); err != nil {
		return fmt.Errorf("sweep %s: tasks: %w", id, err)
	}
	if err := c.s.results.Purge(ctx, jetstream.WithPurgeSubject(resultsPrefix+id+".>")); err != nil {
		return fmt.Errorf("sweep %s: results: %w", id, err)
	}
	for _, k := range []string{id + stdinKeySuffix, id + publishedKeySuffix, id} {
		if err := c.s.sweeps.Purge(ctx, k, jetstream.PurgeTTL(time.Minute)); err != nil {
			return fmt.Errorf("sweep %s: %w", id, err)
		}
	}
	return lerr
}
