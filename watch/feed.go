package watch

import (
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Feed applies a watch's change rules to rounds polled elsewhere (a cluster
// watch followed from its results): the caller hands in each round's
// Results, rounds in order, and the Observers get RoundStart, Result and
// Change, RoundEnd, as Run gives them, with the same per-target state, the
// same Confirm, Flap and LossThreshold rules and the same event ids. Its
// methods are called from one goroutine.
type Feed struct {
	w    *watcher
	rd   Round
	open bool
}

// NewFeed is a Feed of the targets of set; of opts it uses Watch, Confirm,
// Flap, LossThreshold and Observers.
func NewFeed(set target.Set, opts Options) *Feed {
	if opts.Watch == "" {
		opts.Watch = NewID()
	}
	return &Feed{w: &watcher{opts: opts, set: set,
		track: newTracker(set.Len(), rules{confirm: opts.Confirm, flap: opts.Flap, loss: opts.LossThreshold})}}
}

// RoundStart starts round rd.N (rd.Targets 0: the set's size); a round
// still open is ended first, as it stood.
func (f *Feed) RoundStart(rd Round) {
	if f.open {
		f.RoundEnd(Round{End: time.Now()})
	}
	rd.Watch = f.w.opts.Watch
	if rd.Targets == 0 {
		rd.Targets = int(f.w.set.Len())
	}
	rd.Up, rd.Down, rd.Error, rd.Changes = 0, 0, 0, 0
	f.rd, f.open = rd, true
	f.w.stats.Rounds++
	if rd.Late {
		f.w.stats.Late++
	}
	for _, o := range f.w.opts.Observers {
		o.RoundStart(rd)
	}
}

// Open reports whether a round is started and not ended, and its number.
func (f *Feed) Open() (uint64, bool) { return f.rd.N, f.open }

// Result applies one Result of the open round (none open: dropped).
func (f *Feed) Result(r job.Result) {
	if f.open {
		f.w.result(&f.rd, &r)
	}
}

// RoundEnd ends the open round: of rd it takes End and Late (and Due and
// Start when set); the counts are those of the Results fed. It returns the
// round as the Observers got it.
func (f *Feed) RoundEnd(rd Round) Round {
	if !f.open {
		return Round{}
	}
	f.open = false
	r := f.rd
	r.End, r.Late = rd.End, r.Late || rd.Late
	if !rd.Due.IsZero() {
		r.Due = rd.Due
	}
	if !rd.Start.IsZero() {
		r.Start = rd.Start
	}
	f.w.stats.Changes += uint64(r.Changes)
	f.w.stats.Last = r
	for _, o := range f.w.opts.Observers {
		o.RoundEnd(r)
	}
	return r
}

// Stats is what the Feed's rounds did so far.
func (f *Feed) Stats() Stats { return f.w.stats }
