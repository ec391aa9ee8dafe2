package cluster

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// runTestWorkers starts workers named names on s, each -c c, until the test
// ends.
func runTestWorkers(t *testing.T, ctx context.Context, s *Server, c int, names ...string) {
	t.Helper()
	for _, name := range names {
		nc, err := Connect(ctx, s.URL, Credentials{}, name, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		wk, err := NewWorker(ctx, nc, WorkerOptions{Name: name, Concurrency: c, Logf: t.Logf})
		if err != nil {
			nc.Close()
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = wk.Run(wctx); close(done) }()
		t.Cleanup(func() { stop(); <-done; nc.Close() })
	}
}

func testClient(t *testing.T, ctx context.Context, s *Server) *Client {
	t.Helper()
	return connectClient(t, ctx, s.URL, Credentials{}, "submitter", t.Logf)
}

// TestWatchRoundsEndInTheCluster: a watch of Rounds 3 ends by itself:
// Follow returns once round 3 ended, no round past 3 is ever stored (the
// clock expires, and a tick past the last round starts nothing), watch ls
// says it ended, and the workers let it go.
func TestWatchRoundsEndInTheCluster(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	runTestWorkers(t, ctx, s, 50, "ra", "rb")
	c := testClient(t, ctx, s)
	const n, rounds = 60, 3
	rec, err := c.SubmitWatch(ctx, sleepSpec(n, 1), n, WatchOptions{Every: time.Second, Rounds: rounds})
	if err != nil {
		t.Fatal(err)
	}
	log := newWatchLog()
	opts := log.opts()
	// Returns by itself: no cancel.
	if err := c.Follow(ctx, rec.ID, opts); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	log.mu.Lock()
	ended := slices.Sorted(maps.Keys(log.ended))
	log.mu.Unlock()
	if !slices.Equal(ended, []uint64{1, 2, 3}) {
		t.Errorf("rounds ended %v, want [1 2 3]", ended)
	}
	// The clock expires (the server's own doing) after the tick past the
	// last round; no round past 3 is stored, however long one waits.
	testwait.For(t, "the clock to expire", func() bool {
		_, err := c.s.rounds.GetLastMsgForSubject(ctx, clockSubject(rec.ID))
		return err != nil
	})
	time.Sleep(3 * rec.Every) // three intervals: a tick would have come
	counts := storedWatchCounts(t, ctx, c, rec.ID)
	checkRounds(t, counts, 1, rounds, n)
	for k := range counts {
		if k[0] > rounds {
			t.Fatalf("round %d stored: the watch was to end after round %d", k[0], rounds)
		}
	}
	ws, err := c.Watches(ctx)
	if err != nil || len(ws) != 1 {
		t.Fatalf("Watches: %+v, %v", ws, err)
	}
	if w := ws[0]; !w.Ended || w.Stopped || w.LastRound != rounds || w.Complete != rounds {
		t.Errorf("watch ls: ended %v stopped %v last round %d complete %d: want ended, not stopped, 3 and 3", w.Ended, w.Stopped, w.LastRound, w.Complete)
	}
	// Followed again once it ended (attach): returns, without any round.
	fctx, fcancel := context.WithTimeout(ctx, 2*(2*WorkerTTL+rec.Every)+30*time.Second)
	defer fcancel()
	if err := c.Follow(fctx, rec.ID, FollowOptions{RoundEnd: func(watch.Round) {}}); err != nil {
		t.Errorf("Follow of an ended watch: %v, want it to return nil", err)
	}
}

// TestWatchSpreadSmearsEachWorkersShare: with Spread, a worker's share of a
// round starts over the spread, not at once; without it, at once. The
// starts of round 2 (round 1 may tick while a worker is still joining) are
// read from the stored results.
func TestWatchSpreadSmearsEachWorkersShare(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	runTestWorkers(t, ctx, s, 200, "sa", "sb")
	c := testClient(t, ctx, s)
	testwait.For(t, "two live workers", func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 2
	})
	const n = 100
	spans := map[time.Duration]time.Duration{}
	for _, spread := range []time.Duration{0, 2 * time.Second} {
		rec, err := c.SubmitWatch(ctx, sleepSpec(n, 1), n, WatchOptions{Every: 3 * time.Second, Rounds: 2, Spread: spread})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Spread != spread {
			t.Fatalf("record: spread %v, want %v", rec.Spread, spread)
		}
		var mu sync.Mutex
		first, last := map[string]time.Time{}, map[string]time.Time{}
		err = c.Follow(ctx, rec.ID, FollowOptions{FromStart: true, RoundEnd: func(watch.Round) {},
			Result: func(round uint64, r job.Result) {
				if round != 2 {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if f, ok := first[r.Worker]; !ok || r.Start.Before(f) {
					first[r.Worker] = r.Start
				}
				if r.Start.After(last[r.Worker]) {
					last[r.Worker] = r.Start
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		var widest time.Duration
		for w := range first {
			widest = max(widest, last[w].Sub(first[w]))
		}
		spans[spread] = widest
		t.Logf("spread %v: round 2's starts per worker over %v (%d workers)", spread, widest, len(first))
	}
	// Each chunk (here one target) starts at its place in the worker's
	// share over the spread: the last of 50 about 2s x 49/50 after the
	// first. Half of that is a bound load cannot break (it only delays
	// the later starts).
	if got := spans[2*time.Second]; got < time.Second {
		t.Errorf("spread over 2s: a worker's share started within %v, want at least 1s", got)
	}
	if got := spans[0]; got >= time.Second {
		t.Logf("no spread: a worker's share started over %v (a loaded machine)", got)
	}
}

// TestWatchClockTTL: a watch's clock (its schedule message) expires after
// its rounds, and never without: the stream's MaxAge would otherwise remove
// it, and so end a watch that was to run until stopped, after MaxRetention.
func TestWatchClockTTL(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := testClient(t, ctx, s)
	for _, tc := range []struct {
		rounds uint64
		want   string
	}{{0, "never"}, {4, (5*time.Minute + 30*time.Second).String()}} {
		rec, err := c.SubmitWatch(ctx, sleepSpec(10, 1), 10, WatchOptions{Every: time.Minute, Rounds: tc.rounds})
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.s.rounds.GetLastMsgForSubject(ctx, clockSubject(rec.ID))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get("Nats-TTL"); got != tc.want {
			t.Errorf("rounds %d: the clock's Nats-TTL %q, want %q", tc.rounds, got, tc.want)
		}
		if err := c.StopWatch(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SubmitWatch(ctx, sleepSpec(10, 1), 10, WatchOptions{Every: time.Hour, Rounds: MaxWatchRounds(time.Hour) + 1}); err == nil {
		t.Errorf("rounds past MaxWatchRounds: submitted, want refused")
	}
}

// TestDecodeWatchRecordRoundsAndSpread: a record from the bus is checked:
// its rounds within what the streams keep, its spread within the interval.
func TestDecodeWatchRecordRoundsAndSpread(t *testing.T) {
	t.Parallel()
	good := WatchRecord{ID: "w1", Spec: sleepSpec(10, 1), Every: 2 * time.Second, Total: 10, ChunkSize: 4, Chunks: 3, Retention: time.Hour,
		Rounds: 10, Spread: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*WatchRecord)
		want string
	}{
		{"good", func(*WatchRecord) {}, ""},
		{"rounds past the streams' age", func(r *WatchRecord) { r.Rounds = MaxWatchRounds(r.Every) + 1 }, "rounds"},
		{"rounds huge", func(r *WatchRecord) { r.Rounds = 1<<64 - 1 }, "rounds"},
		{"spread past the interval", func(r *WatchRecord) { r.Spread = 3 * time.Second }, "spread"},
		{"spread negative", func(r *WatchRecord) { r.Spread = -time.Second }, "spread"},
	} {
		r := good
		tc.edit(&r)
		b, _ := json.Marshal(r)
		_, err := decodeWatchRecord("w1", b)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
