package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchStatus is one watch as `fanout watch ls` shows it.
type WatchStatus struct {
	WatchRecord
	SHA256    string    `json:"sha256"`
	Stopped   bool      `json:"stopped"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// Ended: a watch of Rounds rounds is past its last one.
	Ended     bool      `json:"ended,omitempty"`
	LastRound uint64    `json:"last_round"`  // the newest round ticked
	LastTick  time.Time `json:"last_tick"`   // when it was due
	Complete  uint64    `json:"complete"`    // the newest round whose every chunk is done
	Late      int       `json:"late_rounds"` // of the last lsRounds complete, those that ended after the next was due
	Up        int       `json:"up"`          // in round Complete
	Down      int       `json:"down"`        // down or error, in round Complete
	Owners    []string  `json:"owners"`      // workers that polled round Complete
}

// Watches lists the watches on the server, with their last rounds.
func (c *Client) Watches(ctx context.Context) ([]WatchStatus, error) {
	kl, err := c.s.watches.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []WatchStatus
	for id := range kl.Keys() {
		if strings.Contains(id, "/") {
			continue
		}
		rec, err := c.LookupWatch(ctx, id)
		if err != nil {
			continue
		}
		ws := WatchStatus{WatchRecord: rec, SHA256: rec.Digest}
		ws.Stopped, ws.StoppedAt, _ = watchStopped(ctx, c.s, id)
		if m, err := c.s.rounds.GetLastMsgForSubject(ctx, tickSubject(id)); err == nil {
			if anchor, err := c.anchor(ctx, id); err == nil {
				ws.LastTick = tickTime(m.Header, m.Time, rec.Every)
				ws.LastRound = roundOf(anchor, rec.Every, ws.LastTick)
			}
		}
		c.roundsDone(ctx, &ws)
		if rec.Rounds > 0 {
			// The tick after the last round starts nothing; once the clock
			// expired, the anchor is gone with it.
			_, gone := c.clockGone(ctx, id)
			ws.Ended = gone || ws.LastRound > rec.Rounds || ws.Complete >= rec.Rounds
			ws.LastRound = min(ws.LastRound, rec.Rounds)
			if ws.Ended && ws.LastRound == 0 {
				ws.LastRound = ws.Complete
			}
		}
		out = append(out, ws)
	}
	return out, nil
}

// clockGone reports whether watch id's clock message is gone (a watch of
// Rounds rounds whose clock expired), and then when its last tick fired
// (the zero time when none is kept).
func (c *Client) clockGone(ctx context.Context, id string) (time.Time, bool) {
	_, err := c.s.rounds.GetLastMsgForSubject(ctx, clockSubject(id))
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, false
	}
	if m, err := c.s.rounds.GetLastMsgForSubject(ctx, tickSubject(id)); err == nil {
		return m.Time, true
	}
	return time.Time{}, true
}

// roundComplete reports whether every chunk of round n of rec has its done
// mark stored.
func (c *Client) roundComplete(ctx context.Context, rec WatchRecord, n uint64) bool {
	info, err := c.s.wresults.Info(ctx, jetstream.WithSubjectFilter(fmt.Sprintf("%s%s.%d.*.done", wresultsPrefix, rec.ID, n)))
	return err == nil && uint64(len(info.State.Subjects)) >= rec.Chunks
}

// anchor is the time of watch id's clock message, to the second.
func (c *Client) anchor(ctx context.Context, id string) (time.Time, error) {
	return clockAnchor(ctx, c.s, id)
}

func clockAnchor(ctx context.Context, s *setup, id string) (time.Time, error) {
	m, err := s.rounds.GetLastMsgForSubject(ctx, clockSubject(id))
	if err != nil {
		return time.Time{}, err
	}
	if m.Header.Get("Nats-Schedule") == "" {
		// Stopped: the clock message is the stop mark; the first one is
		// gone (MaxMsgsPerSubject keeps the last few).
		first, err := s.rounds.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(clockSubject(id)))
		if err != nil {
			return time.Time{}, err
		}
		m = first
	}
	return m.Time.Round(time.Second), nil
}

// roundsDone fills what the done marks of ws's rounds say: the newest
// complete round, its counts and owners, and how many rounds were late.
func (c *Client) roundsDone(ctx context.Context, ws *WatchStatus) {
	info, err := c.s.wresults.Info(ctx, jetstream.WithSubjectFilter(wresultsPrefix+ws.ID+".*.*.done"))
	if err != nil {
		return
	}
	perRound := map[uint64]uint64{}
	for subj := range info.State.Subjects {
		if r, _, done, ok := parseWResult(ws.ID, subj); ok && done {
			perRound[r]++
		}
	}
	for r, n := range perRound {
		if n >= ws.Chunks && r > ws.Complete {
			ws.Complete = r
		}
	}
	late := map[uint64]bool{}
	owners := map[string]bool{}
	// The done marks of the last few complete rounds (each is a read).
	var complete []uint64
	for r, n := range perRound {
		if n >= ws.Chunks {
			complete = append(complete, r)
		}
	}
	slices.Sort(complete)
	complete = complete[max(0, len(complete)-lsRounds):]
	for _, r := range complete {
		for ch := uint64(0); ch < ws.Chunks; ch++ {
			m, err := c.s.wresults.GetLastMsgForSubject(ctx, wdoneSubject(ws.ID, r, ch))
			if err != nil {
				continue
			}
			var d chunkDone
			if json.Unmarshal(m.Data, &d) != nil {
				continue
			}
			if !d.Due.IsZero() && d.End.After(d.Due.Add(ws.Every)) {
				late[r] = true
			}
			if r == ws.Complete {
				ws.Up += d.Up
				ws.Down += d.Down + d.Error
				owners[d.Worker] = true
			}
		}
	}
	ws.Late = len(late)
	for o := range owners {
		ws.Owners = append(ws.Owners, o)
	}
	slices.Sort(ws.Owners)
}
