package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	sshjob "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/target"
)

// sleepJob is a job kind of the test binary: each target takes DelayMS and
// is up. It sends no traffic, so the tests run anywhere.
type sleepJob struct{ DelayMS int }

func (sleepJob) Kind() string { return "clustertest-sleep" }

func (s sleepJob) Run(ctx context.Context, t target.Target) job.Result {
	r := job.For(t, s.Kind())
	r.Start = time.Now()
	select {
	case <-time.After(time.Duration(s.DelayMS) * time.Millisecond):
		r.Status = job.Up
	case <-ctx.Done():
		r.Status, r.Class, r.Error = job.Down, job.ClassTimeout, ctx.Err().Error()
	}
	r.End = time.Now()
	r.RTT = r.End.Sub(r.Start)
	return r
}

// submit submits s with its target count, which it visits first as the
// CLI builds its plan before it submits.
func submit(ctx context.Context, c *Client, s spec.Spec, o SubmitOptions) (Record, error) {
	in, err := s.Inline(nil)
	if err != nil {
		return Record{}, err
	}
	_, order, err := in.Visit()
	if err != nil {
		return Record{}, err
	}
	return c.Submit(ctx, s, order.Len(), o)
}

func init() {
	job.Register("clustertest-sleep", job.Traits{TaskSize: [2]uint64{16, 256}}, func(o json.RawMessage) (job.Job, error) {
		var s sleepJob
		if len(o) > 0 {
			if err := json.Unmarshal(o, &s); err != nil {
				return nil, err
			}
		}
		return s, nil
	})
}

// TestMain doubles as the server and worker processes the tests start and
// kill: the same binary, re-executed with FANOUT_CLUSTER_ROLE set.
func TestMain(m *testing.M) {
	switch os.Getenv("FANOUT_CLUSTER_ROLE") {
	case "server":
		os.Exit(roleServer())
	case "worker":
		os.Exit(roleWorker())
	}
	os.Exit(m.Run())
}

func roleServer() int {
	o := ServerOptions{Listen: os.Getenv("FANOUT_CLUSTER_LISTEN"), StoreDir: os.Getenv("FANOUT_CLUSTER_STORE"),
		Name: os.Getenv("FANOUT_CLUSTER_SERVER_NAME"), ClusterListen: os.Getenv("FANOUT_CLUSTER_ROUTE_LISTEN"),
		Creds: Credentials{Token: os.Getenv("FANOUT_CLUSTER_TOKEN")}}
	if r := os.Getenv("FANOUT_CLUSTER_ROUTES"); r != "" {
		o.Routes = strings.Split(r, ",")
	}
	if os.Getenv("FANOUT_CLUSTER_LOG") != "" {
		o.Logf = func(f string, a ...any) { fmt.Printf("server: "+f+"\n", a...) }
	}
	s, err := StartServer(o)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready", s.URL)
	<-s.SetUp()
	fmt.Printf("set up R%d\n", s.Replicas)
	select {}
}

func roleWorker() int {
	ctx := context.Background()
	logf := func(f string, a ...any) { fmt.Printf(f+"\n", a...) }
	nc, err := Connect(ctx, os.Getenv("FANOUT_CLUSTER_URL"), Credentials{Token: os.Getenv("FANOUT_CLUSTER_TOKEN")}, "test-worker", logf)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	c, _ := strconv.Atoi(os.Getenv("FANOUT_CLUSTER_C"))
	var allow []string
	if a := os.Getenv("FANOUT_CLUSTER_ALLOW"); a != "" {
		allow = strings.Split(a, ",")
	}
	tags, err := ParseTags(os.Getenv("FANOUT_CLUSTER_TAGS"))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	o := WorkerOptions{
		Name: os.Getenv("FANOUT_CLUSTER_NAME"), Concurrency: c, Allow: allow, AckWait: 2 * time.Second, Logf: logf, Tags: tags,
	}
	if l := os.Getenv("FANOUT_CLUSTER_SSH"); l != "" {
		// The worker's own ssh settings, as fanout worker's flags give them.
		var local sshjob.Local
		if err := json.Unmarshal([]byte(l), &local); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		env := sshjob.DefaultEnv()
		env.Prompt = nil
		o.Confine = map[string]func(json.RawMessage) (json.RawMessage, error){
			"ssh": func(opts json.RawMessage) (json.RawMessage, error) { return sshjob.Confine(opts, local, env) },
		}
		o.Rounds = map[string]func(json.RawMessage) (json.RawMessage, error){
			"ssh": func(opts json.RawMessage) (json.RawMessage, error) { return sshjob.KeepForRounds(opts, o.Concurrency) },
		}
	}
	w, err := NewWorker(ctx, nc, o)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	return boolExit(w.Run(ctx) != nil)
}

func boolExit(failed bool) int {
	if failed {
		return 1
	}
	return 0
}

// proc is a child process of the test with its output collected.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	seen chan string // lines, for waiting on one
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = p.cmd.Process.Wait()
}

func startProc(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	p := &proc{cmd: cmd, seen: make(chan string, 1024)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.seen <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); w.Close() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("child %v:\n%s", env, p.output())
		}
	})
	return p
}

// waitLine waits for a line of p containing s.
func (p *proc) waitLine(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-p.seen:
			if strings.Contains(l, s) {
				return
			}
			if strings.HasPrefix(l, "error:") {
				t.Fatalf("child: %s", l)
			}
		case <-deadline:
			t.Fatalf("no line %q after %v; output:\n%s", s, d, p.output())
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testCluster struct {
	t      *testing.T
	dir    string
	listen string
	url    string // several, comma-separated, for a cluster of servers
	server *proc
	token  string // the cluster's token, for routes and clients ("": none)
}

func newTestCluster(t *testing.T) *testCluster {
	port := freePort(t)
	tc := &testCluster{t: t, dir: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", port), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	tc.startServer()
	return tc
}

func (tc *testCluster) startServer() {
	tc.server = startProc(tc.t, "FANOUT_CLUSTER_ROLE=server", "FANOUT_CLUSTER_LISTEN="+tc.listen, "FANOUT_CLUSTER_STORE="+tc.dir)
	tc.server.waitLine(tc.t, "ready", testwait.Hang)
}

func (tc *testCluster) worker(name string, c int, allow string, env ...string) *proc {
	p := startProc(tc.t, append([]string{"FANOUT_CLUSTER_ROLE=worker", "FANOUT_CLUSTER_URL=" + tc.url, "FANOUT_CLUSTER_TOKEN=" + tc.token,
		"FANOUT_CLUSTER_NAME=" + name, "FANOUT_CLUSTER_C=" + strconv.Itoa(c), "FANOUT_CLUSTER_ALLOW=" + allow}, env...)...)
	p.waitLine(tc.t, "ready", testwait.Hang)
	return p
}

func (tc *testCluster) client(ctx context.Context) *Client {
	nc, err := Connect(ctx, tc.url, Credentials{Token: tc.token}, "test-submitter", tc.t.Logf)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(nc.Close)
	c, err := NewClient(ctx, nc)
	if err != nil {
		tc.t.Fatal(err)
	}
	return c
}

// sleepSpec is a sweep of n targets (127.0.0.0 onwards) of delay ms each.
func sleepSpec(n int, delayMS int) spec.Spec {
	last := uint32(0x7f000000) + uint32(n) - 1
	return spec.Spec{
		Job: "clustertest-sleep", JobOptions: json.RawMessage(fmt.Sprintf(`{"DelayMS":%d}`, delayMS)),
		Targets: []string{fmt.Sprintf("127.0.0.0-%d.%d.%d.%d", last>>24, last>>16&255, last>>8&255, last&255)},
	}
}

// storedCounts reads every stored result message of a sweep, without any
// deduplication of ours: what the server holds, index by index.
func storedCounts(t *testing.T, ctx context.Context, c *Client, id string) map[uint64]int {
	t.Helper()
	cons, err := c.s.js.OrderedConsumer(ctx, ResultsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{resultsPrefix + id + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.s.results.Info(ctx, jetstream.WithSubjectFilter(resultsPrefix+id+".>"))
	if err != nil {
		t.Fatal(err)
	}
	want := len(info.State.Subjects)
	counts := map[uint64]int{}
	deadline := time.Now().Add(testwait.Hang)
	for i := 0; i < want; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil && time.Now().Before(deadline) {
			// A cluster electing leaders after a server died answers
			// nothing for a while; the ordered consumer resumes.
			i--
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("reading stored results %d/%d: %v", i, want, err)
		}
		rs, err := decodeBatch(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			counts[r.Index]++
		}
	}
	return counts
}

// collector gathers a Collect's results and counts them per index.
type collector struct {
	mu      sync.Mutex
	counts  map[uint64]int
	workers map[string]int
	c       engine.Counters
}

func newCollector() *collector {
	return &collector{counts: map[uint64]int{}, workers: map[string]int{}}
}

func (k *collector) emit(r job.Result) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.counts[r.Index]++
	k.workers[r.Worker]++
}

// opts is a Collect that counts its results into k.
func (k *collector) opts() CollectOptions { return CollectOptions{Counters: &k.c, Emit: k.emit} }

// submitCollecting submits sp through a new client of tc and collects it in
// the background into a new collector, until ctx is done; the channel gets
// Collect's error.
func (tc *testCluster) submitCollecting(t *testing.T, ctx context.Context, sp spec.Spec) (*Client, Record, *collector, <-chan error) {
	t.Helper()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, sp, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	errc := make(chan error, 1)
	go func() { errc <- c.Collect(ctx, rec.ID, k.opts()) }()
	return c, rec, k, errc
}

func (k *collector) have(i uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.counts[i] > 0
}

// exactlyOnce checks every index in [0, n) appears once in counts.
func exactlyOnce(t *testing.T, what string, counts map[uint64]int, n int) {
	t.Helper()
	missing, twice := 0, 0
	for i := 0; i < n; i++ {
		switch counts[uint64(i)] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(counts) != n {
		t.Fatalf("%s: %d indexes missing, %d more than once, %d distinct of %d", what, missing, twice, len(counts), n)
	}
}

// waitDone waits until k has seen at least frac of n results.
func waitDone(t *testing.T, k *collector, n int, frac float64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if float64(k.c.Done.Load()) >= frac*float64(n) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("only %d of %d results after %v", k.c.Done.Load(), n, d)
}

func TestKillWorkerMidSweep(t *testing.T) {
	t.Parallel()
	const n = 20000
	tc := newTestCluster(t)
	w1 := tc.worker("w1", 40, "")
	tc.worker("w2", 40, "")
	tc.worker("w3", 40, "")
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c, rec, k, errc := tc.submitCollecting(t, ctx, sleepSpec(n, 15))
	waitDone(t, k, n, 0.25, testwait.Hang)
	w1.kill() // with tasks in hand: they come back after AckWait
	if err := <-errc; err != nil {
		t.Fatalf("collect: %v", err)
	}
	exactlyOnce(t, "submitter", k.counts, n)
	exactlyOnce(t, "stored on the server", storedCounts(t, ctx, c, rec.ID), n)
	if len(k.workers) < 2 {
		t.Errorf("results came from %v, want several workers", k.workers)
	}
	t.Logf("results per worker: %v", k.workers)
}

func TestRestartServerMidSweep(t *testing.T) {
	t.Parallel()
	const n = 20000
	tc := newTestCluster(t)
	tc.worker("w1", 50, "")
	tc.worker("w2", 50, "")
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c, rec, k, errc := tc.submitCollecting(t, ctx, sleepSpec(n, 15))
	waitDone(t, k, n, 0.3, testwait.Hang)
	tc.server.kill()
	// Down for a while: a span of the scenario, not a wait for an event (a
	// busy machine only makes the outage longer).
	time.Sleep(500 * time.Millisecond)
	tc.startServer() // same store, same port
	if err := <-errc; err != nil {
		t.Fatalf("collect: %v", err)
	}
	exactlyOnce(t, "submitter", k.counts, n)
	exactlyOnce(t, "stored on the server", storedCounts(t, ctx, c, rec.ID), n)
}

func TestReattach(t *testing.T) {
	t.Parallel()
	const n = 20000
	tc := newTestCluster(t)
	tc.worker("w1", 60, "")
	tc.worker("w2", 60, "")
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, sleepSpec(n, 10), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := newCollector()
	cctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Collect(cctx, rec.ID, CollectOptions{Counters: &first.c, Emit: first.emit}) }()
	waitDone(t, first, n, 0.3, testwait.Hang)
	stop() // the submitter goes away; the sweep goes on
	if err := <-errc; err != context.Canceled {
		t.Fatalf("collect after cancel: %v, want context.Canceled", err)
	}
	had := len(first.counts)
	time.Sleep(300 * time.Millisecond) // the sweep runs on unwatched for a while (a span, not a wait)

	// Re-attach with a fresh connection, skipping what the first run kept.
	second := newCollector()
	if err := tc.client(ctx).Collect(ctx, rec.ID, CollectOptions{Have: first.have, Counters: &second.c, Emit: second.emit}); err != nil {
		t.Fatal(err)
	}
	all := map[uint64]int{}
	for i, v := range first.counts {
		all[i] += v
	}
	for i, v := range second.counts {
		all[i] += v
	}
	exactlyOnce(t, "both attachments", all, n)
	if got := second.c.Skipped.Load(); got != int64(had) {
		t.Errorf("re-attach skipped %d already held, want %d", got, had)
	}
	if had == 0 || len(second.counts) == 0 {
		t.Errorf("first attachment got %d, second %d: want both > 0", had, len(second.counts))
	}
}

func TestWorkerLeavesKindItDoesNotAllow(t *testing.T) {
	t.Parallel()
	const n = 300
	tc := newTestCluster(t)
	refuser := tc.worker("refuser", 50, "exec,tcp")
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, sleepSpec(n, 1), SubmitOptions{TaskSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	refuser.waitLine(t, `is job kind "clustertest-sleep", not allowed here (--allow exec,tcp): leaving its tasks to other workers`, testwait.Hang)
	tc.worker("taker", 50, "clustertest-sleep")
	k := newCollector()
	if err := c.Collect(ctx, rec.ID, k.opts()); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "submitter", k.counts, n)
	if k.workers["refuser"] != 0 || k.workers["taker"] != n {
		t.Errorf("results per worker %v, want all from taker", k.workers)
	}
}
