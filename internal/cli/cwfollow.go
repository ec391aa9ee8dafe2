package cli

// A cluster watch followed with the local watch's rules (--confirm, --flap,
// --alive/--dead, --db, --metrics): the follower reads every result of
// every round (not only the changes the workers publish) and runs them
// through a watch.Feed, which applies the rules of package watch, as a
// local watch does, to the printer, the store's history and the metrics.
//
// Results of a round arrive chunk by chunk, and a round's last chunks may
// come after the next round's first: the follower feeds the rounds in
// order, streaming the oldest open one and holding the results of later
// ones until it ends (all its chunks done). A round that never ends (its
// chunks given up, or never ticked) is let go once a later round ended and
// it has been open longer than a round can stay open on the workers.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// roundSequencer feeds a cluster watch's rounds to a watch.Feed in order.
type roundSequencer struct {
	feed     *watch.Feed
	keepOpen time.Duration // how long a round may stay open on the workers
	head     uint64        // the next round to feed; 0: not known yet
	opened   time.Time     // when head was started in the feed (zero: not yet)
	later    map[uint64]*heldRound
	held     int // results held in later
	maxHeld  int
}

// heldRound is a round after head: its results so far, and its end once
// every chunk is done.
type heldRound struct {
	results []job.Result
	end     *watch.Round
}

func newRoundSequencer(feed *watch.Feed, rec cluster.WatchRecord) *roundSequencer {
	return &roundSequencer{
		feed: feed, keepOpen: 2*cluster.WorkerTTL + 3*rec.Every, later: map[uint64]*heldRound{},
		// Two rounds' worth, at least 64k: a bound on memory when a round
		// stalls, well above what a round overlapping the next holds.
		maxHeld: max(2*int(min(rec.Total, 1<<24)), 1<<16),
	}
}

// first is the first round whose every result will be seen.
func (s *roundSequencer) first(n uint64) { s.head = n }

func (s *roundSequencer) start() {
	if s.opened.IsZero() {
		now := time.Now()
		s.feed.RoundStart(watch.Round{N: s.head, Due: now, Start: now})
		s.opened = now
	}
}

func (s *roundSequencer) result(n uint64, r job.Result) {
	switch {
	case s.head == 0 || n < s.head:
		return // before the first whole round, or of a round let go
	case n == s.head:
		s.start()
		s.feed.Result(r)
		return
	}
	h := s.later[n]
	if h == nil {
		h = &heldRound{}
		s.later[n] = h
	}
	h.results = append(h.results, r)
	s.held++
	if s.held > s.maxHeld {
		s.letGo(true)
	}
}

func (s *roundSequencer) roundEnd(rd watch.Round) {
	switch {
	case s.head == 0 || rd.N < s.head:
		return
	case rd.N == s.head:
		s.start()
		s.end(rd)
		s.drain()
		return
	}
	h := s.later[rd.N]
	if h == nil {
		h = &heldRound{}
		s.later[rd.N] = h
	}
	h.end = &rd
	s.letGo(false)
}

// end ends head in the feed and moves to the next round.
func (s *roundSequencer) end(rd watch.Round) {
	s.feed.RoundEnd(rd)
	s.head++
	s.opened = time.Time{}
}

// drain feeds the held rounds that follow head, up to one not ended.
func (s *roundSequencer) drain() {
	for {
		h := s.later[s.head]
		if h == nil {
			return
		}
		delete(s.later, s.head)
		s.held -= len(h.results)
		s.start()
		for _, r := range h.results {
			s.feed.Result(r)
		}
		if h.end == nil {
			return
		}
		s.end(*h.end)
	}
}

// letGo gives up on head when a later round has ended and head is not
// coming: nothing of it seen (never ticked, or no worker polled it), or open
// longer than the workers keep a round open; or at once with force (too
// much held).
func (s *roundSequencer) letGo(force bool) {
	for s.head != 0 {
		ended := false
		for n, h := range s.later {
			ended = ended || n > s.head && h.end != nil
		}
		if !force && !ended {
			return
		}
		switch {
		case s.opened.IsZero() && s.later[s.head] == nil:
			s.head++ // nothing of it was seen: not a round to report
		case force || time.Since(s.opened) > s.keepOpen:
			s.start()
			s.end(watch.Round{End: time.Now()})
		default:
			return
		}
		force = false
		s.drain()
	}
}

// followFeed follows cluster watch rec, feeding its rounds to feed, until
// ctx is done or the watch is stopped.
func followFeed(ctx context.Context, client *cluster.Client, rec cluster.WatchRecord, feed *watch.Feed, stderr io.Writer) error {
	seq := newRoundSequencer(feed, rec)
	var drop cluster.Dropped
	err := client.Follow(ctx, rec.ID, cluster.FollowOptions{
		WholeRounds: true, First: seq.first, Result: seq.result, RoundEnd: seq.roundEnd, Dropped: &drop,
	})
	if n, m := drop.Results(), drop.Malformed.Load(); n > 0 || m > 0 {
		fmt.Fprintf(stderr, "fanout: watch %s: %d forged/invalid results dropped, %d malformed messages skipped\n", rec.ID, n, m)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
