package watch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scripted is a job whose Result for a target depends on the round the
// watch is in (its observer sets round at RoundStart). Nothing is sent.
type scripted struct {
	round  atomic.Uint64
	result func(round uint64, t target.Target) job.Result
}

func (*scripted) Kind() string { return "script" }
func (s *scripted) Run(ctx context.Context, t target.Target) job.Result {
	return s.result(s.round.Load(), t)
}

func (s *scripted) RoundStart(r Round)        { s.round.Store(r.N) }
func (s *scripted) Result(uint64, job.Result) {}
func (s *scripted) Change(Change)             {}
func (s *scripted) RoundEnd(Round)            {}

// recorder is an Observer keeping everything, safe to read while it runs.
type recorder struct {
	mu      sync.Mutex
	rounds  []Round
	changes []Change
	results map[uint64][]job.Result
	inRound bool
	errs    []string
}

func (r *recorder) RoundStart(rd Round) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inRound {
		r.errs = append(r.errs, fmt.Sprintf("round %d started inside another", rd.N))
	}
	r.inRound = true
}

func (r *recorder) Result(round uint64, res job.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.results == nil {
		r.results = map[uint64][]job.Result{}
	}
	r.results[round] = append(r.results[round], res)
}

func (r *recorder) Change(c Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *recorder) RoundEnd(rd Round) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inRound = false
	r.rounds = append(r.rounds, rd)
}

func (r *recorder) roundCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rounds)
}

// events lists the changes as "round:kind:host".
func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.changes {
		out = append(out, fmt.Sprintf("%d:%s:%s", c.Round, c.Kind, c.Result.Host))
	}
	return out
}

func parse(t *testing.T, specs ...string) target.Set {
	t.Helper()
	s, err := target.Parse(specs, target.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func result(t target.Target, st job.Status, c job.Class) job.Result {
	r := job.For(t, "script")
	r.Status, r.Class = st, c
	return r
}

func upOrDown(t target.Target, up bool) job.Result {
	if up {
		return result(t, job.Up, "")
	}
	return result(t, job.Down, job.ClassTimeout)
}

// watchN runs rounds rounds of set with the scripted job, back to back.
func watchN(t *testing.T, set target.Set, rounds uint64, opts Options, f func(round uint64, t target.Target) job.Result) (*recorder, Stats) {
	t.Helper()
	j := &scripted{result: f}
	rec := &recorder{}
	opts.Every = time.Nanosecond
	opts.Rounds = rounds
	opts.Watch = "w1"
	opts.Observers = append([]Observer{j}, append(opts.Observers, rec)...)
	var st Stats
	var err error
	testwait.Returns(t, "the watch", func() { st, err = Run(context.Background(), set, j, opts) })
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.errs) > 0 {
		t.Fatal(rec.errs)
	}
	return rec, st
}

// The per-target record stays small: a /16 is a megabyte of state.
func TestRecordSize(t *testing.T) {
	if n := unsafe.Sizeof(rec{}); n != 16 {
		t.Fatalf("rec is %d bytes, want 16", n)
	}
}

// Down, up and class changes, once each, with the previous state and since;
// a target down from its first round is news, one up is not.
func TestChanges(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-4")
	rec, st := watchN(t, set, 5, Options{}, func(round uint64, tg target.Target) job.Result {
		switch tg.Addr.As4()[3] {
		case 1: // up, down in round 3, back up in 4
			return upOrDown(tg, round != 3)
		case 2: // down from the start
			return upOrDown(tg, false)
		case 3: // refused, then timeout from round 2
			if round == 1 {
				return result(tg, job.Down, job.ClassRefused)
			}
			return result(tg, job.Down, job.ClassTimeout)
		}
		return upOrDown(tg, true)
	})
	want := []string{"1:down:", "1:down:", "2:class:", "3:down:", "4:up:"}
	got := rec.events()
	for i := range got {
		got[i] = got[i][:len(got[i])-len("127.0.0.x")]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", rec.events(), want)
	}
	c := rec.changes[4] // 127.0.0.1 back up
	if c.Result.Host != "127.0.0.1" || c.PrevStatus != job.Down || c.PrevClass != job.ClassTimeout || c.Since.IsZero() ||
		c.ID != "w1/4/127.0.0.1" || c.Watch != "w1" {
		t.Fatalf("up change %+v", c)
	}
	if d := rec.changes[3]; d.PrevStatus != job.Up || !d.Since.Before(c.Since) {
		t.Fatalf("down change %+v then up since %v", d, c.Since)
	}
	if st.Rounds != 5 || st.Changes != 5 || len(rec.rounds) != 5 || rec.rounds[2].Changes != 1 || rec.rounds[2].Down != 3 || rec.rounds[2].Up != 1 {
		t.Fatalf("stats %+v rounds %+v", st, rec.rounds)
	}
}

// A target toggled every round for 8 rounds, then steady: with --confirm
// 1/1 and the default flap rule (more than 4 changes in 10 rounds) its
// first four changes are reported, then one flapping event, nothing while
// it flaps, and one settled event once it held for 10 rounds.
func TestFlapping(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-2")
	rec, _ := watchN(t, set, 24, Options{}, func(round uint64, tg target.Target) job.Result {
		if tg.Addr.As4()[3] == 2 {
			return upOrDown(tg, true)
		}
		return upOrDown(tg, round > 8 || round%2 == 1) // 1 up, 2 down, ... 8 down, then up
	})
	want := []string{
		"2:down:127.0.0.1", "3:up:127.0.0.1", "4:down:127.0.0.1", "5:up:127.0.0.1",
		"6:flapping:127.0.0.1",
		// Round 9 (up after round 8 down) is the last change; the window
		// of 10 rounds is clear of changes from round 19.
		"19:settled:127.0.0.1",
	}
	if got := rec.events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	f, s := rec.changes[4], rec.changes[5]
	if f.PrevStatus != job.Up || f.Result.Status != job.Down || s.PrevStatus != job.Up || s.Result.Status != job.Up {
		t.Fatalf("flapping %+v settled %+v", f, s)
	}

	// Flap detection off: every change is reported.
	rec, _ = watchN(t, set, 10, Options{Flap: Flap{K: -1}}, func(round uint64, tg target.Target) job.Result {
		return upOrDown(tg, tg.Addr.As4()[3] == 2 || round%2 == 1)
	})
	if n := len(rec.changes); n != 9 {
		t.Fatalf("flap off: %d events, want 9: %v", n, rec.events())
	}
}

// --confirm 2/3: a one-round blip is not reported; a state held in two of
// the last three rounds is, at its second round.
func TestConfirm(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-2")
	downIn := map[uint64]bool{3: true, 6: true, 7: true, 10: true, 12: true}
	rec, _ := watchN(t, set, 14, Options{Confirm: Confirm{2, 3}, Flap: Flap{K: -1}}, func(round uint64, tg target.Target) job.Result {
		if tg.Addr.As4()[3] == 2 {
			return upOrDown(tg, true)
		}
		return upOrDown(tg, !downIn[round])
	})
	// 3: blip, not reported; 6-7 down: reported at 7; 8 up, 9 up: at 9;
	// 10 and 12 down: two of 10, 11, 12: at 12; 13 and 14 up: at 14.
	want := []string{"7:down:127.0.0.1", "9:up:127.0.0.1", "12:down:127.0.0.1", "14:up:127.0.0.1"}
	if got := rec.events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if _, err := ParseConfirm("2/3"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "0/1", "3/2", "1/9", "a/b", "1", "-1/2", "1/0"} {
		if _, err := ParseConfirm(bad); err == nil {
			t.Errorf("ParseConfirm(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "0/4", "4/4", "1/17", "x", "5/4"} {
		if _, err := ParseFlap(bad); err == nil {
			t.Errorf("ParseFlap(%q) accepted", bad)
		}
	}
}

// exec and ssh: a changed output (stdout or exit code) with the same status
// is an output change; ping --count: loss crossing the threshold is a loss
// change, both ways.
func TestOutputAndLoss(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-2")
	rec, _ := watchN(t, set, 5, Options{LossThreshold: 0.2}, func(round uint64, tg target.Target) job.Result {
		r := result(tg, job.Up, "")
		if tg.Addr.As4()[3] == 1 {
			out := "v1\n"
			if round >= 3 {
				out = "v2\n"
			}
			exit := 0
			r.Stdout, r.ExitCode = []byte(out), &exit
			return r
		}
		r.Sent, r.Recv = 5, 5
		if round == 2 || round == 3 {
			r.Recv = 3 // 40% loss
		}
		return r
	})
	want := []string{"2:loss:127.0.0.2", "3:output:127.0.0.1", "4:loss:127.0.0.2"}
	if got := rec.events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A job slower than the interval makes every round after the first late,
// counted, and never two rounds at once: every attempt starts and ends
// within the round it belongs to (recorded, not timed), and no attempt is
// in flight when a round starts or ends.
func TestLateRoundsNeverOverlap(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-20")
	var inflight atomic.Int64
	var mu sync.Mutex
	var bad []string
	var cur atomic.Uint64
	j := &scripted{}
	j.result = func(round uint64, tg target.Target) job.Result {
		inflight.Add(1)
		defer inflight.Add(-1)
		time.Sleep(20 * time.Millisecond) // longer than Every: the next round is due meanwhile
		if now := cur.Load(); now != round {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("attempt of round %d ended in round %d", round, now))
			mu.Unlock()
		}
		return upOrDown(tg, true)
	}
	check := &funcObserver{
		start: func(r Round) {
			if n := inflight.Load(); n != 0 {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("round %d started with %d attempts in flight", r.N, n))
				mu.Unlock()
			}
			cur.Store(r.N)
		},
		end: func(r Round) {
			if n := inflight.Load(); n != 0 {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("round %d ended with %d attempts in flight", r.N, n))
				mu.Unlock()
			}
		},
	}
	rec := &recorder{}
	var st Stats
	var err error
	testwait.Returns(t, "the watch", func() {
		st, err = Run(context.Background(), set, j, Options{
			Every: time.Millisecond, Rounds: 5, Spread: true, Engine: engine.Options{Concurrency: 4},
			Observers: []Observer{j, check, rec},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	if st.Rounds != 5 || st.Late != 4 {
		t.Fatalf("stats %+v: want 5 rounds, 4 late", st)
	}
	for i, r := range rec.rounds {
		if r.Late != (i > 0) || r.N != uint64(i+1) || len(rec.results[r.N]) != 20 {
			t.Fatalf("round %+v (%d results)", r, len(rec.results[r.N]))
		}
		if i > 0 && r.Start.Before(rec.rounds[i-1].End) {
			t.Fatalf("round %d started before round %d ended", r.N, r.N-1)
		}
	}
}

type funcObserver struct{ start, end func(Round) }

func (f *funcObserver) RoundStart(r Round) {
	if f.start != nil {
		f.start(r)
	}
}
func (f *funcObserver) Result(uint64, job.Result) {}
func (f *funcObserver) Change(Change)             {}
func (f *funcObserver) RoundEnd(r Round) {
	if f.end != nil {
		f.end(r)
	}
}

// A reloaded list: a target that left is reported once as removed (with
// its last state), a new one joins (news only when it is down), the others
// keep their state across the new indexes. ReloadNow starts a round at once
// (the interval is an hour).
func TestReload(t *testing.T) {
	t.Parallel()
	lists := [][]string{{"127.0.0.1-3"}, {"127.0.0.1", "127.0.0.3", "127.0.0.9", "127.0.0.10"}}
	var k atomic.Int32
	j := &scripted{result: func(round uint64, tg target.Target) job.Result {
		return upOrDown(tg, tg.Addr.As4()[3] != 10)
	}}
	rec := &recorder{}
	now := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, parse(t, lists[0]...), j, Options{
			Watch: "w", Every: time.Hour, Observers: []Observer{j, rec}, ReloadNow: now, FirstRound: 7,
			Reload: func() (target.Set, error) {
				if k.Add(1) > 1 {
					return nil, nil // unchanged
				}
				return target.Parse(lists[1], target.ParseOptions{})
			},
		})
		done <- err
	}()
	testwait.For(t, "round 7", func() bool { return rec.roundCount() == 1 })
	now <- struct{}{}
	testwait.For(t, "round 8, started by ReloadNow", func() bool { return rec.roundCount() == 2 })
	now <- struct{}{}
	testwait.For(t, "round 9", func() bool { return rec.roundCount() == 3 })
	cancel()
	if err, _ := testwait.Recv(t, "the watch to end", done); err != context.Canceled {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	want := []string{"8:removed:127.0.0.2", "8:down:127.0.0.10"}
	if got := rec.events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if c := rec.changes[0]; c.PrevStatus != job.Up || c.ID != "w/8/127.0.0.2" {
		t.Fatalf("removed %+v", c)
	}
	if rd := rec.rounds[1]; rd.Targets != 4 || rd.Late || rd.N != 8 {
		t.Fatalf("round %+v", rd)
	}
}

// Stop during a round: no target starts after it, the ones in flight
// finish and are reported, RoundEnd comes, and Run returns nil.
func TestStop(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-100")
	stop := make(chan struct{})
	release := make(chan struct{})
	var started atomic.Int64
	j := &scripted{result: func(round uint64, tg target.Target) job.Result {
		started.Add(1)
		<-release
		return upOrDown(tg, false)
	}}
	rec := &recorder{}
	done := make(chan struct{})
	var st Stats
	var err error
	go func() {
		defer close(done)
		st, err = Run(context.Background(), set, j, Options{
			Every: time.Hour, Engine: engine.Options{Concurrency: 3}, Observers: []Observer{j, rec}, Stop: stop,
		})
	}()
	testwait.For(t, "3 targets in flight", func() bool { return started.Load() == 3 })
	close(stop)
	close(release)
	testwait.Recv(t, "the watch to stop", done)
	if err != nil || !st.Stopped || st.Rounds != 1 {
		t.Fatalf("Run: %v, stats %+v", err, st)
	}
	if n := len(rec.results[1]); n != 3 || started.Load() != 3 || len(rec.changes) != 3 || len(rec.rounds) != 1 || rec.rounds[0].Down != 3 {
		t.Fatalf("%d results, %d started, %d changes, rounds %+v; want the 3 in flight", n, started.Load(), len(rec.changes), rec.rounds)
	}
}

// Spread: the round's targets start over the interval less what one target
// may take; a lower rate given wins.
func TestSpreadRate(t *testing.T) {
	w := &watcher{opts: Options{Every: 10 * time.Second, Engine: engine.Options{Timeout: 2 * time.Second}}}
	if r := w.spreadRate(0, 800); r != 100 {
		t.Fatalf("800 targets over 10s less a 2s timeout: rate %v, want 100", r)
	}
	if r := w.spreadRate(50, 800); r != 50 {
		t.Fatalf("given 50: %v", r)
	}
	w.opts.TargetTime = time.Minute
	if r := w.spreadRate(0, 100); r != 100 {
		t.Fatalf("a target longer than the interval: over a tenth of it, rate %v, want 100", r)
	}
}
