package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
)

// aliveLines checks that text output is one "ADDR is alive (...)" line per
// host, each host once, and returns the hosts.
func aliveLines(t *testing.T, stdout string) map[string]bool {
	t.Helper()
	hosts := make(map[string]bool)
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if line == "" {
			continue
		}
		host, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(rest, "is alive (") {
			t.Fatalf("not an alive line: %q", line)
		}
		if hosts[host] {
			t.Fatalf("host %s printed twice", host)
		}
		hosts[host] = true
	}
	return hosts
}

// Live /16: exactly 65,536 alive lines (fping -a's form, countable with
// wc -l), nothing down.
func TestPingLiveSlash16(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	r := fanout(t, "", "ping", "-q", "--alive", "--all-addresses", "-o", "text", "127.0.0.0/16")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0; stderr: %s", r.code, r.stderr)
	}
	if n := len(aliveLines(t, r.stdout)); n != 65536 {
		t.Fatalf("%d alive, want 65536", n)
	}
	if r.stderr != "" {
		t.Errorf("-q printed on stderr: %s", r.stderr)
	}
}

// Dead /20: exactly 4,096 down after about one timeout, not hosts x timeout.
func TestPingDeadSlash20(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	r := fanout(t, "", "ping", "--timeout", "1s", "--all-addresses", "-o", "jsonl", "127.1.0.0/20")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", r.code, r.stderr)
	}
	rs := results(t, r.stdout)
	if len(rs) != 4096 {
		t.Fatalf("%d results, want 4096", len(rs))
	}
	for _, x := range rs {
		if x.Status != job.Down || x.Class != job.ClassTimeout || x.Sent != 1 || x.Recv != 0 || x.Job != "ping" {
			t.Fatalf("result %+v, want down/timeout 0/1", x)
		}
	}
	if !strings.Contains(r.stderr, "down 4096 (timeout 4096)") {
		t.Errorf("summary: %s", r.stderr)
	}
	// That the timeouts are waited out together, not one after another, is
	// job/icmp's TestDeadSlash20; how soon is the machine's business.
	r = fanout(t, "", "ping", "-q", "--dead", "--timeout", "1s", "--all-addresses", "127.1.0.0/24", "127.0.0.0/24")
	if n := strings.Count(r.stdout, " is unreachable (timeout"); n != 256 || strings.Count(r.stdout, "\n") != 256 {
		t.Errorf("--dead printed %d unreachable lines:\n%s", n, r.stdout)
	}
}

// A mixed list gives exactly the right split.
func TestPingMixed(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	r := fanout(t, "", "ping", "--timeout", "1s", "--all-addresses", "-o", "jsonl",
		"127.0.2.0/24", "127.1.2.0/25", "::1", "localhost", "127.0.3.1-10", "--exclude", "127.0.3.5")
	rs := results(t, r.stdout)
	var up, down int
	for _, x := range rs {
		switch x.Status {
		case job.Up:
			up++
		case job.Down:
			down++
		default:
			t.Errorf("result %+v", x)
		}
	}
	if up != 256+2+9 || down != 128 || len(rs) != 395 {
		t.Fatalf("up %d down %d of %d, want 267 up, 128 down", up, down, len(rs))
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if h := byHost(rs); h["::1"].Status != job.Up || h["localhost"].Status != job.Up || h["localhost"].Addr == "" {
		t.Errorf("::1 %+v, localhost %+v", h["::1"], h["localhost"])
	}
}

// --count 3 on live targets: 3/3 received, 0% loss, RTT min/avg/max; the
// text line says so.
func TestPingCount(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	begin := time.Now()
	r := fanout(t, "", "ping", "--count", "3", "--interval", "200ms", "--timeout", "1s", "-o", "jsonl", "127.0.4.1-20")
	wall := time.Since(begin)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr %s", r.code, r.stderr)
	}
	rs := results(t, r.stdout)
	if len(rs) != 20 {
		t.Fatalf("%d results", len(rs))
	}
	for _, x := range rs {
		if x.Sent != 3 || x.Recv != 3 || x.Loss() != 0 || x.RTTMin <= 0 || x.RTTMin > x.RTTAvg || x.RTTAvg > x.RTTMax {
			t.Errorf("result %+v, want 3/3 with min <= avg <= max", x)
		}
	}
	if wall < 400*time.Millisecond {
		t.Errorf("3 requests 200ms apart took %v", wall)
	}
	r = fanout(t, "", "ping", "-q", "--count", "2", "--interval", "100ms", "--timeout", "1s", "127.0.4.1", "127.1.4.1")
	if !strings.Contains(r.stdout, "127.0.4.1 is alive (") || !strings.Contains(r.stdout, "2/2 received)") ||
		!strings.Contains(r.stdout, "127.1.4.1 is unreachable (timeout, 0/2 received)") {
		t.Errorf("text:\n%s", r.stdout)
	}
}

// Two fanout pings and a ping(8) at once over the same hosts: neither counts
// the others' replies; sent and received are exact.
func TestPingConcurrentProcesses(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	bin := fanoutBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	other := exec.CommandContext(ctx, "ping", "-q", "-i", "0.01", "-c", "100", "127.0.6.1")
	if err := other.Start(); err != nil {
		t.Skipf("ping: %v", err)
	}
	defer other.Wait()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for k := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, _ := exec.CommandContext(ctx, bin, "ping", "--count", "4", "--interval", "100ms",
				"--timeout", "1s", "--all-addresses", "-o", "jsonl", "127.0.6.0/24", "127.1.6.0/28").Output()
			outs[k] = string(out)
		}()
	}
	wg.Wait()
	for k, out := range outs {
		rs := results(t, out)
		if len(rs) != 272 {
			t.Fatalf("sweep %d: %d results", k, len(rs))
		}
		for _, x := range rs {
			want := 4
			if strings.HasPrefix(x.Addr, "127.1.") {
				want = 0
			}
			if x.Sent != 4 || x.Recv != want {
				t.Errorf("sweep %d: %s sent %d recv %d, want 4/%d", k, x.Addr, x.Sent, x.Recv, want)
			}
		}
	}
}

// Bad ping flags are usage errors (exit 2) before any traffic.
func TestPingUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--count", "0"}, "--count 0"},
		{[]string{"--interval", "0s"}, "--interval"},
		{[]string{"--timeout", "0s"}, "--timeout"},
		{[]string{"--retries", "2"}, "--count"},
		{[]string{"--socket", "packet"}, `"packet"`},
		{[]string{"--payload-size", "8"}, "--payload-size 8"},
		{[]string{"--count", "70000"}, "count 70000"},
	}
	for _, c := range cases {
		r := fanout(t, "", append(append([]string{"ping"}, c.args...), "127.0.0.1")...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("ping %v: exit %d, stderr %q; want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if r := fanout(t, "", "ping"); r.code != 2 || !strings.Contains(r.stderr, "no targets") {
		t.Errorf("no targets: exit %d, stderr %q", r.code, r.stderr)
	}
}

// asNobody copies the fanout binary where user nobody can run it and returns
// a command running it as nobody, without capabilities.
func asNobody(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found: cannot drop privileges")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Copied by cp, not written from here: a parallel test's fork would
	// inherit our write descriptor until its exec, and running the copy
	// meanwhile fails with "text file busy" (more often the busier the
	// machine).
	bin := filepath.Join(dir, "fanout")
	if out, err := exec.Command("cp", fanoutBin(t), bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", bin}, args...)...)
}

// As user nobody: raw sockets are refused, the unprivileged datagram socket
// (the lab opens net.ipv4.ping_group_range) sweeps exactly as root does.
func TestPingUnprivileged(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	out, err := asNobody(t, "ping", "--timeout", "1s", "--all-addresses", "-o", "jsonl", "127.0.7.0/24", "127.1.7.0/28", "::1").Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("as nobody: %v (want exit 1): %s", err, out)
	}
	var up, down int
	for _, x := range results(t, string(out)) {
		if x.Status == job.Up && x.Recv == 1 {
			up++
		} else if x.Status == job.Down && x.Class == job.ClassTimeout {
			down++
		}
	}
	if up != 257 || down != 16 {
		t.Errorf("as nobody: up %d down %d, want 257/16", up, down)
	}
	out, err = asNobody(t, "ping", "--socket", "raw", "127.0.0.1").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "CAP_NET_RAW") {
		t.Errorf("raw socket as nobody: %v: %s", err, out)
	}
}

// With ping_group_range closed, user nobody gets one error naming the three
// fixes, exit 2, and nothing is sent.
func TestPingNoPermission(t *testing.T) {
	lab.Require(t)
	// Not parallel: it closes ping_group_range in this binary's namespace.
	const path = "/proc/sys/net/ipv4/ping_group_range"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	if err := os.WriteFile(path, []byte("1 0\n"), 0o644); err != nil {
		t.Skip(err)
	}
	defer os.WriteFile(path, old, 0o644)
	out, err := asNobody(t, "ping", "127.0.0.1").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("want exit 2, got %v: %s", err, out)
	}
	msg := string(out)
	for _, want := range []string{"run as root", "setcap cap_net_raw+ep", "sysctl -w net.ipv4.ping_group_range", "group 65534"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(strings.TrimSpace(msg), "\n") > 1 {
		t.Errorf("want one error (and the usage hint), got:\n%s", msg)
	}
}
