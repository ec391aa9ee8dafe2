package watch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Options of a watch.
type Options struct {
	// Watch is the watch's id, in every Round and Change; empty picks a
	// random one (NewID).
	Watch string
	// FirstRound is the number of the first round: 1, or the next of a
	// watch resumed from a store.
	FirstRound uint64
	// Every is the interval between the rounds' due times (> 0).
	Every time.Duration
	// Rounds stops the watch after that many rounds; 0 runs until ctx is
	// done or Stop is closed.
	Rounds uint64
	// Spread smears a round's target starts over the interval, at the
	// engine rate of the round's targets over Every less TargetTime (at
	// least a tenth of Every), so that a round is not one burst. A rate in
	// Engine lower than that wins.
	Spread bool
	// TargetTime is the longest one target may take (attempts, timeouts,
	// ping's --count x --interval): what Spread leaves at the end of the
	// interval. 0 takes Engine.Timeout x (1 + Engine.Retries).
	TargetTime time.Duration
	// Engine bounds each round (concurrency, rate, timeout, retries).
	// Engine.Stop is the watch's: use Stop.
	Engine engine.Options
	// Order is the visiting order of a round of n targets; nil: canonical.
	Order func(n uint64) (target.Order, error)
	// Confirm and Flap are the change rules (zero: 1/1 and the default
	// flap rule). LossThreshold, a fraction (0.2 = 20%), makes an up
	// target whose loss is above it lossy: crossing it is a Loss change;
	// 0 reports no loss changes.
	Confirm       Confirm
	Flap          Flap
	LossThreshold float64
	// Observers consume the watch, in this order, from one goroutine.
	Observers []Observer
	// Reload re-reads the targets: a non-nil Set replaces them (targets
	// are matched by Key; those that left are reported once as Removed),
	// nil keeps them. An error keeps them too, and goes to Warn. It is
	// called before every round but the first with ReloadEach, and on
	// ReloadNow.
	Reload     func() (target.Set, error)
	ReloadEach bool
	// ReloadNow: a receive reloads at once and starts a round then, early
	// or right after the running one (SIGHUP). Reload must be set.
	ReloadNow <-chan struct{}
	// Stop, when closed, ends the watch gently: no target starts after
	// it, the round's targets in flight finish and are reported, RoundEnd
	// is called, and Run returns nil (SIGINT). ctx ending instead cancels
	// the targets in flight, as it does a sweep.
	Stop <-chan struct{}
	// Warn receives what the watch goes on despite (a list that could not
	// be reloaded). nil drops it.
	Warn func(error)
}

// Stats is what a finished watch did.
type Stats struct {
	Rounds  uint64 // rounds run (the last one may have been cut short)
	Late    uint64 // of which started late
	Changes uint64
	Last    Round // the last round run
	Stopped bool  // Stop ended it
}

// NewID is a random watch id: "w" and 8 hex digits.
func NewID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "w" + hex.EncodeToString(b[:])
}

// Key is how a target is known across reloads and in event ids: its spec
// (user@host:port), which names it whatever its index.
func Key(t target.Target) string { return t.Spec() }

// EventID is the stable id of the change of target key in a round of watch.
func EventID(watch string, round uint64, key string) string {
	return watch + "/" + strconv.FormatUint(round, 10) + "/" + key
}

// ErrEvery is returned for an Every that is not positive.
var ErrEvery = errors.New("watch: Every must be more than 0")

// Run polls set with j every opts.Every until ctx is done, opts.Stop is
// closed or opts.Rounds have run. Rounds never overlap: a round due while
// the previous one runs starts when it ends, and is Late. j is used for
// every round; when it is an io.Closer it is closed when Run returns.
//
// It returns nil when the rounds ran or Stop ended them, ctx.Err() when ctx
// did, and an engine error (a batch job that failed) as soon as a round
// has one.
func Run(ctx context.Context, set target.Set, j job.Job, opts Options) (Stats, error) {
	if c, ok := j.(io.Closer); ok {
		defer c.Close()
	}
	if opts.Every <= 0 {
		return Stats{}, ErrEvery
	}
	if opts.Watch == "" {
		opts.Watch = NewID()
	}
	if opts.FirstRound == 0 {
		opts.FirstRound = 1
	}
	w := &watcher{opts: opts, set: set, job: j, bufs: engine.NewBuffers(),
		track: newTracker(set.Len(), rules{confirm: opts.Confirm, flap: opts.Flap, loss: opts.LossThreshold})}
	err := w.loop(ctx)
	return w.stats, err
}

// watcher is one Run.
type watcher struct {
	opts  Options
	set   target.Set
	keys  []string // the targets' keys by index, kept only when Reload is set
	job   job.Job
	track *tracker
	stats Stats
	bufs  *engine.Buffers // the engine's, reused round after round
}

func (w *watcher) loop(ctx context.Context) error {
	stopC := w.opts.Stop
	if w.opts.Reload != nil {
		w.keys = keysOf(w.set)
	}
	due := time.Now()
	var prevEnd time.Time
	reload := false // SIGHUP seen: reload before the next round, start it at once
	for n := uint64(0); w.opts.Rounds == 0 || n < w.opts.Rounds; n++ {
		now := time.Now()
		late := !prevEnd.IsZero() && prevEnd.After(due)
		if !late && !reload && now.Before(due) {
			t := time.NewTimer(due.Sub(now))
			select {
			case <-t.C:
			case <-w.opts.ReloadNow:
				reload = true
			case <-stopC:
				t.Stop()
				w.stats.Stopped = true
				return nil
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			t.Stop()
		}
		start := time.Now()
		if reload {
			due = start // an early round, on the user's word
		}
		changes, err := w.round(ctx, w.opts.FirstRound+n, due, start, late, reload || (n > 0 && w.opts.ReloadEach))
		reload = false
		w.stats.Changes += uint64(changes)
		if err != nil {
			return err
		}
		if w.stats.Stopped {
			return nil
		}
		prevEnd = time.Now()
		// A round that started late re-anchors the clock: the next is due
		// an interval after it started, not at once to catch up.
		if late || start.Sub(due) > w.opts.Every {
			due = start
		}
		due = due.Add(w.opts.Every)
		select {
		case <-w.opts.ReloadNow:
			reload = true // came while the round ran
		default:
		}
	}
	return nil
}

// round runs round number n and returns the changes it reported.
func (w *watcher) round(ctx context.Context, n uint64, due, start time.Time, late, reload bool) (int, error) {
	rd := Round{Watch: w.opts.Watch, N: n, Due: due, Start: start, Late: late}
	var removed []left
	var oldKeys []string
	var oldSet target.Set
	if reload && w.opts.Reload != nil {
		set, err := w.opts.Reload()
		switch {
		case err != nil:
			w.warn(fmt.Errorf("round %d: %w; polling the previous list", n, err))
		case set != nil:
			keys := keysOf(set)
			oldKeys, oldSet = w.keys, w.set
			removed = w.track.remap(w.keys, keys)
			w.set, w.keys = set, keys
		}
	}
	rd.Targets = int(w.set.Len())
	w.stats.Rounds++
	if late {
		w.stats.Late++
	}
	for _, o := range w.opts.Observers {
		o.RoundStart(rd)
	}
	for _, l := range removed {
		t := oldSet.At(l.index)
		r := job.For(t, w.job.Kind())
		r.Index = l.index
		ps, pc := w.track.codes.decode(l.rec.state)
		w.change(&rd, Change{
			ID: EventID(w.opts.Watch, n, oldKeys[l.index]), Watch: w.opts.Watch, Round: n,
			Kind: Removed, Result: r, PrevStatus: ps, PrevClass: pc, Since: sinceTime(l.rec.since),
		})
	}

	order, err := w.order()
	if err != nil {
		return rd.Changes, err
	}
	eopts := w.opts.Engine
	eopts.Stop = w.opts.Stop
	if eopts.Buffers == nil {
		// Rounds reuse the engine's queues: a round's garbage stays small,
		// so the heap's peak does not drift up with the rounds.
		eopts.Buffers = w.bufs
	}
	if w.opts.Spread {
		eopts.Rate = w.spreadRate(eopts.Rate, order.Len())
		// Starts in small bursts, not a sleep per target: the CPU of a
		// spread round stays that of an unspread one.
		eopts.PaceSlack = spreadSlack
	}
	err = engine.Run(ctx, w.set, order, w.job, eopts, nil, func(r job.Result) {
		w.result(&rd, &r)
	})
	rd.End = time.Now()
	w.stats.Stopped = w.stopped()
	w.stats.Last = rd
	for _, o := range w.opts.Observers {
		o.RoundEnd(rd)
	}
	return rd.Changes, err
}

// result applies one Result of the round: observers, then the change.
func (w *watcher) result(rd *Round, r *job.Result) {
	switch r.Status {
	case job.Up:
		rd.Up++
	case job.Down:
		rd.Down++
	default:
		rd.Error++
	}
	for _, o := range w.opts.Observers {
		o.Result(rd.N, *r)
	}
	if r.Index >= uint64(len(w.track.recs)) {
		return // not one of ours: a job that made up an index
	}
	now := r.End
	if now.IsZero() {
		now = time.Now()
	}
	ev, ok := w.track.observe(r.Index, r, now)
	if !ok {
		return
	}
	var ps job.Status
	var pc job.Class
	if ev.prev != codeNone {
		ps, pc = w.track.codes.decode(ev.prev)
	}
	key := w.key(r.Index)
	w.change(rd, Change{
		ID: EventID(w.opts.Watch, rd.N, key), Watch: w.opts.Watch, Round: rd.N, Kind: ev.kind,
		Result: *r, PrevStatus: ps, PrevClass: pc, Since: sinceTime(ev.since),
	})
}

func (w *watcher) change(rd *Round, c Change) {
	rd.Changes++
	for _, o := range w.opts.Observers {
		o.Change(c)
	}
}

func (w *watcher) key(i uint64) string {
	if w.keys != nil {
		return w.keys[i]
	}
	return Key(w.set.At(i))
}

func (w *watcher) warn(err error) {
	if w.opts.Warn != nil {
		w.opts.Warn(err)
	}
}

func (w *watcher) order() (target.Order, error) {
	n := w.set.Len()
	if w.opts.Order == nil {
		return target.Identity(n), nil
	}
	return w.opts.Order(n)
}

// stopped reports whether opts.Stop is closed.
func (w *watcher) stopped() bool {
	select {
	case <-w.opts.Stop:
		return true
	default:
		return false
	}
}

// spreadSlack is how early a spread round's start may come (engine
// Options.PaceSlack): 10 ms of an interval of seconds.
const spreadSlack = 10 * time.Millisecond

// spreadRate is the engine rate that starts n targets over the interval,
// less TargetTime (at least a tenth of it); a lower rate given wins.
func (w *watcher) spreadRate(given float64, n uint64) float64 {
	if n < 2 {
		return given
	}
	tt := w.opts.TargetTime
	if tt <= 0 {
		tt = w.opts.Engine.Timeout * time.Duration(1+max(w.opts.Engine.Retries, 0))
	}
	window := max(w.opts.Every-tt, w.opts.Every/10)
	r := float64(n) / window.Seconds()
	if given > 0 && given < r {
		return given
	}
	return r
}

func keysOf(set target.Set) []string {
	keys := make([]string, set.Len())
	for i := range keys {
		keys[i] = Key(set.At(uint64(i)))
	}
	return keys
}

func sinceTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
