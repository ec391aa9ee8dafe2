package cli_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
)

// lsRow is the row of watch id in `fanout watch ls` output, split on blanks.
func lsRow(t *testing.T, url, id string) []string {
	t.Helper()
	ls := fanout(t, "", "watch", "ls", "--server", url)
	if ls.code != 0 {
		t.Fatalf("watch ls: exit %d: %s", ls.code, ls.stderr)
	}
	for _, l := range strings.Split(ls.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == id {
			return f
		}
	}
	t.Fatalf("watch ls: no row for %s:\n%s", id, ls.stdout)
	return nil
}

// TestClusterWatchCLI: fanout watch tcp --server --detach prints the watch's
// id and returns, the watch runs on the workers (watch events shows its
// changes, watch ls its rounds), watch stop ends it: its rounds stop. A
// watch followed in the foreground prints its changes and, interrupted,
// says it goes on in the cluster, where fanout attach follows it.
func TestClusterWatchCLI(t *testing.T) {
	t.Parallel()
	const n = 40
	url, _ := testServer(t)
	testWorker(t, url, "w1", "-c", "50")
	testWorker(t, url, "w2", "-c", "50")
	sub := fanout(t, "", "watch", "tcp", "-p", "1", "--every", "1s", "--timeout", "1s", "--server", url, "--detach", "127.0.0.1-40")
	if sub.code != 0 {
		t.Fatalf("watch --detach: exit %d: %s", sub.code, sub.stderr)
	}
	id := strings.TrimSpace(sub.stdout)
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("watch --detach printed %q, want its id", sub.stdout)
	}
	ev := startFanout(t, nil, "watch", "events", "--server", url, id, "-o", "jsonl", "--from-start")
	waitFor(t, "round 2's summary", testwait.Hang, func() bool { return strings.Contains(ev.errText(), "round 2:") })
	b, _ := os.ReadFile(ev.stdout)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != n {
		t.Fatalf("%d change lines, want %d (every target refused, once):\n%s", len(lines), n, b)
	}
	for _, l := range lines {
		var rec struct {
			Watch  string `json:"watch"`
			Round  uint64 `json:"round"`
			Change string `json:"change"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Watch != id || rec.Round != 1 || rec.Change != "down" || rec.Status != "down" {
			t.Errorf("change line %s: want watch %s round 1 down (%v)", l, id, err)
		}
	}
	ev.kill()
	if row := lsRow(t, url, id); row[len(row)-2] != "running" {
		t.Errorf("watch ls row %v: want running", row)
	}
	if st := fanout(t, "", "watch", "stop", "--server", url, id); st.code != 0 {
		t.Fatalf("watch stop: exit %d: %s", st.code, st.stderr)
	}
	row := lsRow(t, url, id)
	time.Sleep(3 * time.Second) // three intervals without a tick
	row2 := lsRow(t, url, id)
	if row2[len(row2)-2] != "stopped" || row2[4] != row[4] {
		t.Errorf("watch ls after stop: %v then %v: want stopped, the last round unchanged", row, row2)
	}

	// In the foreground: changes on stdout; SIGINT leaves the watch running.
	fg := startFanout(t, nil, "watch", "tcp", "-p", "1", "--every", "1s", "--timeout", "1s", "--server", url, "-o", "jsonl", "127.0.0.1-40")
	waitFor(t, "the first round's changes", testwait.Hang, func() bool { return countLines(fg.stdout) >= n })
	_ = fg.cmd.Process.Signal(syscall.SIGINT)
	if code := fg.wait(t, testwait.Hang); code != 130 {
		t.Errorf("interrupted: exit %d, want 130", code)
	}
	m := regexp.MustCompile(`watch (\S+) goes on in the cluster`).FindStringSubmatch(fg.errText())
	if m == nil {
		t.Fatalf("interrupted: no word of the watch going on:\n%s", fg.errText())
	}
	if row := lsRow(t, url, m[1]); row[len(row)-2] != "running" {
		t.Errorf("watch ls row %v: want running after the submitter left", row)
	}
	at := startFanout(t, nil, "attach", "--server", url, m[1])
	waitFor(t, "attach: a round line", testwait.Hang, func() bool { return strings.Contains(at.errText(), "40 targets, 0 up, 40 down") })
	at.kill()
	if st := fanout(t, "", "watch", "stop", "--server", url, m[1]); st.code != 0 {
		t.Fatalf("watch stop: exit %d: %s", st.code, st.stderr)
	}
}

// TestClusterWatchUsage: what a cluster watch does not take is a usage
// error (exit 2) before any connection.
func TestClusterWatchUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rounds", "3"}, "--rounds with --server"},
		{[]string{"--confirm", "2/3"}, "--confirm with --server"},
		{[]string{"--every", "1500ms"}, "whole seconds"},
		{[]string{"--every", "10s", "--retention", "5s"}, "--retention 5s"},
	} {
		args := append([]string{"watch", "tcp", "-p", "1", "--timeout", "1s", "--server", "nats://127.0.0.1:1"}, tc.args...)
		if !strings.Contains(strings.Join(tc.args, " "), "--every") {
			args = append(args, "--every", "2s")
		}
		r := fanout(t, "", append(args, "127.0.0.1")...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
