package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

// FollowOptions say what Follow passes on; every callback is called from
// one goroutine.
type FollowOptions struct {
	// Result, when set, receives each stored Result once per round.
	Result func(round uint64, r job.Result)
	// Change, when set, receives each change event once.
	Change func(Event)
	// RoundEnd, when set, is called once every chunk of a round is done.
	RoundEnd func(watch.Round)
	// FromStart replays what the server holds; else only what is stored
	// from now on.
	FromStart bool
	// Dropped, when set, counts what was refused on the way.
	Dropped *Dropped
	// WholeRounds (without FromStart) passes on only the rounds ticked
	// after Follow started, whose every result it sees; First, when set,
	// is told the first such round's number before anything else.
	WholeRounds bool
	First       func(round uint64)
}

// followEventWait is how long a follower waits for a round's change
// events once its done marks are all in, before it ends the round without
// them (a chunk run twice may publish other events than those its mark
// counts, deduplicated away by their ids).
const followEventWait = 10 * time.Second

// Follow streams watch id's results, round ends and change events until
// ctx is done or the watch is stopped and its last round is done.
func (c *Client) Follow(ctx context.Context, id string, o FollowOptions) error {
	rec, err := c.LookupWatch(ctx, id)
	if err != nil {
		return err
	}
	// At most the default target limit: the record is read from the bus,
	// and a bit per target is kept per round.
	set, order, err := rec.sweepRecord().visit(target.DefaultMaxTargets)
	if err != nil {
		return err
	}
	f := &follower{rec: rec, o: o, chk: &checker{rec: rec.sweepRecord(), set: set, order: order},
		drop: o.Dropped, rounds: map[uint64]*roundSeen{}, events: map[string]bool{}}
	if f.drop == nil {
		f.drop = new(Dropped)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan jetstream.Msg, 256)
	deliver := jetstream.DeliverNewPolicy
	if o.FromStart {
		deliver = jetstream.DeliverAllPolicy
	}
	follow := func(st string, filter string) error {
		// A streamReader: replaced when it stalls after a server of the
		// cluster died, resuming where it was.
		f := newStreamReader(c.s.js, st, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{filter}, DeliverPolicy: deliver,
		}, jetstream.PullMaxMessages(256))
		if err := f.open(ctx); err != nil {
			return fmt.Errorf("watch %s: %w", id, err)
		}
		go func() {
			defer f.Stop()
			fails := 0
			for {
				m, err := f.Next(ctx)
				if err != nil {
					if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) {
						return
					}
					fails++
					backoff.Sleep(ctx, collectRetry.Delay(fails))
					continue
				}
				fails = 0
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
		return nil
	}
	// The followers end with ctx, cancelled on return.
	if o.Result != nil || o.RoundEnd != nil {
		if err := follow(WatchResultsStream, wresultsPrefix+id+".>"); err != nil {
			return err
		}
	}
	if o.Change != nil {
		if err := follow(EventsStream, eventSubject(id)); err != nil {
			return err
		}
	}
	// Rounds ticked before the consumers started may have stored results
	// they do not deliver: with WholeRounds, those are dropped.
	if o.WholeRounds && !o.FromStart {
		if m, err := c.s.rounds.GetLastMsgForSubject(ctx, tickSubject(id)); err == nil {
			if anchor, err := c.anchor(ctx, id); err == nil {
				f.skip = roundOf(anchor, rec.Every, tickTime(m.Header, m.Time, rec.Every))
			}
		}
	}
	if o.First != nil {
		o.First(f.skip + 1)
	}
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			f.expire()
			stopped, at, err := watchStopped(ctx, c.s, id)
			if err == nil && !stopped && rec.Rounds > 0 {
				// A watch of Rounds rounds whose clock expired ended as if
				// stopped at its last tick; followed after its last round
				// was complete, there is nothing to wait for.
				at, stopped = c.clockGone(ctx, id)
				if stopped && !f.pending() && c.roundComplete(ctx, rec, rec.Rounds) {
					return nil
				}
			}
			if f.finished() {
				return nil
			}
			if err != nil || !stopped || time.Since(at) < 2*WorkerTTL+rec.Every {
				continue
			}
			if !f.pending() || time.Since(at) > 2*(2*WorkerTTL+rec.Every) {
				return nil
			}
		case m := <-msgs:
			if m.Subject() == eventSubject(id) {
				f.event(m.Data())
			} else {
				f.stored(m.Subject(), m.Data())
			}
			if f.finished() {
				return nil
			}
		}
	}
}

// follower is what Follow keeps: the rounds open, the events seen.
type follower struct {
	rec    WatchRecord
	o      FollowOptions
	chk    *checker
	drop   *Dropped
	skip   uint64 // rounds up to skip are not passed on (WholeRounds)
	rounds map[uint64]*roundSeen
	events map[string]bool
}

// roundSeen is a round as a follower has seen it so far.
type roundSeen struct {
	seen     bitmap
	done     map[uint64]chunkDone
	ended    bool
	events   int       // distinct change events of the round received
	complete time.Time // every done mark in, the round's events not yet
}

// round is round n's record, made on first sight (at most 1,024 kept:
// the oldest is forgotten).
func (f *follower) round(n uint64) *roundSeen {
	r := f.rounds[n]
	if r == nil {
		if len(f.rounds) >= 1024 {
			oldest := n
			for k := range f.rounds {
				oldest = min(oldest, k)
			}
			delete(f.rounds, oldest)
		}
		r = &roundSeen{done: map[uint64]chunkDone{}}
		if f.o.Result != nil {
			r.seen = newBitmap(f.rec.Total)
		}
		f.rounds[n] = r
	}
	return r
}

// endRound ends round n once every chunk's done mark is in and, when
// changes are followed, the change events the marks count (each chunk's
// events are acknowledged before its mark is published, but they come
// through another consumer): a round's changes are all delivered before
// its end. force ends it without them (events that a second run of a chunk
// deduplicated away, or that expired).
func (f *follower) endRound(n uint64, r *roundSeen, force bool) {
	if r.ended || uint64(len(r.done)) < f.rec.Chunks {
		return
	}
	rd := roundOfDone(f.rec, n, r.done)
	if f.o.Change != nil && r.events < rd.Changes && !force {
		if r.complete.IsZero() {
			r.complete = time.Now()
		}
		return
	}
	r.ended = true
	if f.o.RoundEnd != nil {
		f.o.RoundEnd(rd)
	}
}

// expire ends the rounds whose events are overdue (followEventWait).
func (f *follower) expire() {
	for n, r := range f.rounds {
		if !r.ended && !r.complete.IsZero() && time.Since(r.complete) > followEventWait {
			f.endRound(n, r, true)
		}
	}
}

// finished: the watch's last round (Rounds) has ended here, and every
// round before it that was seen.
func (f *follower) finished() bool {
	if f.rec.Rounds == 0 {
		return false
	}
	r := f.rounds[f.rec.Rounds]
	return r != nil && r.ended && !f.pending()
}

// pending: a round seen has not ended.
func (f *follower) pending() bool {
	for _, r := range f.rounds {
		if !r.ended {
			return true
		}
	}
	return false
}

// event passes a change event on, once.
func (f *follower) event(data []byte) {
	var ev Event
	if json.Unmarshal(data, &ev) != nil || ev.Watch != f.rec.ID || ev.ID == "" {
		f.drop.Malformed.Add(1)
		return
	}
	if f.events[ev.ID] {
		return
	}
	if len(f.events) >= 1<<20 {
		clear(f.events)
	}
	f.events[ev.ID] = true
	f.o.Change(ev)
	if (f.o.Result != nil || f.o.RoundEnd != nil) && ev.Round > f.skip {
		r := f.round(ev.Round)
		r.events++
		f.endRound(ev.Round, r, false)
	}
}

// stored takes a message of the watch results stream: a batch of a
// chunk's results (each index passed on once per round) or its done mark.
func (f *follower) stored(subject string, data []byte) {
	n, ch, done, ok := parseWResult(f.rec.ID, subject)
	if !ok || ch >= f.rec.Chunks || n == 0 {
		f.drop.Malformed.Add(1)
		return
	}
	if n <= f.skip {
		return
	}
	r := f.round(n)
	if done {
		var d chunkDone
		if json.Unmarshal(data, &d) != nil {
			f.drop.Malformed.Add(1)
			return
		}
		r.done[ch] = d
		f.endRound(n, r, false)
		return
	}
	if f.o.Result == nil {
		return
	}
	rs, err := decodeBatch(data)
	if err != nil {
		f.drop.Malformed.Add(1)
		return
	}
	for i := range rs {
		k, err := f.chk.check(ch, &rs[i])
		if err != nil {
			if errors.Is(err, errForged) {
				f.drop.Forged.Add(1)
			} else {
				f.drop.Invalid.Add(1)
			}
			continue
		}
		if r.seen.get(k) {
			continue
		}
		r.seen.set(k)
		f.o.Result(n, rs[i])
	}
}

// roundOfDone is round n as its done marks tell it.
func roundOfDone(rec WatchRecord, n uint64, done map[uint64]chunkDone) watch.Round {
	rd := watch.Round{Watch: rec.ID, N: n, Targets: int(rec.Total)}
	for _, d := range done {
		rd.Up += d.Up
		rd.Down += d.Down
		rd.Error += d.Error
		rd.Changes += max(d.Changes, 0)
		if rd.Due.IsZero() || !d.Due.IsZero() && d.Due.Before(rd.Due) {
			rd.Due = d.Due
		}
		if rd.Start.IsZero() || d.Start.Before(rd.Start) {
			rd.Start = d.Start
		}
		if d.End.After(rd.End) {
			rd.End = d.End
		}
	}
	// Late: it ended after the next round was due (as watch ls counts).
	rd.Late = !rd.Due.IsZero() && rd.End.After(rd.Due.Add(rec.Every))
	return rd
}
