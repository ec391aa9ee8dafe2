// Package watchtest drives watch.Observers with real rounds, for the tests
// of the store's history and the metrics while the round loop is built
// elsewhere: each round is a real fanout.Sweep, whose Results go to every
// Observer in the order the loop calls them (RoundStart, Result..., RoundEnd)
// from one goroutine.
package watchtest

import (
	"context"
	"strconv"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

// Driver runs rounds of one watch.
type Driver struct {
	Watch     string
	Set       target.Set
	Order     target.Order // nil: canonical order
	Job       fanout.Job
	Next      uint64 // number of the next round
	Observers []watch.Observer
	// Changes, when set, is asked for the change events each Result
	// causes (the loop's job), given the target's previous Result.
	Changes func(prev *job.Result, r job.Result) []watch.Change

	prev map[string]job.Result
}

// Round runs one round and returns it as RoundEnd got it.
func (d *Driver) Round(ctx context.Context) (watch.Round, error) {
	now := time.Now()
	rd := watch.Round{Watch: d.Watch, N: d.Next, Due: now, Start: now, Targets: int(d.Set.Len())}
	d.Next++
	for _, o := range d.Observers {
		o.RoundStart(rd)
	}
	if d.prev == nil {
		d.prev = map[string]job.Result{}
	}
	err := fanout.Sweep(ctx, d.Set, d.Job, fanout.Options{Order: d.Order, OnResult: func(r job.Result) {
		switch r.Status {
		case job.Up:
			rd.Up++
		case job.Down:
			rd.Down++
		default:
			rd.Error++
		}
		for _, o := range d.Observers {
			o.Result(rd.N, r)
		}
		if d.Changes != nil {
			key := r.Host + "|" + r.Addr + "|" + strconv.Itoa(r.Port)
			var p *job.Result
			if old, ok := d.prev[key]; ok {
				p = &old
			}
			for _, c := range d.Changes(p, r) {
				c.Watch, c.Round = d.Watch, rd.N
				rd.Changes++
				for _, o := range d.Observers {
					o.Change(c)
				}
			}
			d.prev[key] = r
		}
	}})
	rd.End = time.Now()
	for _, o := range d.Observers {
		o.RoundEnd(rd)
	}
	return rd, err
}

// StatusChanges is a Changes func: a change when the status goes to or
// from up.
func StatusChanges(prev *job.Result, r job.Result) []watch.Change {
	if prev == nil || (prev.Status == job.Up) == (r.Status == job.Up) {
		return nil
	}
	k := watch.Down
	if r.Status == job.Up {
		k = watch.Up
	}
	return []watch.Change{{Kind: k, Result: r, PrevStatus: prev.Status, PrevClass: prev.Class, Since: prev.End}}
}
