package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
		n, _, done, ok := parseWResult(id, m.Subject())
		if !ok {
			t.Fatalf("stored subject %s", m.Subject())
		}
		if done {
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
	return counts
}

// closingListener listens on a loopback port until the test ends,
// closing every connection it accepts (a tcp target up), and returns the
// port.
func closingListener(t *testing.T) int {
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
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
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

// TestWatchOnCluster: three worker processes and a real server; a tcp watch
// of 2,049 loopback targets every 2 s. While membership holds, every index
// of every round is stored once and polled by the same worker round after
// round; a worker killed with SIGKILL loses no target of any round (its
// unfinished chunks are taken over once its heartbeat expires) and only its
// share moves; a fourth worker takes about a quarter; once stopped, no
// round starts.
func TestWatchOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of rounds")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := closingListener(t)
	workers := map[string]*proc{}
	for _, name := range []string{"wa", "wb", "wc"} {
		workers[name] = tc.worker(name, 300, "tcp")
	}
	c := tc.client(ctx)
	const n = 2049
	sp := spec.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{"127.0.0.1", "127.1.0.0/21"}, Timeout: time.Second}
	rec, err := c.SubmitWatch(ctx, sp, n, WatchOptions{ID: "wtest", Every: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Chunks < 128 {
		t.Fatalf("%d chunks of %d: too few for rendezvous hashing to share evenly", rec.Chunks, rec.ChunkSize)
	}
	log := newWatchLog()
	followErr := make(chan error, 1)
	go func() { followErr <- c.Follow(ctx, rec.ID, log.opts()) }()

	// 1. Steady membership: rounds a and a+1, each index once, same owner.
	a := log.waitRound(t, 2)
	b := log.waitRound(t, a+1)
	if ws := log.workersOf(b); len(ws) != 3 {
		t.Fatalf("round %d polled by %v, want the 3 workers", b, ws)
	}
	if m := log.moved(b-1, b, n); m > 0.01 {
		t.Errorf("rounds %d and %d, no membership change: %.1f%% of targets changed worker, want at most 1%%", b-1, b, 100*m)
	}

	// 2. kill -9 one worker: after its heartbeat expires, its chunks (of the
	// open rounds too) go to the two others.
	workers["wb"].kill()
	killedAfter := b
	after := log.waitDueAfter(t, time.Now().Add(WorkerTTL+2*rec.Every))
	if ws := log.workersOf(after); ws["wb"] > 0 || len(ws) != 2 {
		t.Fatalf("round %d, wb killed: polled by %v", after, ws)
	}
	m := log.moved(killedAfter, after, n)
	t.Logf("kill -9 wb after round %d: %.1f%% of targets changed worker by round %d", killedAfter, 100*m, after)
	if m > 0.40 {
		t.Errorf("one worker of three killed: %.1f%% of targets changed worker, want at most 40%%", 100*m)
	}

	// 3. A fourth worker takes about a quarter.
	workers["wd"] = tc.worker("wd", 300, "tcp")
	later := log.waitDueAfter(t, time.Now().Add(2*rec.Every))
	if ws := log.workersOf(later); ws["wd"] == 0 || len(ws) != 3 {
		t.Fatalf("round %d, wd started: polled by %v", later, ws)
	}
	m = log.moved(after, later, n)
	t.Logf("wd joined after round %d: %.1f%% of targets changed worker by round %d", after, 100*m, later)
	if m > 0.30 {
		t.Errorf("a worker joined two: %.1f%% of targets changed worker, want at most 30%%", 100*m)
	}

	// 4. Stop: no round ticks or starts after.
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	var lastTick uint64
	if m, err := c.s.rounds.GetLastMsgForSubject(ctx, tickSubject(rec.ID)); err == nil {
		anchor, err := c.anchor(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		lastTick = roundOf(anchor, rec.Every, tickTime(m.Header, m.Time, rec.Every))
	}
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
	if maxRound > lastTick {
		t.Errorf("results stored for round %d, after the last round ticked before the stop (%d)", maxRound, lastTick)
	}
	log.waitRound(t, maxRound)
	counts := storedWatchCounts(t, ctx, c, rec.ID)
	checkRounds(t, counts, 1, maxRound, n)
	log.mu.Lock()
	for r, seen := range log.early {
		t.Errorf("round %d ended with %d of its %d change events delivered, want all of them first", r, seen, log.ended[r].Changes)
	}
	if rd := log.ended[1]; rd.Changes < n-1 {
		t.Errorf("round 1: %d changes counted by its done marks, want %d or more", rd.Changes, n-1)
	}
	log.mu.Unlock()

	// The changes: round 1 reports every refused target down once, and
	// nothing else changes.
	log.mu.Lock()
	downs := map[string]int{}
	for _, e := range log.events {
		if e.Kind == watch.Class {
			// A refused connect starved of CPU past its 1s timeout on a
			// loaded machine is a timeout: the target stays down, its
			// class changes. The states must not.
			continue
		}
		if e.Kind != watch.Down || e.Round != 1 {
			t.Errorf("change %s %s in round %d: nothing changed after round 1", e.ID, e.Kind, e.Round)
		}
		downs[e.ID]++
	}
	log.mu.Unlock()
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
	if len(ws) != 1 || !ws[0].Stopped || ws[0].LastRound != lastTick || ws[0].Complete != maxRound || ws[0].Up != 1 || ws[0].Down != n-1 {
		t.Errorf("watch ls: %+v", ws)
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
	nc, err := Connect(ctx, s.URL, Credentials{}, "submitter", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := NewClient(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
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
