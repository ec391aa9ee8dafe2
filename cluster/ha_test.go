package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/watch"
)

// haCluster is three `fanout server` processes (the test binary re-executed)
// in one NATS cluster, routes on loopback authenticated by the token, each
// with its own file store; clients get the three URLs.
type haCluster struct {
	*testCluster
	names   []string
	servers map[string]*proc
	env     map[string][]string // each server's, to start it again
	urls    map[string]string   // each server's client URL
}

// clientOn is a client connected to server name first (it learns the
// others from it, and reconnects to them when name dies).
func (hc *haCluster) clientOn(ctx context.Context, name string) *Client {
	nc, err := Connect(ctx, hc.urls[name], Credentials{Token: hc.token}, "test-submitter-"+name, hc.t.Logf)
	if err != nil {
		hc.t.Fatal(err)
	}
	hc.t.Cleanup(nc.Close)
	c, err := NewClient(ctx, nc)
	if err != nil {
		hc.t.Fatal(err)
	}
	return c
}

// restart starts server name again, on its store.
func (hc *haCluster) restart(name string) {
	hc.servers[name] = startProc(hc.t, hc.env[name]...)
	hc.servers[name].waitLine(hc.t, "set up R3", testwait.Hang)
}

func newHACluster(t *testing.T) *haCluster {
	t.Helper()
	const n = 3
	token, err := GenToken()
	if err != nil {
		t.Fatal(err)
	}
	hc := &haCluster{testCluster: &testCluster{t: t, dir: t.TempDir(), token: token}, servers: map[string]*proc{}, env: map[string][]string{}, urls: map[string]string{}}
	var ports, routePorts, urls, routes []string
	for i := 0; i < n; i++ {
		ports = append(ports, fmt.Sprint(freePort(t)))
		routePorts = append(routePorts, fmt.Sprint(freePort(t)))
		urls = append(urls, "nats://127.0.0.1:"+ports[i])
		// The same list on every server, itself included, as operators
		// write it: the replicas are still derived as 3.
		routes = append(routes, "nats://127.0.0.1:"+routePorts[i])
	}
	hc.url = strings.Join(urls, ",")
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		hc.names = append(hc.names, name)
		hc.urls[name] = urls[i]
		hc.env[name] = []string{"FANOUT_CLUSTER_ROLE=server", "FANOUT_CLUSTER_LISTEN=127.0.0.1:" + ports[i],
			"FANOUT_CLUSTER_STORE=" + filepath.Join(hc.dir, name), "FANOUT_CLUSTER_SERVER_NAME=" + name,
			"FANOUT_CLUSTER_ROUTE_LISTEN=127.0.0.1:" + routePorts[i], "FANOUT_CLUSTER_ROUTES=" + strings.Join(routes, ","),
			"FANOUT_CLUSTER_TOKEN=" + token, "FANOUT_CLUSTER_LOG=1"}
		hc.servers[name] = startProc(t, hc.env[name]...)
	}
	for _, name := range hc.names {
		hc.servers[name].waitLine(t, "ready", testwait.Hang)
	}
	// Each server sets up the streams with 3 replicas once the three have
	// joined and elected a meta leader.
	for _, name := range hc.names {
		hc.servers[name].waitLine(t, "set up R3", testwait.Hang)
	}
	return hc
}

// checkReplicas checks every stream of the cluster (buckets included) keeps
// 3 copies, on 3 distinct servers, all current.
func checkReplicas(t *testing.T, ctx context.Context, c *Client) {
	t.Helper()
	streams := []string{TasksStream, ResultsStream, RoundsStream, WatchResultsStream, EventsStream,
		"KV_" + SweepsBucket, "KV_" + WorkersBucket, "KV_" + WatchesBucket}
	for _, name := range streams {
		testwait.For(t, name+" on 3 current servers", func() bool {
			st, err := c.s.js.Stream(ctx, name)
			if err != nil {
				return false
			}
			info := st.CachedInfo()
			if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return false
			}
			for _, p := range info.Cluster.Replicas {
				if !p.Current || p.Name == info.Cluster.Leader {
					return false
				}
			}
			return true
		})
	}
}

// leaderOf is the server that leads stream name ("" when none does yet, or
// it is unreachable).
func leaderOf(ctx context.Context, c *Client, name string) string {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := c.s.js.Stream(actx, name)
	if err != nil || st.CachedInfo().Cluster == nil {
		return ""
	}
	return st.CachedInfo().Cluster.Leader
}

// TestHAKillStreamLeaderMidWatch: three servers in one cluster (R3), three
// workers, a tcp watch every 2 s over 513 loopback targets and a sweep
// running; the server leading the rounds stream (whose leader fires the
// schedule) is killed with SIGKILL mid-watch. The rounds go on with no gap
// longer than one interval beyond the time the cluster took to elect new
// leaders (measured on the stored rounds' due times); every round after the
// kill is complete, each (round, index) stored once; no change event is
// stored twice; the sweep submitted before the kill completes, each index
// once.
func TestHAKillStreamLeaderMidWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of three servers, rounds across a kill -9")
	}
	hc := newHACluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := hc.client(ctx)
	checkReplicas(t, ctx, c)

	port := lab.ClosingPort(t)
	var workers []*proc
	for _, name := range []string{"wa", "wb", "wc"} {
		workers = append(workers, hc.worker(name, 100, "tcp,clustertest-sleep"))
	}
	t.Cleanup(func() { // before the workers are killed: where each one was
		if t.Failed() {
			for _, w := range workers {
				_ = w.cmd.Process.Signal(syscall.SIGQUIT)
			}
			time.Sleep(2 * time.Second) // for the dumps to reach the output
		}
	})
	// Each worker follows the ticks from its start (new ticks only): a
	// watch submitted before all three do would leave the late one's
	// chunks of the first rounds undone.
	testwait.For(t, "the three workers following ticks", func() bool {
		info, err := c.s.rounds.Info(ctx)
		return err == nil && info.State.Consumers >= 3
	})
	const n = 513 // the listener, and 512 addresses that refuse
	sp := spec.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{"127.0.0.1", "127.1.0.0/23"}, Timeout: time.Second}
	rec, err := c.SubmitWatch(ctx, sp, n, WatchOptions{ID: "wha", Every: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := newWatchLog()
	go func() { _ = c.Follow(ctx, rec.ID, log.opts()) }()
	t.Cleanup(func() { // on failure: did the schedule go on firing?
		if !t.Failed() {
			return
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if m, err := c.s.rounds.GetLastMsgForSubject(dctx, tickSubject(rec.ID)); err == nil {
			t.Logf("last tick: seq %d stored %v, next %s", m.Sequence, m.Time.Format("15:04:05.000"), m.Header.Get("Nats-Schedule-Next"))
		} else {
			t.Logf("last tick: %v", err)
		}
		if m, err := c.s.rounds.GetLastMsgForSubject(dctx, clockSubject(rec.ID)); err == nil {
			t.Logf("clock: seq %d stored %v, headers %v", m.Sequence, m.Time.Format("15:04:05.000"), m.Header)
		}
		if info, err := c.s.rounds.Info(dctx); err == nil && info.Cluster != nil {
			t.Logf("rounds stream: leader %q, replicas %+v, state %+v", info.Cluster.Leader, info.Cluster.Replicas, info.State)
		}
	})
	before := log.waitRound(t, 2)

	// The workers' durable consumer (which holds the tasks' acks) is
	// replicated as its stream is.
	cons, err := c.s.js.Consumer(ctx, TasksStream, WorkerConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if ci := cons.CachedInfo(); ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
		t.Errorf("consumer %s: cluster %+v, want a leader and 2 replicas", WorkerConsumer, ci.Cluster)
	}

	// kill -9 (below) the leader of the rounds stream, the hard case: its
	// schedule, and likely the other streams' leadership, move.
	var victim string
	testwait.For(t, "a leader of "+RoundsStream, func() bool {
		victim = leaderOf(ctx, c, RoundsStream)
		return victim != ""
	})
	t.Logf("leaders before the kill: rounds %s, watch results %s, events %s, tasks %s, results %s",
		victim, leaderOf(ctx, c, WatchResultsStream), leaderOf(ctx, c, EventsStream),
		leaderOf(ctx, c, TasksStream), leaderOf(ctx, c, ResultsStream))

	// A sweep running when the server dies, submitted and collected by a
	// client connected to that server: results on their way to it when it
	// dies are lost to the collector's consumer (no acks), which must read
	// them again. Its Collect once waited for them for good (CI, session 7).
	// At 100 starts a second per worker, it takes 10 s or more: it spans the
	// kill and the election, and leaves the workers' slots to the watch.
	const sweepN = 3000
	sc := hc.clientOn(ctx, victim)
	ssp := sleepSpec(sweepN, 40)
	ssp.Rate = 100
	srec, err := submit(ctx, sc, ssp, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	collected := make(chan error, 1)
	go func() { collected <- sc.Collect(ctx, srec.ID, CollectOptions{Counters: &k.c, Emit: k.emit}) }()
	waitDone(t, k, sweepN, 0.1, testwait.Hang)
	if done := k.c.Done.Load(); done == sweepN {
		t.Errorf("the sweep was collected before the kill: it no longer spans it")
	}
	hc.servers[victim].kill()
	killed := time.Now()
	sweepDone := k.c.Done.Load()
	// Elected: the streams a round goes through have live leaders again
	// (polled: the time observed bounds the true one from above).
	testwait.For(t, "new stream leaders", func() bool {
		for _, s := range []string{RoundsStream, WatchResultsStream, EventsStream} {
			if l := leaderOf(ctx, c, s); l == "" || l == victim {
				return false
			}
		}
		return true
	})
	election := time.Since(killed)
	t.Logf("killed %s after round %d, the sweep %d/%d collected; new leaders after %v: rounds %s",
		victim, before, sweepDone, sweepN, election, leaderOf(ctx, c, RoundsStream))

	after := log.waitDueAfter(t, time.Now().Add(2*rec.Every))
	select {
	case err := <-collected:
		if err != nil {
			t.Fatalf("the sweep submitted before the kill: %v", err)
		}
	case <-time.After(testwait.Hang):
		dumpSweep(t, c, srec.ID, k)
		t.Fatalf("the sweep submitted before the kill: not collected after %v (%d of %d)", testwait.Hang, k.c.Done.Load(), sweepN)
	}
	exactlyOnce(t, "sweep, submitter", k.counts, sweepN)
	exactlyOnce(t, "sweep, stored on the cluster", storedCounts(t, ctx, c, srec.ID), sweepN)

	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	// Every round that stored anything ends, complete.
	info, err := c.s.wresults.Info(ctx, jetstream.WithSubjectFilter(wresultsPrefix+rec.ID+".>"))
	if err != nil {
		t.Fatal(err)
	}
	var rounds []uint64
	seen := map[uint64]bool{}
	for subj := range info.State.Subjects {
		if r, _, _, ok := parseWResult(rec.ID, subj); ok && !seen[r] {
			seen[r] = true
			rounds = append(rounds, r)
		}
	}
	sort.Slice(rounds, func(i, j int) bool { return rounds[i] < rounds[j] })
	// What the cluster stored, read from the stream itself (a round's last
	// results may still be on their way: read until complete or a hang).
	var counts map[[2]uint64]int
	testwait.For(t, "every stored round complete", func() bool {
		counts = storedWatchCounts(t, ctx, c, rec.ID)
		for _, r := range rounds {
			for i := uint64(0); i < n; i++ {
				if counts[[2]uint64{r, i}] == 0 {
					return false
				}
			}
		}
		return true
	})
	for _, r := range rounds {
		checkRounds(t, counts, r, r, n)
	}
	// And what a follower of the watch saw: each of those rounds ended.
	for _, r := range rounds {
		log.waitFor(t, fmt.Sprintf("round %d", r), func(rd watch.Round) bool { return rd.N == r })
	}

	// The gap: between consecutive stored rounds, by their due times.
	anchor, err := c.anchor(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	due := func(r uint64) time.Time { return anchor.Add(time.Duration(r) * rec.Every) }
	if len(rounds) == 0 || rounds[len(rounds)-1] < after {
		t.Fatalf("stored rounds %v, want up to %d at least", rounds, after)
	}
	var spanned bool
	for i := 1; i < len(rounds); i++ {
		gap := due(rounds[i]).Sub(due(rounds[i-1])) - rec.Every
		if due(rounds[i-1]).Before(killed) && !due(rounds[i]).Before(killed) {
			spanned = true
			t.Logf("across the kill: round %d due %v, round %d due %v: a gap of %v (election %v)",
				rounds[i-1], due(rounds[i-1]).Format("15:04:05.000"), rounds[i], due(rounds[i]).Format("15:04:05.000"), gap, election)
		}
		if gap > election+rec.Every {
			t.Errorf("rounds %d and %d (due %v and %v): no round for %v, more than one interval (%v) beyond the election (%v)",
				rounds[i-1], rounds[i], due(rounds[i-1]).Format("15:04:05.000"), due(rounds[i]).Format("15:04:05.000"), gap, rec.Every, election)
		}
	}
	if !spanned {
		t.Errorf("stored rounds %v: none before and after the kill at %v", rounds, killed.Format("15:04:05.000"))
	}

	// Each change stored once: by its event id (the message id), and no
	// target reported down twice (nothing changes after round 1 but
	// classes, on a machine too loaded to get a refusal within 1 s).
	events := storedEvents(t, ctx, c, rec.ID)
	ids := map[string]int{}
	downs := map[string]int{}
	for _, e := range events {
		ids[e.ID]++
		if e.Kind == watch.Down {
			downs[strings.SplitN(e.ID, "/", 3)[2]]++
		}
	}
	for id, k := range ids {
		if k > 1 {
			t.Errorf("change %s stored %d times", id, k)
		}
	}
	for target, k := range downs {
		if k > 1 {
			t.Errorf("target %s reported down %d times", target, k)
		}
	}
	if len(downs) != n-1 {
		t.Errorf("%d targets reported down, want %d (every one but the listener)", len(downs), n-1)
	}
	t.Logf("rounds %v stored; %d changes; sweep by %v", rounds, len(events), k.workers)

	// The killed server, started again on its store, catches up: every
	// stream is current on three servers again.
	hc.restart(victim)
	checkReplicas(t, ctx, c)
}

// dumpSweep logs, for a sweep whose Collect did not return, what the test
// process runs and where the sweep stands on the cluster: its stored
// results, the consumers reading them and what each delivered, its tasks
// left in the work queue and the workers' consumer, each with its leader.
func dumpSweep(t *testing.T, c *Client, id string, k *collector) {
	t.Helper()
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	t.Logf("test process goroutines:\n%s", b.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Logf("collector: %d of %d results", k.c.Done.Load(), k.c.Total.Load())
	leader := func(ci *jetstream.ClusterInfo) string {
		if ci == nil {
			return "(none)"
		}
		return fmt.Sprintf("leader %q replicas %d", ci.Leader, len(ci.Replicas))
	}
	if info, err := c.s.results.Info(ctx, jetstream.WithSubjectFilter(resultsPrefix+id+".>")); err == nil {
		t.Logf("results stream: %s, %d messages of the sweep, last seq %d", leader(info.Cluster), len(info.State.Subjects), info.State.LastSeq)
	} else {
		t.Logf("results stream: %v", err)
	}
	cl := c.s.results.ListConsumers(ctx)
	for ci := range cl.Info() {
		t.Logf("results consumer %s (filter %v): %s, delivered %+v, pending %d, waiting %d",
			ci.Name, ci.Config.FilterSubjects, leader(ci.Cluster), ci.Delivered, ci.NumPending, ci.NumWaiting)
	}
	if err := cl.Err(); err != nil {
		t.Logf("results consumers: %v", err)
	}
	if info, err := c.s.tasks.Info(ctx, jetstream.WithSubjectFilter(tasksPrefix+id+".>")); err == nil {
		t.Logf("tasks stream: %s, %d tasks of the sweep left", leader(info.Cluster), info.State.Msgs)
	} else {
		t.Logf("tasks stream: %v", err)
	}
	if cons, err := c.s.js.Consumer(ctx, TasksStream, WorkerConsumer); err == nil {
		ci := cons.CachedInfo()
		t.Logf("workers' consumer: %s, delivered %+v, ack floor %+v, pending %d, ack pending %d, redelivered %d, waiting %d",
			leader(ci.Cluster), ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
	} else {
		t.Logf("workers' consumer: %v", err)
	}
	stored := 0
	for _, n := range storedCounts(t, ctx, c, id) {
		if n > 0 {
			stored++
		}
	}
	t.Logf("indexes stored on the cluster: %d", stored)
}

// storedEvents reads every change event stored for watch id.
func storedEvents(t *testing.T, ctx context.Context, c *Client, id string) []Event {
	t.Helper()
	info, err := c.s.events.Info(ctx, jetstream.WithSubjectFilter(eventSubject(id)))
	if err != nil {
		t.Fatal(err)
	}
	want := int(info.State.Msgs)
	cons, err := c.s.js.OrderedConsumer(ctx, EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{eventSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var out []Event
	deadline := time.Now().Add(testwait.Hang)
	for i := 0; i < want; i++ {
		m, err := it.Next()
		if err != nil && time.Now().Before(deadline) {
			i-- // leaders re-elected after a server died: the ordered consumer resumes
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("reading stored events %d/%d: %v", i, want, err)
		}
		var e Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatal(err)
		}
		if h := m.Headers().Get("Nats-Msg-Id"); h != e.ID {
			t.Errorf("event %s stored with message id %q", e.ID, h)
		}
		out = append(out, e)
	}
	return out
}

// TestReplicasFor: the replica count is the one given, or 3 when the routes
// name two peers or more besides this server, else 1; a count a single
// server cannot hold, or beyond JetStream's, is refused before listening.
func TestReplicasFor(t *testing.T) {
	t.Parallel()
	self := "127.0.0.1:6301"
	for _, tc := range []struct {
		name string
		o    ServerOptions
		want int
		err  string
	}{
		{"single server", ServerOptions{}, 1, ""},
		{"two peers", ServerOptions{ClusterListen: self, Routes: []string{"nats://127.0.0.1:6302", "nats://127.0.0.1:6303"}}, 3, ""},
		{"one list for all, self included", ServerOptions{ClusterListen: self, Routes: []string{"nats://" + self + ",nats://127.0.0.1:6302,nats://127.0.0.1:6303"}}, 3, ""},
		{"one peer", ServerOptions{ClusterListen: self, Routes: []string{"nats://" + self, "nats://127.0.0.1:6302"}}, 1, ""},
		{"the same peer twice", ServerOptions{ClusterListen: self, Routes: []string{"127.0.0.1:6302", "nats://127.0.0.1:6302"}}, 1, ""},
		{"given", ServerOptions{ClusterListen: self, Routes: []string{"nats://127.0.0.1:6302"}, Replicas: 2}, 2, ""},
		{"given five", ServerOptions{ClusterListen: self, Replicas: 5}, 5, ""},
		{"six", ServerOptions{ClusterListen: self, Replicas: 6}, 0, "replicas 6: want 1 to 5"},
		{"negative", ServerOptions{Replicas: -1}, 0, "replicas -1"},
		{"three without a cluster", ServerOptions{Replicas: 3}, 0, "without a cluster"},
	} {
		got, err := replicasFor(tc.o, tc.o.ClusterListen != "" || len(tc.o.Routes) > 0)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %d, %v; want %d", tc.name, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %d, %v; want an error saying %q", tc.name, got, err, tc.err)
		}
	}
	// Refused by StartServer before it listens, as a usage error.
	if _, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Replicas: 3}); !errors.Is(err, ErrServerOptions) {
		t.Errorf("a single server with 3 replicas: %v, want ErrServerOptions", err)
	}
}

// TestCheckServers: --server takes one URL or several, comma-separated;
// anything else is refused naming the entry (its password redacted).
func TestCheckServers(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"nats://127.0.0.1:4222", "nats://a:4222,nats://b:4222, nats://c:4222", "tls://a:4222", "127.0.0.1:4222"} {
		if err := CheckServers(ok); err != nil {
			t.Errorf("CheckServers(%q): %v", ok, err)
		}
	}
	for in, want := range map[string]string{
		"":                                   "no URL",
		",":                                  "no URL",
		"http://a:80":                        `scheme "http"`,
		"nats://a:4222,nats://u:secret@:1/x": `"nats://u:xxxxx@:1/x"`,
	} {
		err := CheckServers(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("CheckServers(%q): %v, want an error saying %s", in, err, want)
		}
	}
	if got := redact("nats://a:1,nats://u:secret@b:2"); got != "nats://a:1,nats://u:xxxxx@b:2" {
		t.Errorf("redact of a list: %q", got)
	}
}

// TestRoutesAuthenticate: a clustered server's route port listens where
// told (loopback) and refuses a peer without the token or with another.
func TestRoutesAuthenticate(t *testing.T) {
	t.Parallel()
	rp := freePort(t)
	s, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", rp),
		Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))}, StoreDir: t.TempDir(), Creds: Credentials{Token: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	if a := s.ns.ClusterAddr(); a == nil || !a.IP.IsLoopback() || a.Port != rp {
		t.Errorf("route listener on %v, want 127.0.0.1:%d", s.ns.ClusterAddr(), rp)
	}
	for name, connect := range map[string]string{
		"no credentials":  `CONNECT {"verbose":false,"pedantic":false,"name":"intruder"}`,
		"another token":   `CONNECT {"verbose":false,"pedantic":false,"user":"fanout","pass":"not-the-cluster-token","name":"intruder"}`,
		"the client form": `CONNECT {"verbose":false,"pedantic":false,"auth_token":"` + testToken + `x","name":"intruder"}`,
	} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rp), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(testwait.Hang))
		r := bufio.NewReader(c)
		if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
			t.Fatalf("%s: route INFO: %q, %v", name, info, err)
		}
		fmt.Fprintf(c, "%s\r\nPING\r\n", connect)
		line, _ := r.ReadString('\n')
		if !strings.Contains(line, "Authorization Violation") {
			t.Errorf("route with %s: %q, want an authorization violation", name, line)
		}
		c.Close()
	}
}
