package icmp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
	"github.com/fanout/fanout/target"
)

func TestMain(m *testing.M) { lab.Main(m) }

// cidr4 lists the addresses of an IPv4 prefix as targets, indexed from base.
func cidr4(t testing.TB, prefix string, base uint64) []target.Target {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	a4 := p.Addr().As4()
	first := binary.BigEndian.Uint32(a4[:])
	n := uint64(1) << (32 - p.Bits())
	ts := make([]target.Target, n)
	for i := range n {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], first+uint32(i))
		ts[i] = target.Target{Index: base + i, Addr: netip.AddrFrom4(b)}
	}
	return ts
}

// sweepResult is what a batch returned, checked for the Batcher contract.
type sweepResult struct {
	byIndex map[uint64]job.Result
	wall    time.Duration
	up      int
	down    int
	errs    int
}

// runSweep feeds ts to j.RunBatch as the engine does (a target is sent only
// once a concurrency slot is free, the slot is freed when its Result comes)
// and checks that every target got exactly one Result.
func runSweep(t testing.TB, j *Job, ts []target.Target, concurrency int) sweepResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang) // only a hang reaches it
	defer cancel()
	in := make(chan target.Target, inBuf)
	sem := make(chan struct{}, concurrency)
	var (
		mu  sync.Mutex
		res = sweepResult{byIndex: make(map[uint64]job.Result, len(ts))}
	)
	go func() {
		defer close(in)
		for _, tg := range ts {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case in <- tg:
			case <-ctx.Done():
				return
			}
		}
	}()
	start := time.Now()
	err := j.RunBatch(ctx, in, job.BatchConfig{Concurrency: concurrency}, func(r job.Result) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := res.byIndex[r.Index]; dup {
			t.Errorf("index %d emitted twice", r.Index)
		}
		res.byIndex[r.Index] = r
		switch r.Status {
		case job.Up:
			res.up++
		case job.Down:
			res.down++
		default:
			res.errs++
		}
		<-sem
	})
	res.wall = time.Since(start)
	if err != nil {
		t.Fatalf("RunBatch: %v", err)
	}
	if len(res.byIndex) != len(ts) {
		t.Fatalf("got %d results for %d targets", len(res.byIndex), len(ts))
	}
	return res
}

var inBuf = 0

func newJob(t testing.TB, c Config) *Job {
	t.Helper()
	j, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestSipHashVectors(t *testing.T) {
	t.Parallel()
	// Reference vectors of SipHash-2-4, key 00..0f, message 00 01 02 ...
	const k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	cases := []struct {
		m    []uint64
		want uint64
	}{
		{nil, 0x726fdb47dd0e0e31},
		{[]uint64{0x0706050403020100}, 0x93f5f5799a932462},
		{[]uint64{0x0706050403020100, 0x0f0e0d0c0b0a0908}, 0x3f2acc7f57c29bdb},
	}
	for _, c := range cases {
		if got := siphash24(k0, k1, c.m, 8*len(c.m)); got != c.want {
			t.Errorf("siphash of %d bytes = %#x, want %#x", 8*len(c.m), got, c.want)
		}
	}
}

func TestEchoCheckValue(t *testing.T) {
	t.Parallel()
	k := key{1, 2}
	dst := netip.MustParseAddr("127.0.0.9")
	p := probe{index: 1 << 40, slot: 7, num: 2, sent: 12345}
	buf := k.marshal(make([]byte, icmpHeaderLen+minPayload), false, 99, 65535, p, dst)
	if checksum(buf) != 0 {
		t.Errorf("checksum does not verify")
	}
	e, ok := parseEcho(buf)
	if !ok || e.p != p || e.seq != 65535 || !k.valid(e, dst) {
		t.Fatalf("round trip: %+v ok=%v", e, ok)
	}
	tamper := []struct {
		name string
		edit func(b []byte)
		dst  netip.Addr
		k    key
	}{
		{"other address", func([]byte) {}, netip.MustParseAddr("127.0.0.10"), k},
		{"other key", func([]byte) {}, dst, key{1, 3}},
		{"index", func(b []byte) { b[8+7] ^= 1 }, dst, k},
		{"slot", func(b []byte) { b[8+11] ^= 1 }, dst, k},
		{"probe number", func(b []byte) { b[8+13] ^= 1 }, dst, k},
		{"send time", func(b []byte) { b[8+23] ^= 1 }, dst, k},
		{"sequence", func(b []byte) { b[7] ^= 1 }, dst, k},
		{"check value", func(b []byte) { b[8+31] ^= 1 }, dst, k},
	}
	for _, c := range tamper {
		b := append([]byte(nil), buf...)
		c.edit(b)
		if e, ok := parseEcho(b); ok && c.k.valid(e, c.dst) {
			t.Errorf("%s tampered: still verifies", c.name)
		}
	}
	if _, ok := parseEcho(buf[:icmpHeaderLen+minPayload-1]); ok {
		t.Errorf("short message parsed")
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	var r ring[int]
	next, want := 0, 0
	for round := range 50 {
		for range round * 7 {
			r.push(next)
			next++
		}
		for range round * 5 {
			if got := r.pop(); got != want {
				t.Fatalf("pop = %d, want %d", got, want)
			}
			want++
		}
	}
	if r.len() != next-want {
		t.Fatalf("len = %d, want %d", r.len(), next-want)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	bad := []Config{
		{Count: -1}, {Count: MaxCount + 1}, {Interval: -1}, {Timeout: -1}, {Rate: -1},
		{PayloadSize: 8}, {Socket: "packet"},
	}
	for _, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	j, err := job.New(Kind, []byte(`{"count":3,"interval_ns":200000000}`))
	if err != nil {
		t.Fatal(err)
	}
	c := j.(*Job).Config()
	if c.Count != 3 || c.Interval != 200*time.Millisecond || c.PayloadSize != minPayload {
		t.Errorf("registry rebuilt %+v", c)
	}
	if _, err := job.New(Kind, []byte(`{"count":"x"}`)); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("bad JSON error %v does not name the input", err)
	}
}

// Live /16: every host up, exactly, with more than 65,535 requests in flight
// (sequence numbers wrap).
func TestLiveSlash16(t *testing.T) {
	lab.Require(t)
	if os.Getenv("INBUF") != "" {
		inBuf = 1 << 16
	}
	j := newJob(t, Config{})
	ts := cidr4(t, "127.0.0.0/16", 0)
	res := runSweep(t, j, ts, 1<<17)
	if res.up != 65536 || res.down != 0 || res.errs != 0 {
		// The stats say whether the missing replies came late, were not
		// recognised, or never came.
		t.Fatalf("up %d down %d errors %d, want 65536 up; in %v, stats %+v", res.up, res.down, res.errs, res.wall, j.Stats())
	}
	st := j.Stats()
	if st.Sent != 65536 || st.Replies != 65536 {
		t.Errorf("stats %+v: want 65536 sent and replies", st)
	}
	for _, r := range res.byIndex {
		if r.Sent != 1 || r.Recv != 1 || r.RTT <= 0 || r.Addr != ts[r.Index].Addr.String() || r.Job != Kind {
			t.Fatalf("result %+v", r)
		}
	}
	t.Logf("/16 live in %v, stats %+v", res.wall, st)
}

// peakOverlap is the most Results whose Start..End overlap at one moment.
func peakOverlap(rs map[uint64]job.Result) int {
	type edge struct {
		at   time.Time
		step int
	}
	var es []edge
	for _, r := range rs {
		es = append(es, edge{r.Start, 1}, edge{r.End, -1})
	}
	sort.Slice(es, func(a, b int) bool {
		if !es[a].at.Equal(es[b].at) {
			return es[a].at.Before(es[b].at)
		}
		return es[a].step < es[b].step // an end before a start at the same instant
	})
	cur, peak := 0, 0
	for _, e := range es {
		cur += e.step
		peak = max(peak, cur)
	}
	return peak
}

// Dead /20: every host down after its timeout, waited out together, not
// one host after another.
func TestDeadSlash20(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	j := newJob(t, Config{Timeout: time.Second})
	res := runSweep(t, j, cidr4(t, "127.1.0.0/20", 0), 1<<16)
	if res.down != 4096 || res.up != 0 || res.errs != 0 {
		t.Fatalf("up %d down %d errors %d, want 4096 down", res.up, res.down, res.errs)
	}
	for _, r := range res.byIndex {
		if r.Class != job.ClassTimeout || r.Sent != 1 || r.Recv != 0 || r.Loss() != 1 {
			t.Fatalf("result %+v", r)
		}
	}
	// How soon is the machine's business; that the timeouts ran at once is
	// the job's: one after another, no two would overlap.
	if p := peakOverlap(res.byIndex); p < 2 {
		t.Errorf("at most %d targets waited at once: the timeouts ran one after another", p)
	}
	if res.wall < time.Second {
		t.Errorf("wall %v, shorter than the 1s timeout", res.wall)
	}
}

// A mixed list: live and dead addresses, IPv6, names that resolve and one
// that does not. The split must be exact.
func TestMixedList(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	var ts []target.Target
	ts = append(ts, cidr4(t, "127.0.3.0/24", 0)...)   // 256 up
	ts = append(ts, cidr4(t, "127.1.3.0/25", 256)...) // 128 down
	n := uint64(len(ts))
	ts = append(ts,
		target.Target{Index: n, Addr: netip.MustParseAddr("::1")},
		target.Target{Index: n + 1, Host: "localhost"},
		target.Target{Index: n + 2, Host: "no-such-host.invalid"},
		target.Target{Index: n + 3, Addr: netip.MustParseAddr("::ffff:127.0.0.7")},
	)
	j := newJob(t, Config{Timeout: time.Second})
	res := runSweep(t, j, ts, 1000)
	if res.up != 256+3 || res.down != 128 || res.errs != 1 {
		t.Fatalf("up %d down %d errors %d, want 259/128/1", res.up, res.down, res.errs)
	}
	if r := res.byIndex[n+2]; r.Class != job.ClassResolve || r.Host != "no-such-host.invalid" {
		t.Errorf("unresolvable name: %+v", r)
	}
	if r := res.byIndex[n+1]; r.Host != "localhost" || !strings.HasPrefix(r.Addr, "127.") && r.Addr != "::1" {
		t.Errorf("localhost: %+v", r)
	}
	if r := res.byIndex[n]; r.Status != job.Up || r.Addr != "::1" {
		t.Errorf("::1: %+v", r)
	}
	if r := res.byIndex[n+3]; r.Status != job.Up || r.Addr != "127.0.0.7" {
		t.Errorf("mapped address: %+v", r)
	}
}

// --count 3 on live targets: 3/3 received, 0% loss; on a dead one 0/3.
func TestCount(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	ts := cidr4(t, "127.0.9.0/26", 0)
	ts = append(ts, target.Target{Index: 64, Addr: netip.MustParseAddr("127.1.9.9")})
	j := newJob(t, Config{Count: 3, Interval: 200 * time.Millisecond, Timeout: time.Second, PayloadSize: 1000})
	res := runSweep(t, j, ts, 1000)
	for i, r := range res.byIndex {
		if i == 64 {
			if r.Status != job.Down || r.Sent != 3 || r.Recv != 0 || r.Class != job.ClassTimeout {
				t.Errorf("dead: %+v", r)
			}
			continue
		}
		if r.Status != job.Up || r.Sent != 3 || r.Recv != 3 || r.Loss() != 0 ||
			r.RTTMin <= 0 || r.RTTMin > r.RTTAvg || r.RTTAvg > r.RTTMax {
			t.Errorf("live: %+v", r)
		}
	}
	// Requests at 0, 200, 400 ms; the dead one's last waits 1s more: at
	// least 1.4s (a busy machine only makes it longer).
	if res.wall < 1400*time.Millisecond {
		t.Errorf("wall %v, want 1.4s or more", res.wall)
	}
}

// Two sweeps and a flood ping at once over the same hosts: each counts only
// its own replies, exactly.
func TestConcurrentSweepsDoNotMix(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	flood := exec.CommandContext(ctx, "ping", "-q", "-i", "0.002", "-c", "300", "127.0.5.1")
	if err := flood.Start(); err != nil {
		t.Skipf("ping: %v", err)
	}
	defer flood.Wait()
	ts := cidr4(t, "127.0.5.0/24", 0)
	ts = append(ts, cidr4(t, "127.1.5.0/28", 256)...)
	// A timeout long enough that a loaded machine delivers every reply in
	// time: the counts must be exact.
	cfg := Config{Count: 4, Interval: 100 * time.Millisecond, Timeout: time.Second}
	var wg sync.WaitGroup
	jobs := []*Job{newJob(t, cfg), newJob(t, cfg)}
	results := make([]sweepResult, 2)
	for k := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = runSweep(t, jobs[k], ts, 1000)
		}()
	}
	wg.Wait()
	for k, res := range results {
		if res.up != 256 || res.down != 16 {
			t.Errorf("sweep %d: up %d down %d, want 256/16", k, res.up, res.down)
		}
		for i, r := range res.byIndex {
			want := 4
			if i >= 256 {
				want = 0
			}
			if r.Sent != 4 || r.Recv != want {
				t.Errorf("sweep %d: %s sent %d recv %d, want 4/%d", k, r.Addr, r.Sent, r.Recv, want)
			}
		}
		st := jobs[k].Stats()
		if st.Sent != 272*4 || st.Replies != 256*4 || st.Duplicate != 0 || st.Late != 0 {
			t.Errorf("sweep %d stats %+v", k, st)
		}
		// Raw sockets see everyone's replies: the other sweep's and ping's
		// must have reached us and been refused.
		if raw := Check(SocketRaw) == nil; raw && st.Foreign == 0 {
			t.Errorf("sweep %d saw no foreign replies: %+v", k, st)
		}
	}
}

// ICMP errors quoting our request make the target down, class unreachable.
func TestUnreachable(t *testing.T) {
	lab.Require(t)
	withRejectRules(t) // sequential: it changes this binary's lab namespace
	// A timeout past testwait.Hang: had the targets waited for it rather
	// than for the ICMP error, runSweep would fail them as a hang.
	j := newJob(t, Config{Socket: SocketRaw, Timeout: 2 * testwait.Hang})
	res := runSweep(t, j, cidr4(t, "127.2.0.0/28", 0), 100)
	if res.down != 16 {
		t.Fatalf("down %d, want 16", res.down)
	}
	for _, r := range res.byIndex {
		if r.Class != job.ClassUnreachable || !strings.Contains(r.Error, "host unreachable") {
			t.Errorf("result %+v", r)
		}
	}
	if st := j.Stats(); st.Unreachable != 16 {
		t.Errorf("stats %+v", st)
	}
}

// Unprivileged ICMP datagram sockets, forced while root.
func TestDgramSocket(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	if err := Check(SocketDgram); err != nil {
		t.Skipf("datagram ICMP sockets unavailable: %v", err)
	}
	j := newJob(t, Config{Socket: SocketDgram, Count: 2, Interval: 100 * time.Millisecond, Timeout: time.Second})
	ts := cidr4(t, "127.0.7.0/24", 0)
	ts = append(ts, cidr4(t, "127.1.7.0/28", 256)...)
	ts = append(ts, target.Target{Index: 272, Addr: netip.MustParseAddr("::1")})
	res := runSweep(t, j, ts, 1000)
	if res.up != 257 || res.down != 16 {
		t.Fatalf("up %d down %d, want 257/16", res.up, res.down)
	}
	if st := j.Stats(); st.Replies != 257*2 || st.Sent != 273*2 {
		t.Errorf("stats %+v", st)
	}
}

const childEnv = "FANOUT_ICMP_TEST_CHILD"

// The same sweep as user nobody: raw sockets refused, datagram sockets used.
func TestUnprivilegedUser(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	if os.Getenv(childEnv) != "" {
		t.Skip("in the child")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a private temp dir; nobody must reach it.
	dir := t.TempDir()
	bin := dir + "/icmp.test"
	// Copied by cp, not written from here: a parallel test's fork would
	// inherit our write descriptor until its exec, and running the copy
	// meanwhile fails with "text file busy" (more often the busier the
	// machine).
	if out, err := exec.Command("cp", self, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		bin, "-test.run=^TestUnprivilegedChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnprivilegedChild") {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
}

func TestUnprivilegedChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestUnprivilegedUser as user nobody")
	}
	if os.Geteuid() == 0 {
		t.Fatal("child runs as root")
	}
	err := Check(SocketRaw)
	if err == nil || !strings.Contains(err.Error(), "CAP_NET_RAW") || !strings.Contains(err.Error(), "setcap cap_net_raw+ep") {
		t.Fatalf("raw socket as nobody: %v", err)
	}
	if err := Check(SocketAuto); err != nil {
		t.Fatalf("automatic socket as nobody: %v", err)
	}
	j := newJob(t, Config{Timeout: time.Second})
	ts := append(cidr4(t, "127.0.8.0/24", 0), cidr4(t, "127.1.8.0/28", 256)...)
	res := runSweep(t, j, ts, 1000)
	if res.up != 256 || res.down != 16 {
		t.Fatalf("up %d down %d, want 256/16", res.up, res.down)
	}
}

// With ping_group_range closed and no privilege, one error says what to do.
func TestNoSocketError(t *testing.T) {
	t.Parallel()
	e := &SocketError{Family: "IPv4", Raw: os.ErrPermission, Dgram: os.ErrPermission, GID: 1000, PingLow: 1, PingHigh: 0}
	msg := e.Error()
	for _, want := range []string{"root", "setcap cap_net_raw+ep", "net.ipv4.ping_group_range", `"1 0"`, "group 1000"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

// Run (one target) goes through the same machinery.
func TestRun(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	j := newJob(t, Config{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	if r := j.Run(ctx, target.Target{Index: 5, Addr: netip.MustParseAddr("127.0.0.1")}); r.Status != job.Up || r.Index != 5 || r.Recv != 1 {
		t.Errorf("live: %+v", r)
	}
	if r := j.Run(ctx, target.Target{Index: 6, Addr: netip.MustParseAddr("127.1.0.1")}); r.Status != job.Down || r.Class != job.ClassTimeout {
		t.Errorf("dead: %+v", r)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if r := j.Run(cctx, target.Target{Index: 7, Addr: netip.MustParseAddr("127.1.0.1")}); r.Status == job.Up {
		t.Errorf("canceled: %+v", r)
	}
}

// rejectRules make 127.2.0.0/28 answer echo requests with host unreachable.
const rejectRules = `table inet fanouticmptest {
	chain input {
		type filter hook input priority -10; policy accept;
		ip daddr 127.2.0.0/28 icmp type echo-request reject with icmp type host-unreachable
	}
}
`

// withRejectRules loads rejectRules into this test binary's own lab
// namespace for the duration of the (sequential) test.
func withRejectRules(t *testing.T) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rejectRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", "fanouticmptest").Run() })
}

func TestConformance(t *testing.T) {
	lab.Require(t)
	withRejectRules(t)
	j := newJob(t, Config{Count: 2, Interval: 50 * time.Millisecond})
	jobtest.Run(t, jobtest.Suite{
		Job:     j,
		Up:      target.Target{Index: 1, Addr: netip.MustParseAddr("127.0.0.1")},
		Slow:    target.Target{Index: 2, Addr: netip.MustParseAddr("127.1.0.1")},
		Timeout: time.Second,
		Failures: []jobtest.Expect{
			{Name: "dead", Target: target.Target{Index: 3, Addr: netip.MustParseAddr("127.1.0.2")}, Status: job.Down, Class: job.ClassTimeout},
			{Name: "unreachable", Target: target.Target{Index: 4, Addr: netip.MustParseAddr("127.2.0.1")}, Status: job.Down, Class: job.ClassUnreachable},
			{Name: "resolve", Target: target.Target{Index: 5, Host: "no-such-host.invalid"}, Status: job.Error, Class: job.ClassResolve},
			{Name: "ipv6", Target: target.Target{Index: 6, Addr: netip.MustParseAddr("::1")}, Status: job.Up},
		},
	})
}

// More than 65,535 requests in flight: a dead /16 waits out its timeout
// while a live /17 reuses every echo sequence number it holds. Payload
// validation, not the sequence, tells them apart: the split is exact.
func TestSequenceWrap(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	ts := append(cidr4(t, "127.1.0.0/16", 0), cidr4(t, "127.0.128.0/17", 1<<16)...)
	j := newJob(t, Config{Timeout: 3 * time.Second})
	res := runSweep(t, j, ts, 1<<18)
	if res.down != 65536 || res.up != 32768 {
		t.Fatalf("up %d down %d, want 32768 up and 65536 down", res.up, res.down)
	}
	for i, r := range res.byIndex {
		if (i >= 1<<16) != (r.Status == job.Up) {
			t.Fatalf("index %d (%s): %s", i, r.Addr, r.Status)
		}
	}
	if st := j.Stats(); st.Sent != 98304 || st.Replies != 32768 {
		t.Errorf("stats %+v", st)
	}
}

// testSweep is a sweep with one target in flight, for classifying messages
// without sockets.
func testSweep(t *testing.T, count int, addr netip.Addr) (*sweep, *[]job.Result) {
	t.Helper()
	j := newJob(t, Config{Count: count})
	var emitted []job.Result
	s := &sweep{j: j, count: count, interval: int64(time.Second), timeout: int64(time.Second),
		payload: minPayload, key: key{7, 9}, id: 4242, epoch: time.Now(), stats: &j.stats,
		words: 1, kick: make(chan struct{}, 1), done: make(chan struct{}),
		emit: func(r job.Result) { emitted = append(emitted, r) }}
	s.in.wake = make(chan struct{}, 1)
	i := s.alloc()
	s.slots[i] = slot{t: target.Target{Index: 77, Addr: addr}, addr: addr, live: true}
	return s, &emitted
}

// ipv4Packet wraps an ICMP message in an IPv4 header from src to dst.
func ipv4Packet(src, dst netip.Addr, icmpMsg []byte) []byte {
	h := make([]byte, 20, 20+len(icmpMsg))
	h[0], h[8], h[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(icmpMsg)))
	s4, d4 := src.As4(), dst.As4()
	copy(h[12:], s4[:])
	copy(h[16:], d4[:])
	return append(h, icmpMsg...)
}

// Every kind of message is classified, and only the first valid reply to
// each request in time counts.
func TestClassify(t *testing.T) {
	t.Parallel()
	probed := netip.MustParseAddr("127.0.0.5")
	other := netip.MustParseAddr("127.0.0.6")
	s, emitted := testSweep(t, 2, probed)
	raw := &conn{raw: true}
	batch := s.request(0, nil)
	batch = s.request(0, batch)
	s.stamp(batch)
	t0 := batch[0].p.sent
	reply := func(o outgoing, k key) []byte {
		b := k.marshal(make([]byte, icmpHeaderLen+minPayload), false, s.id, o.seq, o.p, o.addr)
		b[0] = v4EchoReply
		return b
	}
	feed := func(src netip.Addr, pkt []byte, at int64) {
		t.Helper()
		m := ipv4.Message{Buffers: [][]byte{pkt}, N: len(pkt)}
		ev, ok := s.parse(raw, &m, at)
		if ok {
			*emitted = append(*emitted, s.apply(ev, nil)...)
		}
	}
	r0, r1 := reply(batch[0], s.key), reply(batch[1], s.key)
	steps := []struct {
		name string
		src  netip.Addr
		pkt  []byte
		at   int64
		want Stats
	}{
		{"forged with another key", probed, reply(batch[0], key{1, 1}), t0 + 4000, Stats{Foreign: 1}},
		{"from another address", other, r0, t0 + 4000, Stats{Foreign: 1, WrongSource: 1}},
		{"valid", probed, r0, t0 + 4000, Stats{Foreign: 1, WrongSource: 1, Replies: 1}},
		{"duplicate", probed, r0, t0 + 6000, Stats{Foreign: 1, WrongSource: 1, Replies: 1, Duplicate: 1}},
		{"after its timeout", probed, r1, t0 + int64(time.Second) + 1, Stats{Foreign: 1, WrongSource: 1, Replies: 1, Duplicate: 1, Late: 1}},
		{"another id", probed, func() []byte { b := append([]byte(nil), r1...); b[4] ^= 1; return b }(), t0 + 3000,
			Stats{Foreign: 2, WrongSource: 1, Replies: 1, Duplicate: 1, Late: 1}},
	}
	for _, st := range steps {
		feed(st.src, ipv4Packet(st.src, probed, st.pkt), st.at)
		if got := s.j.Stats(); got != st.want {
			t.Fatalf("%s: stats %+v, want %+v", st.name, got, st.want)
		}
	}
	if len(*emitted) != 0 {
		t.Fatalf("target finished early: %+v", *emitted)
	}
	// The reaper times the second request out: 1 of 2 received, up.
	s.mu.Lock()
	s.timeouts.pop() // the first request's, answered
	to := s.timeouts.pop()
	testSet(s.resolvedBits(to.slot), to.num)
	*emitted = append(*emitted, s.settle(to.slot, nil)...)
	s.mu.Unlock()
	if len(*emitted) != 1 {
		t.Fatalf("emitted %d results", len(*emitted))
	}
	r := (*emitted)[0]
	if r.Status != job.Up || r.Sent != 2 || r.Recv != 1 || r.Index != 77 || r.RTT != 4000 {
		t.Errorf("result %+v", r)
	}
	// The slot is free: a reply to the finished target is late, not counted.
	feed(probed, ipv4Packet(probed, probed, r1), t0+3000)
	if got := s.j.Stats(); got.Late != 2 || got.Replies != 1 {
		t.Errorf("after the target finished: %+v", got)
	}
}

// sentRequest is a test sweep of one target to probed whose request is
// sent (on paper): the request, and its ICMP message.
func sentRequest(t *testing.T, probed netip.Addr) (*sweep, outgoing, []byte) {
	t.Helper()
	s, _ := testSweep(t, 1, probed)
	batch := s.request(0, nil)
	s.stamp(batch)
	o := batch[0]
	return s, o, s.key.marshal(make([]byte, icmpHeaderLen+minPayload), probed.Is6(), s.id, o.seq, o.p, o.addr)
}

// v4Unreach is an IPv4 packet from router with an ICMP destination
// unreachable (host unreachable) that quotes quoted, as a raw socket reads it.
func v4Unreach(router netip.Addr, quoted []byte) ipv4.Message {
	pkt := ipv4Packet(router, router, append([]byte{v4Unreachable, 1, 0, 0, 0, 0, 0, 0}, quoted...))
	return ipv4.Message{Buffers: [][]byte{pkt}, N: len(pkt)}
}

// An ICMP error quoting our request makes its target down, unreachable.
func TestClassifyUnreachable(t *testing.T) {
	t.Parallel()
	probed := netip.MustParseAddr("127.0.0.5")
	router := netip.MustParseAddr("127.0.0.1")
	s, o, req := sentRequest(t, probed)
	quoted := ipv4Packet(router, probed, req)
	m := v4Unreach(router, quoted)
	ev, ok := s.parse(&conn{raw: true}, &m, o.p.sent+2000)
	if !ok {
		t.Fatal("error message not recognized")
	}
	out := s.apply(ev, nil)
	if len(out) != 1 || out[0].Status != job.Down || out[0].Class != job.ClassUnreachable ||
		out[0].Error != "host unreachable from 127.0.0.1" {
		t.Fatalf("results %+v", out)
	}
	// A forged error (quoting a request we did not send) is foreign.
	bad := append([]byte(nil), quoted...)
	bad[20+8+5] ^= 1
	m = v4Unreach(router, bad)
	if _, ok := s.parse(&conn{raw: true}, &m, 3000); ok {
		t.Error("forged error recognized")
	}
}

// Rate bounds echo requests per second.
func TestRate(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	j := newJob(t, Config{Rate: 2000, Count: 2, Interval: 10 * time.Millisecond, Timeout: time.Second})
	res := runSweep(t, j, cidr4(t, "127.0.10.0/24", 0), 1000)
	if res.up != 256 {
		t.Fatalf("up %d, want 256", res.up)
	}
	// 512 requests at 2000/s, after a burst of 20: 0.25s at least (a busy
	// machine only makes it longer).
	if res.wall < 220*time.Millisecond {
		t.Errorf("512 requests at 2000/s took %v, less than the rate allows", res.wall)
	}
}

// The same over IPv6: an ICMPv6 error quoting our request.
func TestClassifyUnreachableV6(t *testing.T) {
	t.Parallel()
	probed := netip.MustParseAddr("fd00::5")
	router := netip.MustParseAddr("fd00::1")
	s, o, req := sentRequest(t, probed)
	quoted := make([]byte, 40, 40+len(req))
	quoted[0], quoted[6], quoted[7] = 0x60, 58, 64
	src16, dst16 := router.As16(), probed.As16()
	copy(quoted[8:], src16[:])
	copy(quoted[24:], dst16[:])
	quoted = append(quoted, req...)
	msg := append([]byte{v6Unreachable, 3, 0, 0, 0, 0, 0, 0}, quoted...)
	m := ipv4.Message{Buffers: [][]byte{msg}, N: len(msg), Addr: &net.IPAddr{IP: router.AsSlice()}}
	ev, ok := s.parse(&conn{raw: true, v6: true}, &m, o.p.sent+2000)
	if !ok {
		t.Fatal("ICMPv6 error not recognized")
	}
	out := s.apply(ev, nil)
	if len(out) != 1 || out[0].Class != job.ClassUnreachable || out[0].Error != "host unreachable from fd00::1" {
		t.Fatalf("results %+v", out)
	}
}

// More requests per target than one bitset word holds.
func TestManyRequests(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	ts := append(cidr4(t, "127.0.11.0/30", 0), target.Target{Index: 4, Addr: netip.MustParseAddr("127.1.11.1")})
	j := newJob(t, Config{Count: 130, Interval: time.Millisecond, Timeout: time.Second})
	res := runSweep(t, j, ts, 100)
	for i, r := range res.byIndex {
		want := 130
		if i == 4 {
			want = 0
		}
		if r.Sent != 130 || r.Recv != want {
			t.Errorf("%s: %d/%d received, want %d/130", r.Addr, r.Recv, r.Sent, want)
		}
	}
	if st := j.Stats(); st.Duplicate != 0 || st.Late != 0 || st.Replies != 4*130 {
		t.Errorf("stats %+v", st)
	}
}

// Sweeps one after another on one Job (a watch's rounds) reuse the tables
// the first grew (spare.go): each still gets every reply, and no reply of
// a sweep is taken for another's.
func TestRepeatedSweepsReuseTables(t *testing.T) {
	lab.Require(t)
	j := newJob(t, Config{})
	ts := cidr4(t, "127.0.0.0/18", 0)
	for round := range 6 {
		before := j.Stats()
		res := runSweep(t, j, ts, 1<<14)
		st := j.Stats()
		if res.up != len(ts) {
			t.Errorf("sweep %d: up %d down %d errors %d, want %d up; stats %+v", round, res.up, res.down, res.errs, len(ts), st)
		}
		if got := st.Replies - before.Replies; got != uint64(len(ts)) {
			t.Errorf("sweep %d: %d replies counted, want %d; stats %+v", round, got, len(ts), st)
		}
	}
	j.spareMu.Lock()
	defer j.spareMu.Unlock()
	if j.spare == nil || cap(j.spare.slots) == 0 {
		t.Errorf("no tables left for the next sweep")
	}
}
