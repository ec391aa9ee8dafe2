package cli_test

// Cluster mode end to end: a real `fanout server`, real `fanout worker`
// processes and a real submitter, all on 127.0.0.1. The sweeps are tcp
// connects to a port where nothing listens (refused at once), slowed by
// --rate so that there is time to kill a process mid-sweep.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
)

// bgProc is a fanout process running in the background of a test.
type bgProc struct {
	cmd            *exec.Cmd
	stdout, stderr string // file paths
	done           chan struct{}
	code           int
}

func startFanout(t *testing.T, env []string, args ...string) *bgProc {
	t.Helper()
	dir := t.TempDir()
	p := &bgProc{stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	so, err := os.Create(p.stdout)
	if err != nil {
		t.Fatal(err)
	}
	se, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(fanoutBin(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = so, se
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		so.Close()
		se.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("fanout %s\nstderr:\n%s", strings.Join(args, " "), p.errText())
		}
	})
	return p
}

func (p *bgProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *bgProc) errText() string { b, _ := os.ReadFile(p.stderr); return string(b) }

// wait waits for the process to exit and returns its exit code.
func (p *bgProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("fanout %v still running after %v; stderr:\n%s", p.cmd.Args[1:], d, p.errText())
		return -1
	}
}

// waitFor polls until cond is true.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not after %v", what, d)
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// testServer starts `fanout server` on a free loopback port.
func testServer(t *testing.T, extra ...string) (url string, srv *bgProc) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv = startFanout(t, nil, append([]string{"server", "--listen", addr, "--store", t.TempDir()}, extra...)...)
	waitFor(t, "server ready", testwait.Hang, func() bool { return strings.Contains(srv.errText(), "ready on") })
	return "nats://" + addr, srv
}

func testWorker(t *testing.T, url, name string, args ...string) *bgProc {
	t.Helper()
	w := startFanout(t, nil, append([]string{"worker", "--server", url, "--name", name, "--ack-wait", "2s"}, args...)...)
	waitFor(t, "worker "+name+" ready", testwait.Hang, func() bool { return strings.Contains(w.errText(), "pulling tasks") })
	return w
}

// refusedSweep is n targets on a port nothing listens on, rate-limited.
func refusedSweep(n int, rate string) []string {
	last := 0x7f000000 + n - 1
	return []string{"tcp", "-p", "1", "--rate", rate, "--progress", "never",
		fmt.Sprintf("127.0.0.0-127.%d.%d.%d", last>>16&255, last>>8&255, last&255)}
}

// checkOnce parses JSONL output and checks every index in [0, n) is there
// exactly once; it returns the results per worker.
func checkOnce(t *testing.T, out string, n int) map[string]int {
	t.Helper()
	seen := make(map[uint64]int, n)
	workers := map[string]int{}
	for _, r := range results(t, out) {
		seen[r.Index]++
		workers[r.Worker]++
	}
	missing, twice := 0, 0
	for i := 0; i < n; i++ {
		switch seen[uint64(i)] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(seen) != n {
		t.Fatalf("%d of %d indexes missing, %d more than once, %d distinct", missing, n, twice, len(seen))
	}
	return workers
}

func TestClusterKillWorkerMidSweep(t *testing.T) {
	t.Parallel()
	// 63 tasks of 128; --rate (per worker) spreads them over seconds, so
	// the kill lands mid-sweep. More targets at a higher rate take as long
	// and only cost CPU.
	const n = 8000
	url, _ := testServer(t)
	w1 := testWorker(t, url, "w1", "-c", "50")
	testWorker(t, url, "w2", "-c", "50")
	testWorker(t, url, "w3", "-c", "50")
	dir := t.TempDir()
	out, db := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "sweeps.db")
	sub := startFanout(t, nil, append(refusedSweep(n, "400"), "--server", url, "--db", db, "-o", "jsonl", "--output-file", out)...)
	waitFor(t, "a quarter of the results", testwait.Hang, func() bool { return countLines(out) >= n/4 })
	w1.kill()
	if code := sub.wait(t, testwait.Hang); code != 1 {
		t.Fatalf("exit %d, want 1 (every target refused); stderr:\n%s", code, sub.errText())
	}
	b, _ := os.ReadFile(out)
	workers := checkOnce(t, string(b), n)
	if len(workers) < 2 {
		t.Errorf("results per worker %v: want several", workers)
	}
	stored := fanout(t, "", "results", db, "-o", "jsonl")
	if stored.code != 0 {
		t.Fatalf("results: exit %d:\n%s", stored.code, stored.stderr)
	}
	checkOnce(t, stored.stdout, n) // the submitter's store: every target once
	if !strings.Contains(sub.errText(), fmt.Sprintf("%d targets in ", n)) || !strings.Contains(sub.errText(), fmt.Sprintf(": up 0, down %d", n)) {
		t.Errorf("summary missing or wrong:\n%s", sub.errText())
	}
}

func TestClusterSubmitterKilledThenAttach(t *testing.T) {
	t.Parallel()
	const n = 8000 // as in TestClusterKillWorkerMidSweep
	url, _ := testServer(t)
	testWorker(t, url, "w1", "-c", "50")
	testWorker(t, url, "w2", "-c", "50")
	dir := t.TempDir()
	out, db := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "sweeps.db")
	sub := startFanout(t, nil, append(refusedSweep(n, "480"), "--server", url, "--db", db, "-o", "jsonl", "--output-file", out)...)
	waitFor(t, "a third of the results", testwait.Hang, func() bool { return countLines(out) >= n/3 })
	sub.kill()
	var id string
	sc := bufio.NewScanner(strings.NewReader(sub.errText()))
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "fanout: sweep %s submitted", &id); err == nil {
			break
		}
	}
	if id == "" {
		t.Fatalf("no sweep id in the submitter's stderr:\n%s", sub.errText())
	}
	// The sweep went on without its submitter. Attaching with the same
	// store continues its record there and streams only what it lacks.
	r := fanout(t, "", "attach", "--server", url, id, "--db", db, "-o", "jsonl", "--progress", "never")
	if r.code != 1 {
		t.Fatalf("attach: exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "continuing sweep 1 of "+db) {
		t.Errorf("attach did not continue the submitter's sweep in the store:\n%s", r.stderr)
	}
	if got := len(results(t, r.stdout)); got == 0 || got >= n {
		t.Errorf("attach streamed %d results, want only those the store lacked (0 < k < %d)", got, n)
	}
	stored := fanout(t, "", "results", db, "-o", "jsonl")
	if stored.code != 0 {
		t.Fatalf("results: exit %d:\n%s", stored.code, stored.stderr)
	}
	checkOnce(t, stored.stdout, n)

	// Without a store, attach replays the whole sweep, each target once.
	all := fanout(t, "", "attach", "--server", url, id, "-o", "jsonl", "--progress", "never")
	checkOnce(t, all.stdout, n)
}

func TestClusterDetachStatusAndAllow(t *testing.T) {
	t.Parallel()
	const n = 2000
	url, _ := testServer(t)
	refuser := testWorker(t, url, "pinger", "--allow", "ping")
	r := fanout(t, "", append(refusedSweep(n, "0"), "--server", url, "--detach")...)
	if r.code != 0 {
		t.Fatalf("--detach: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, `no live worker runs job kind "tcp"`) {
		t.Errorf("--detach with only a ping worker: no warning that nothing will run it:\n%s", r.stderr)
	}
	waitFor(t, "the ping-only worker refusing tcp", testwait.Hang, func() bool {
		return strings.Contains(refuser.errText(), `is job kind "tcp", not allowed here (--allow ping): leaving its tasks to other workers`)
	})
	st := fanout(t, "", "status", "--server", url)
	if st.code != 0 || !strings.Contains(st.stdout, id) || !strings.Contains(st.stdout, "pinger") {
		t.Fatalf("status: exit %d, want the sweep %s and worker pinger listed:\n%s%s", st.code, id, st.stdout, st.stderr)
	}
	testWorker(t, url, "taker")
	a := fanout(t, "", "attach", "--server", url, id, "-o", "jsonl", "--progress", "never")
	if a.code != 1 {
		t.Fatalf("attach: exit %d, want 1; stderr:\n%s", a.code, a.stderr)
	}
	if w := checkOnce(t, a.stdout, n); w["taker"] != n {
		t.Errorf("results per worker %v: want all from taker", w)
	}
	st = fanout(t, "", "status", "--server", url)
	if !strings.Contains(st.stdout, "complete") {
		t.Errorf("status after the sweep, want it complete:\n%s", st.stdout)
	}
}

func TestClusterAuth(t *testing.T) {
	t.Parallel()
	// Beyond loopback without credentials: refused before listening.
	r := fanout(t, "", "server", "--listen", "0.0.0.0:0", "--store", t.TempDir())
	if r.code != 2 || !strings.Contains(r.stderr, "requires credentials") || !strings.Contains(r.stderr, "--gen-token") {
		t.Fatalf("server on 0.0.0.0 without credentials: exit %d, want 2 and how to create them:\n%s", r.code, r.stderr)
	}
	tok := strings.TrimSpace(fanout(t, "", "server", "--gen-token").stdout)
	if len(tok) != 64 {
		t.Fatalf("--gen-token printed %q, want 64 hex digits", tok)
	}
	url, _ := testServer(t, "--token", tok)
	if r := fanout(t, "", "status", "--server", url); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "authorization") {
		t.Fatalf("status without the token: exit %d, want an authorization error:\n%s", r.code, r.stderr)
	}
	if r := fanout(t, "", "status", "--server", url, "--token", tok); r.code != 0 {
		t.Fatalf("status with the token: exit %d:\n%s", r.code, r.stderr)
	}
	cmd := exec.Command(fanoutBin(t), "status", "--server", url)
	cmd.Env = append(os.Environ(), "FANOUT_TOKEN="+tok)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("status with FANOUT_TOKEN: %v\n%s", err, out)
	}
}

// An ssh sweep or watch submitted to a cluster runs with the workers' keys:
// the submitter needs none, and builds no ssh job that would look for them
// (a HOME without keys and no agent: submitted all the same).
func TestClusterSSHSubmitterNeedsNoKeys(t *testing.T) {
	t.Parallel()
	url, _ := testServer(t)
	env := []string{"HOME=" + t.TempDir(), "SSH_AUTH_SOCK="}
	for _, args := range [][]string{
		{"ssh", "--server", url, "--detach", "127.0.0.1", "--", "true"},
		{"watch", "ssh", "--every", "2s", "--server", url, "--detach", "127.0.0.1", "--", "true"},
	} {
		p := startFanout(t, env, args...)
		if code := p.wait(t, testwait.Hang); code != 0 {
			t.Errorf("fanout %s: exit %d, want 0 (submitted); stderr:\n%s", strings.Join(args, " "), code, p.errText())
		}
	}
}
