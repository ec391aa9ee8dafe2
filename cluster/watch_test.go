package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/exec"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/watch"
)

// watchLog gathers what Follow passes on: per round, the worker that
// polled each index; the rounds ended; the change events.
type watchLog struct {
	mu     sync.Mutex
	owner  map[uint64]map[uint64]string // round -> index -> worker
	ended  map[uint64]watch.Round
	events []Event
	// early: rounds that ended before all their change events came
	// (round -> events seen at its end), which Follow must never do.
	early map[uint64]int
}

func newWatchLog() *watchLog {
	return &watchLog{owner: map[uint64]map[uint64]string{}, ended: map[uint64]watch.Round{}, early: map[uint64]int{}}
}

func (l *watchLog) opts() FollowOptions {
	return FollowOptions{
		FromStart: true,
		Result: func(n uint64, r job.Result) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.owner[n] == nil {
				l.owner[n] = map[uint64]string{}
			}
			l.owner[n][r.Index] = r.Worker
		},
		RoundEnd: func(rd watch.Round) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.ended[rd.N] = rd
			seen := 0
			for _, e := range l.events {
				if e.Round == rd.N {
					seen++
				}
			}
			if seen < rd.Changes {
				l.early[rd.N] = seen
			}
		},
		Change: func(e Event) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.events = append(l.events, e)
		},
	}
}

// waitRound waits until a round numbered n or more has ended and returns
// the first such.
func (l *watchLog) waitRound(t *testing.T, n uint64) uint64 {
	t.Helper()
	return l.waitFor(t, fmt.Sprintf("round %d", n), func(rd watch.Round) bool { return rd.N >= n })
}

// waitDueAfter waits until a round due after tm has ended and returns the
// first such.
func (l *watchLog) waitDueAfter(t *testing.T, tm time.Time) uint64 {
	t.Helper()
	return l.waitFor(t, fmt.Sprintf("a round due after %v", tm), func(rd watch.Round) bool { return rd.Due.After(tm) })
}

func (l *watchLog) waitFor(t *testing.T, what string, ok func(watch.Round) bool) uint64 {
	t.Helper()
	var got uint64
	testwait.For(t, what+" ended", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		got = 0
		for n, rd := range l.ended {
			if ok(rd) && (got == 0 || n < got) {
				got = n
			}
		}
		return got > 0
	})
	return got
}

// moved is the fraction of indexes polled by another worker in round b
// than in round a.
func (l *watchLog) moved(a, b uint64, n int) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := 0
	for i := uint64(0); i < uint64(n); i++ {
		if l.owner[a][i] != l.owner[b][i] {
			m++
		}
	}
	return float64(m) / float64(n)
}

func (l *watchLog) workersOf(n uint64) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, w := range l.owner[n] {
		out[w]++
	}
	return out
}

// storedWatchCounts reads every stored result message of a watch, without
// deduplication: (round, index) -> how many stored results.
func storedWatchCounts(t *testing.T, ctx context.Context, c *Client, id string) map[[2]uint64]int {
	t.Helper()
	counts, _ := storedWatch(t, ctx, c, id)
	return counts
}

// storedWatch reads every stored message of a watch, without
// deduplication: (round, index) -> how many stored results, and (round,
// chunk) -> the chunk's done mark.
func storedWatch(t *testing.T, ctx context.Context, c *Client, id string) (map[[2]uint64]int, map[[2]uint64]chunkDone) {
	t.Helper()
	filter := wresultsPrefix + id + ".*.*.*"
	info, err := c.s.wresults.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := c.s.js.OrderedConsumer(ctx, WatchResultsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[[2]uint64]int{}
	done := map[[2]uint64]chunkDone{}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	deadline := time.Now().Add(testwait.Hang)
	for i := 0; i < len(info.State.Subjects); i++ {
		m, err := it.Next()
		if err != nil && time.Now().Before(deadline) {
			i-- // leaders re-elected after a server died: the ordered consumer resumes
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("reading stored results %d/%d: %v", i, len(info.State.Subjects), err)
		}
		n, ch, isDone, ok := parseWResult(id, m.Subject())
		if !ok {
			t.Fatalf("stored subject %s", m.Subject())
		}
		if isDone {
			var d chunkDone
			if err := json.Unmarshal(m.Data(), &d); err != nil {
				t.Fatalf("done mark %s: %v", m.Subject(), err)
			}
			done[[2]uint64{n, ch}] = d
			continue
		}
		rs, err := decodeBatch(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			counts[[2]uint64{n, r.Index}]++
		}
	}
	return counts, done
}

// checkRounds checks that every round in [from, to] has exactly one stored
// result for every index.
func checkRounds(t *testing.T, counts map[[2]uint64]int, from, to uint64, n int) {
	t.Helper()
	for r := from; r <= to; r++ {
		missing, twice := 0, 0
		for i := uint64(0); i < uint64(n); i++ {
			switch counts[[2]uint64{r, i}] {
			case 0:
				missing++
			case 1:
			default:
				twice++
			}
		}
		if missing > 0 || twice > 0 {
			t.Errorf("round %d: %d of %d indexes without a stored result, %d stored more than once", r, missing, n, twice)
		}
	}
}

// lastTick is the round of watch rec's last stored tick (0: none yet).
func lastTick(t *testing.T, ctx context.Context, c *Client, rec WatchRecord) uint64 {
	t.Helper()
	m, err := c.s.rounds.GetLastMsgForSubject(ctx, tickSubject(rec.ID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := c.anchor(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	return roundOf(anchor, rec.Every, tickTime(m.Header, m.Time, rec.Every))
}

// heartbeatAt is when the server stored worker's last heartbeat (it
// expires WorkerTTL later), waiting for one.
func heartbeatAt(t *testing.T, ctx context.Context, c *Client, worker string) time.Time {
	t.Helper()
	var at time.Time
	testwait.For(t, worker+"'s heartbeat", func() bool {
		e, err := c.s.workers.Get(ctx, keySafe(worker))
		if err != nil {
			return false
		}
		at = e.Created()
		return true
	})
	return at
}

// steadyPairs checks the rule over every pair of consecutive
// rounds in [from, to], a span without membership change: at most 1% of
// targets polled by another worker than in the round before. It returns
// how many pairs it checked.
func (l *watchLog) steadyPairs(t *testing.T, what string, from, to uint64, n int) int {
	t.Helper()
	pairs := 0
	for r := from; r < to; r++ {
		if m := l.moved(r, r+1, n); m > 0.01 {
			t.Errorf("%s: rounds %d and %d: %.2f%% of targets changed worker, want at most 1%%", what, r, r+1, 100*m)
		}
		pairs++
	}
	return pairs
}

// TestWatchOnCluster is issue #18's first two tests: three worker processes
// and a real server, a tcp watch of 2,049 loopback targets every 2 s, or
// of 20,000, the figure, with FANOUT_TEST_WATCH_SCALE=1 (a round
// of 20,000 connects costs about 5 to 9 s of CPU under -race, more than a
// 2-core machine has in 2 s: CI's could not keep up). While membership holds, every index of every round is
// stored once and at least 99% of targets are polled by the same worker
// round after round. A worker killed with SIGKILL at round 4 loses no
// target of any round: its unfinished chunks are taken over once its
// heartbeat expired, not before, oldest round first; at most 40% of
// targets move. A fourth worker moves at most 30%. Round 1 reports every
// refused target down once, and nothing changes after; once stopped, no
// round starts.
func TestWatchOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of rounds")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := lab.ClosingPort(t)
	workers := map[string]*proc{}
	for _, name := range []string{"wa", "wb", "wc"} {
		workers[name] = tc.worker(name, 300, "tcp")
	}
	c := tc.client(ctx)
	// Round 1 is polled by the three: membership holds from the start.
	testwait.For(t, "three live workers", func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 3
	})
	// 127.0.0.1 (the listener: up) and n-1 addresses that refuse.
	n := 2049
	if os.Getenv("FANOUT_TEST_WATCH_SCALE") == "1" {
		n = 20000
	}
	last := 0x7f010000 + n - 2
	sp := spec.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{"127.0.0.1", fmt.Sprintf("127.1.0.0-%d.%d.%d.%d", last>>24, last>>16&255, last>>8&255, last&255)}, Timeout: time.Second}
	rec, err := c.SubmitWatch(ctx, sp, uint64(n), WatchOptions{ID: "wtest", Every: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Total != uint64(n) || rec.Chunks < 128 {
		t.Fatalf("%d targets in %d chunks of %d: want %d in enough chunks for rendezvous hashing to share evenly", rec.Total, rec.Chunks, rec.ChunkSize, n)
	}
	log := newWatchLog()
	followErr := make(chan error, 1)
	go func() { followErr <- c.Follow(ctx, rec.ID, log.opts()) }()
	start := time.Now()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// A machine too slow for the watch falls behind its clock, round
		// after round: say so.
		log.mu.Lock()
		defer log.mu.Unlock()
		var ended uint64
		for r := range log.ended {
			ended = max(ended, r)
		}
		t.Logf("%v after the submission: round %d ticked, rounds up to %d ended", time.Since(start).Round(time.Second), lastTick(t, context.Background(), c, rec), ended)
	})

	// 1. Steady membership up to round 3; kill -9 wb once round 4 ticked.
	log.waitRound(t, 3)
	testwait.For(t, "round 4's tick", func() bool { return lastTick(t, ctx, c, rec) >= 4 })
	log.mu.Lock()
	var steady uint64 // the rounds ended before the kill
	for r := range log.ended {
		steady = max(steady, r)
	}
	log.mu.Unlock()
	killedAt := lastTick(t, ctx, c, rec)
	workers["wb"].kill()
	// Its last heartbeat expires at expiry: no other worker may poll its
	// chunks before (a heartbeat on its way when it died is stored later
	// than this one: expiry is a lower bound).
	expiry := heartbeatAt(t, ctx, c, "wb").Add(WorkerTTL)
	t.Logf("kill -9 wb at round %d (rounds 1-%d ended, %v after the submission); its heartbeat expires %v after the kill",
		killedAt, steady, time.Since(start).Round(time.Millisecond), time.Until(expiry).Round(time.Millisecond))

	// 2. The two others take its chunks: wait for two rounds ticked once
	// they see it gone, and for round 10.
	after := log.waitDueAfter(t, expiry.Add(watchScanEvery))
	log.waitRound(t, max(after+1, 10))

	// 3. A fourth worker.
	workers["wd"] = tc.worker("wd", 300, "tcp")
	joined := heartbeatAt(t, ctx, c, "wd")
	later := log.waitDueAfter(t, joined.Add(watchScanEvery))
	log.waitRound(t, later+1)

	// 4. Stop: no round ticks or starts after.
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	lastTicked := lastTick(t, ctx, c, rec)
	time.Sleep(3 * rec.Every) // the absence of ticks: three intervals
	if m, err := c.s.rounds.GetLastMsgForSubject(ctx, tickSubject(rec.ID)); err == nil && m.Time.After(stoppedAt) {
		t.Errorf("a tick at %v, after the watch was stopped at %v", m.Time, stoppedAt)
	}
	// Rounds started before the stop finish (a tick that reached the
	// workers after the stop mark starts nothing).
	info, err := c.s.wresults.Info(ctx, jetstream.WithSubjectFilter(wresultsPrefix+rec.ID+".>"))
	if err != nil {
		t.Fatal(err)
	}
	var maxRound uint64
	for subj := range info.State.Subjects {
		if r, _, _, ok := parseWResult(rec.ID, subj); ok {
			maxRound = max(maxRound, r)
		}
	}
	if maxRound > lastTicked {
		t.Errorf("results stored for round %d, after the last round ticked before the stop (%d)", maxRound, lastTicked)
	}
	log.waitRound(t, maxRound)
	t.Logf("%d rounds of %d targets in %v", maxRound, n, time.Since(start).Round(time.Millisecond))

	// Every (round, index) exactly once, the rounds of the kill included.
	counts, done := storedWatch(t, ctx, c, rec.ID)
	checkRounds(t, counts, 1, maxRound, n)

	// Owners. Spans of steady membership: the rounds ended before the
	// kill; those after wb's last result and before wd's first; those
	// ticked once wd was seen.
	log.mu.Lock()
	var lastB, firstD uint64
	for r, ow := range log.owner {
		for _, w := range ow {
			if w == "wb" {
				lastB = max(lastB, r)
			}
			if w == "wd" && (firstD == 0 || r < firstD) {
				firstD = r
			}
		}
	}
	log.mu.Unlock()
	for r := uint64(1); r <= steady; r++ {
		if ws := log.workersOf(r); len(ws) != 3 || ws["wd"] > 0 {
			t.Errorf("round %d, before the kill: polled by %v, want wa, wb and wc", r, ws)
		}
	}
	for r := lastB + 1; r < firstD; r++ {
		if ws := log.workersOf(r); len(ws) != 2 || ws["wb"] > 0 {
			t.Errorf("round %d, wb killed: polled by %v, want wa and wc", r, ws)
		}
	}
	for r := later; r <= maxRound; r++ {
		if ws := log.workersOf(r); len(ws) != 3 || ws["wd"] == 0 {
			t.Errorf("round %d, wd joined: polled by %v, want wa, wc and wd", r, ws)
		}
	}
	pairs := log.steadyPairs(t, "three workers", 1, steady, n)
	if lastB+2 >= firstD {
		t.Errorf("wb's last result in round %d, wd's first in round %d: no two rounds polled by wa and wc alone", lastB, firstD)
	} else {
		pairs += log.steadyPairs(t, "wb killed", lastB+1, firstD-1, n)
	}
	pairs += log.steadyPairs(t, "wd joined", later, maxRound, n)
	if steady < 2 || later >= maxRound {
		t.Errorf("rounds 1-%d before the kill, %d-%d after wd joined: want two of each", steady, later, maxRound)
	}
	m := log.moved(steady, lastB+1, n)
	t.Logf("%d pairs of consecutive steady rounds; kill -9 wb: %.1f%% of targets changed worker from round %d to %d", pairs, 100*m, steady, lastB+1)
	if m > 0.40 {
		t.Errorf("one worker of three killed: %.1f%% of targets changed worker, want at most 40%%", 100*m)
	}
	m = log.moved(firstD-1, later, n)
	t.Logf("wd joined: %.1f%% of targets changed worker from round %d to %d", 100*m, firstD-1, later)
	if m > 0.30 {
		t.Errorf("a worker joined two: %.1f%% of targets changed worker, want at most 30%%", 100*m)
	}

	// The takeover, from the done marks (the workers' own clock, which a
	// loaded machine slows: no bound on it). A chunk of wb's run by another
	// worker started after wb's heartbeat expired, never before; and each
	// worker ran its rounds of a chunk oldest first, the rounds left open
	// by wb before the rounds ticked after. The lateness the issue bounds
	// (TTL plus one round) is a wall-clock figure: logged.
	three := []string{"wa", "wb", "wc"}
	takenOver, worst := 0, time.Duration(0)
	for ch := uint64(0); ch < rec.Chunks; ch++ {
		if Owner(rec.ID, ch, three) != "wb" {
			continue
		}
		prev := map[string]chunkDone{} // per worker, its last run of ch
		prevRound := map[string]uint64{}
		for r := uint64(1); r <= maxRound; r++ {
			d, ok := done[[2]uint64{r, ch}]
			if !ok {
				t.Errorf("round %d chunk %d: no done mark", r, ch)
				continue
			}
			if d.Worker != "wb" && r > steady && r < later {
				if d.Start.Before(expiry) {
					t.Errorf("round %d chunk %d (wb's): %s started it at %v, before wb's heartbeat expired (%v)",
						r, ch, d.Worker, d.Start.Format(time.StampMicro), expiry.Format(time.StampMicro))
				}
				if d.Due.Before(expiry) {
					takenOver++
					worst = max(worst, d.End.Sub(d.Due))
				}
			}
			if p, ok := prev[d.Worker]; ok && d.Start.Before(p.Start) {
				t.Errorf("chunk %d: %s started round %d at %v, before round %d at %v: rounds out of order",
					ch, d.Worker, r, d.Start.Format(time.StampMicro), prevRound[d.Worker], p.Start.Format(time.StampMicro))
			}
			prev[d.Worker], prevRound[d.Worker] = d, r
		}
	}
	if takenOver == 0 {
		t.Errorf("no chunk of wb's taken over from a round ticked before its heartbeat expired")
	}
	t.Logf("%d runs of wb's chunks taken over; the latest ended %v after its round was due (the issue's bound, TTL plus one round: %v)",
		takenOver, worst.Round(time.Millisecond), WorkerTTL+rec.Every)

	log.mu.Lock()
	for r, seen := range log.early {
		t.Errorf("round %d ended with %d of its %d change events delivered, want all of them first", r, seen, log.ended[r].Changes)
	}
	if rd := log.ended[1]; rd.Changes < n-1 {
		t.Errorf("round 1: %d changes counted by its done marks, want %d or more", rd.Changes, n-1)
	}
	log.mu.Unlock()

	// The changes: round 1 reports every refused target down once, and
	// nothing else changes but for a starved machine: a connect starved of
	// CPU past its timeout is a timeout (a refused target's class
	// changes, the listener goes down, then back up).
	log.mu.Lock()
	downs := map[string]int{}
	starved := 0
	for _, e := range log.events {
		if e.Round == 1 && e.Kind == watch.Down {
			downs[e.ID]++
			continue
		}
		if e.Round > 1 && (e.Result.Class == job.ClassTimeout || e.PrevClass == job.ClassTimeout) {
			starved++
			continue
		}
		t.Errorf("change %s %s (%s) in round %d: nothing changed after round 1 but for timeouts", e.ID, e.Kind, e.Result.Class, e.Round)
	}
	log.mu.Unlock()
	if starved > 0 {
		t.Logf("%d changes after round 1 from connects that timed out (a starved machine)", starved)
	}
	if len(downs) != n-1 {
		t.Errorf("%d down changes in round 1, want %d (every target but the listener)", len(downs), n-1)
	}
	for id, k := range downs {
		if k > 1 {
			t.Errorf("change %s published %d times", id, k)
		}
	}
	ws, err := c.Watches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The listener is up, the others down (or, starved, the listener too).
	log.mu.Lock()
	final := log.ended[maxRound]
	log.mu.Unlock()
	if len(ws) != 1 || !ws[0].Stopped || ws[0].LastRound != lastTicked || ws[0].Complete != maxRound ||
		ws[0].Up != final.Up || ws[0].Up > 1 || ws[0].Up+ws[0].Down != n {
		t.Errorf("watch ls: %+v; want 1 watch, stopped, last round %d, complete %d, %d up (of 1), %d down", ws, lastTicked, maxRound, final.Up, n-final.Up)
	}
	cancel()
	<-followErr
}

// TestRolesRunAWatch: a worker-role worker and a submitter-role client run
// a watch to its stop without a permission error; a worker may not write
// watch records or clocks, a submitter may not store watch results or
// events: the server refuses.
func TestRolesRunAWatch(t *testing.T) {
	t.Parallel()
	users, seeds := roleUsers(t)
	s, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	var errMu sync.Mutex
	var asyncErrs []string
	logf := func(f string, a ...any) {
		errMu.Lock()
		asyncErrs = append(asyncErrs, fmt.Sprintf(f, a...))
		errMu.Unlock()
		t.Logf(f, a...)
	}
	wnc, err := Connect(ctx, s.URL, Credentials{NkeySeed: seeds[RoleWorker]}, "worker", logf)
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	w, err := NewWorker(ctx, wnc, WorkerOptions{Name: "w", Concurrency: 50, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	defer func() { stop(); <-done }()

	snc, err := Connect(ctx, s.URL, Credentials{NkeySeed: seeds[RoleSubmitter]}, "submitter", logf)
	if err != nil {
		t.Fatal(err)
	}
	defer snc.Close()
	c, err := NewClient(ctx, snc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	rec, err := c.SubmitWatch(ctx, sleepSpec(n, 1), n, WatchOptions{Every: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := newWatchLog()
	fctx, fcancel := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- c.Follow(fctx, rec.ID, log.opts()) }()
	last := log.waitRound(t, 2)
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	fcancel()
	<-followed
	if got := log.workersOf(last); got["w"] != n {
		t.Errorf("round %d: polled by %v, want all %d by w", last, got, n)
	}
	if ws, err := c.Watches(ctx); err != nil || len(ws) != 1 || !ws[0].Stopped {
		t.Errorf("watch ls as a submitter: %+v, %v", ws, err)
	}
	errMu.Lock()
	for _, e := range asyncErrs {
		if strings.Contains(strings.ToLower(e), "permission") {
			t.Errorf("a permitted flow hit a permission error: %s", e)
		}
	}
	errMu.Unlock()

	wraw, wv := rawConn(t, s.URL, seeds[RoleWorker])
	wjs, _ := jetstream.New(wraw)
	for _, subj := range []string{"$KV." + WatchesBucket + ".forged", clockSubject("forged"), tickSubject(rec.ID)} {
		refused(t, wv, "worker publishes "+subj, subj, func(ctx context.Context) error {
			_, err := wjs.Publish(ctx, subj, []byte("x"))
			return err
		})
	}
	sraw, sv := rawConn(t, s.URL, seeds[RoleSubmitter])
	sjs, _ := jetstream.New(sraw)
	for _, subj := range []string{wresultSubject(rec.ID, 99, 0, 0), wdoneSubject(rec.ID, 99, 0), eventSubject(rec.ID)} {
		refused(t, sv, "submitter publishes "+subj, subj, func(ctx context.Context) error {
			_, err := sjs.Publish(ctx, subj, []byte("x"))
			return err
		})
	}
}

// TestWatchExecOnlyWhereAllowed: a watch of kind exec is polled only by the
// worker that --allow exec, every round, the other worker being alive.
func TestWatchExecOnlyWhereAllowed(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	for _, w := range []struct {
		name  string
		allow []string
	}{{"plain", nil}, {"execs", []string{"exec"}}} {
		nc, err := Connect(ctx, s.URL, Credentials{}, w.name, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wk, err := NewWorker(ctx, nc, WorkerOptions{Name: w.name, Concurrency: 20, Allow: w.allow, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = wk.Run(wctx); close(done) }()
		defer func() { stop(); <-done }()
	}
	c := connectClient(t, ctx, s.URL, Credentials{}, "submitter", t.Logf)
	// Both workers are alive before the first tick.
	testwait.For(t, "two live workers", func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 2
	})
	const n = 20
	sp := spec.Spec{Job: "exec", JobOptions: json.RawMessage(`{"argv":["true"]}`), Targets: []string{"127.0.0.1-20"}, Timeout: 5 * time.Second}
	rec, err := c.SubmitWatch(ctx, sp, n, WatchOptions{Every: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := newWatchLog()
	fctx, fcancel := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- c.Follow(fctx, rec.ID, log.opts()) }()
	last := log.waitRound(t, 3)
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	fcancel()
	<-followed
	for r := uint64(1); r <= last; r++ {
		if got := log.workersOf(r); len(got) > 0 && got["execs"] != n {
			t.Errorf("round %d: polled by %v, want all %d by execs (plain does not allow exec)", r, got, n)
		}
	}
}

// TestWatchSurvivesServerRestart: the server killed with SIGKILL and started
// again on its file store: the schedule fires again, the workers follow its
// ticks, and no (round, index) is stored twice; every round that started is
// complete.
func TestWatchSurvivesServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("rounds across a server restart")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc.worker("wa", 100, "clustertest-sleep")
	tc.worker("wb", 100, "clustertest-sleep")
	c := tc.client(ctx)
	const n = 200
	rec, err := c.SubmitWatch(ctx, sleepSpec(n, 1), n, WatchOptions{ID: "wrestart", Every: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := newWatchLog()
	go func() { _ = c.Follow(ctx, rec.ID, log.opts()) }()
	before := log.waitRound(t, 2)
	tc.server.kill()
	tc.startServer()
	restarted := time.Now()
	after := log.waitDueAfter(t, restarted.Add(2*rec.Every))
	if after <= before {
		t.Fatalf("round %d after the restart, %d before", after, before)
	}
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * rec.Every)
	info, err := c.s.wresults.Info(ctx, jetstream.WithSubjectFilter(wresultsPrefix+rec.ID+".>"))
	if err != nil {
		t.Fatal(err)
	}
	started := map[uint64]bool{}
	for subj := range info.State.Subjects {
		if r, _, _, ok := parseWResult(rec.ID, subj); ok {
			started[r] = true
		}
	}
	for r := range started {
		log.waitFor(t, fmt.Sprintf("round %d", r), func(rd watch.Round) bool { return rd.N == r })
	}
	counts := storedWatchCounts(t, ctx, c, rec.ID)
	for r := range started {
		checkRounds(t, counts, r, r, n)
	}
	t.Logf("rounds %d before the restart, %d after; %d rounds stored", before, after, len(started))
}

// TestDecodeWatchRecord: a record from the bus is checked before it sizes
// anything: its interval, retention, chunk layout and chunk size.
func TestDecodeWatchRecord(t *testing.T) {
	t.Parallel()
	good := WatchRecord{ID: "w1", Spec: sleepSpec(10, 1), Every: 2 * time.Second, Total: 10, ChunkSize: 4, Chunks: 3, Retention: time.Hour}
	for _, tc := range []struct {
		name string
		edit func(*WatchRecord)
		want string
	}{
		{"good", func(*WatchRecord) {}, ""},
		{"other id", func(r *WatchRecord) { r.ID = "w2" }, "names watch"},
		{"every under a second", func(r *WatchRecord) { r.Every = 500 * time.Millisecond }, "every"},
		{"every not whole seconds", func(r *WatchRecord) { r.Every = 1500 * time.Millisecond }, "every"},
		{"no retention", func(r *WatchRecord) { r.Retention = 0 }, "retention"},
		{"layout", func(r *WatchRecord) { r.Chunks = 2 }, "do not make"},
		{"huge chunk", func(r *WatchRecord) { r.Total, r.ChunkSize, r.Chunks = 1<<40, 1<<40, 1 }, "at most"},
		{"a file", func(r *WatchRecord) { r.Spec.Targets = []string{"@/etc/hosts"} }, "/etc/hosts"},
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

// TestRendezvousShares: over 256 chunks, each of 3 workers owns about a
// third; a fourth takes about a quarter, all from the others; removing one
// moves only its own.
func TestRendezvousShares(t *testing.T) {
	t.Parallel()
	const chunks = 256
	owners := func(ws []string) []string {
		out := make([]string, chunks)
		for c := range out {
			out[c] = Owner("some-watch", uint64(c), ws)
		}
		return out
	}
	three := owners([]string{"a", "b", "c"})
	four := owners([]string{"a", "b", "c", "d"})
	two := owners([]string{"a", "c"})
	share := map[string]int{}
	movedIn, movedOut := 0, 0
	for c := 0; c < chunks; c++ {
		share[three[c]]++
		if four[c] != three[c] {
			movedIn++
			if four[c] != "d" {
				t.Errorf("chunk %d moved from %s to %s when d joined", c, three[c], four[c])
			}
		}
		if two[c] != three[c] {
			movedOut++
			if three[c] != "b" {
				t.Errorf("chunk %d moved from %s to %s when b left", c, three[c], two[c])
			}
		}
	}
	for w, n := range share {
		if n < chunks/3-30 || n > chunks/3+30 {
			t.Errorf("worker %s owns %d of %d chunks, want about a third", w, n, chunks)
		}
	}
	if movedIn > chunks*35/100 || movedOut != share["b"] {
		t.Errorf("d joining moved %d of %d, b leaving %d (its share %d)", movedIn, chunks, movedOut, share["b"])
	}
}

// holdingProxy forwards connections from a loopback port to addr and
// returns its URL; while hold is set, what addr sends back is held (the
// server's acks do not reach the client).
func holdingProxy(t *testing.T, addr string, hold *atomic.Bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() {
				defer c.Close()
				defer s.Close()
				b := make([]byte, 32<<10)
				for {
					n, err := s.Read(b)
					for hold.Load() {
						time.Sleep(5 * time.Millisecond)
					}
					if n > 0 {
						if _, err := c.Write(b[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "nats://" + ln.Addr().String()
}

// TestWatchChangesWhileAcksAreLate: a first round of 6,000 targets down is
// 6,000 change events from one chunk, published without waiting for each
// ack; the server's acks are held back (a slow link, a loaded server) once
// the client has 4,000 unacknowledged, its bound. The worker waits for
// them: every change is stored once, before the chunk's done mark. (It
// gave up after 200 ms, failing the chunk once its results were stored;
// its retry stored no result, so published no change: the 2,000 left were
// lost.)
func TestWatchChangesWhileAcksAreLate(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	var hold atomic.Bool
	wnc, err := Connect(ctx, holdingProxy(t, strings.TrimPrefix(s.URL, "nats://"), &hold), Credentials{}, "w", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	w, err := NewWorker(ctx, wnc, WorkerOptions{Name: "w", Concurrency: 300, Allow: []string{"tcp"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	defer func() { stop(); <-done }()
	c := connectClient(t, ctx, s.URL, Credentials{}, "submitter", t.Logf)
	testwait.For(t, "the worker alive", func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 1
	})

	// 127.1.0.0 onwards on a port nothing listens on: every target refuses.
	const n = 6000
	sp := spec.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, freePort(t))),
		Targets: []string{"127.1.0.0-127.1.23.111"}, Timeout: 5 * time.Second}
	rec, err := c.SubmitWatch(ctx, sp, n, WatchOptions{Every: 3 * time.Second, ChunkSize: n})
	if err != nil {
		t.Fatal(err)
	}
	events := func() uint64 {
		info, err := c.s.events.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	// Hold the acks from the first change stored until the worker stops
	// publishing (its bound reached), then a second: longer than the
	// client's own wait for an ack (200 ms) when its bound is reached.
	testwait.For(t, "round 1's first change stored", func() bool { return events() > 0 })
	hold.Store(true)
	last, since := events(), time.Now()
	testwait.For(t, "the worker's changes stalled", func() bool {
		if e := events(); e != last {
			last, since = e, time.Now()
		}
		return time.Since(since) > time.Second
	})
	hold.Store(false)
	t.Logf("the acks held with %d changes stored", last)
	testwait.For(t, "round 1's done mark", func() bool {
		_, err := c.s.wresults.GetLastMsgForSubject(ctx, wdoneSubject(rec.ID, 1, 0))
		return err == nil
	})
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	// Every change event stored so far: those of round 1 are all in.
	info, err := c.s.events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := c.s.js.OrderedConsumer(ctx, EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{eventSubject(rec.ID)}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	downs := map[string]int{}
	for seq := uint64(0); seq < info.State.LastSeq; {
		m, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		var e Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Round == 1 && e.Kind == watch.Down {
			downs[e.ID]++
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq = meta.Sequence.Stream
	}
	twice := 0
	for _, k := range downs {
		if k > 1 {
			twice++
		}
	}
	if len(downs) != n || twice > 0 {
		t.Errorf("round 1: %d targets reported down (%d of them more than once), want all %d once", len(downs), twice, n)
	}
}
