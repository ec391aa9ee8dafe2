package cli_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
		{[]string{"--rounds", "1000000"}, "--rounds 1000000 with --server and --every 2s: at most 302398"},
		{[]string{"--confirm", "2/3", "--detach"}, "--detach with --confirm"},
		{[]string{"--db", "x.db", "--detach"}, "--detach with --confirm"},
		{[]string{"--confirm", "3/2"}, "--confirm: confirm \"3/2\""},
		{[]string{"--on", "dc"}, `--on: tags "dc": "dc": want KEY=VALUE`},
		{[]string{"--on", "dc=a,dc=b"}, `key "dc" given twice`},
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

// TestClusterTagsUsage: bad --tags and --on are usage errors (exit 2)
// before any connection; --on needs --server.
func TestClusterTagsUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--server", "nats://127.0.0.1:1", "--tags", "dc"}, `--tags: tags "dc": "dc": want KEY=VALUE`},
		{[]string{"worker", "--server", "nats://127.0.0.1:1", "--tags", "dc=par is"}, "want KEY=VALUE"},
		{[]string{"tcp", "-p", "1", "--on", "dc=paris", "127.0.0.1"}, "--on dc=paris needs --server URL"},
		{[]string{"watch", "tcp", "-p", "1", "--every", "2s", "--on", "dc=paris", "127.0.0.1"}, "--on dc=paris needs --server URL"},
		{[]string{"ping", "--server", "nats://127.0.0.1:1", "--on", "=x", "127.0.0.1"}, "--on: tags"},
	} {
		r := fanout(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// roundLines counts the round summary lines a follower printed on stderr.
func roundLines(p *bgProc) int {
	n := 0
	for _, l := range strings.Split(p.errText(), "\n") {
		if strings.HasPrefix(l, "round ") {
			n++
		}
	}
	return n
}

// TestClusterWatchRules: a cluster watch followed with --confirm 2/3 does
// not report a one-round blip (the follower reckons the changes from every
// result, as a local watch does), while attach with --db (the default 1/1)
// reports it down and up, and keeps the rounds in a file that fanout
// history reads. The watch is pinned to the one worker tagged for it, which
// watch ls shows.
func TestClusterWatchRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blip := filepath.Join(dir, "blip")
	db := filepath.Join(dir, "watch.db")
	url, _ := testServer(t)
	testWorker(t, url, "tagged", "--allow", "exec", "--tags", "dc=paris,rack=3")
	testWorker(t, url, "other", "--allow", "exec", "--tags", "dc=lyon")
	// Up, but down once, the first time it runs after the test creates
	// the blip file.
	script := "if [ -e " + blip + " ]; then rm -f " + blip + "; exit 1; fi"
	fg := startFanout(t, nil, "watch", "exec", "--server", url, "--on", "dc=paris", "--every", "1s", "--timeout", "1s",
		"--confirm", "2/3", "--all", "-o", "jsonl", "127.0.0.1", "--", "sh", "-c", script)
	var id string
	waitFor(t, "the watch submitted", testwait.Hang, func() bool {
		m := regexp.MustCompile(`watch (\S+) submitted`).FindStringSubmatch(fg.errText())
		if m != nil {
			id = m[1]
		}
		return m != nil
	})
	at := startFanout(t, nil, "attach", "--server", url, id, "--db", db, "--keep-rounds", "50", "-o", "jsonl")
	waitFor(t, "both followers: a round", testwait.Hang, func() bool { return roundLines(fg) >= 1 && roundLines(at) >= 1 })
	if err := os.WriteFile(blip, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the blip polled", testwait.Hang, func() bool { _, err := os.Stat(blip); return os.IsNotExist(err) })
	f0, a0 := roundLines(fg), roundLines(at)
	waitFor(t, "three more rounds followed", testwait.Hang, func() bool { return roundLines(fg) >= f0+3 && roundLines(at) >= a0+3 })
	// Pinned to a tag no live worker has: warned, as with no worker at all.
	nw := fanout(t, "", "watch", "exec", "--server", url, "--on", "dc=nowhere", "--every", "1s", "--detach", "127.0.0.1", "--", "true")
	if nw.code != 0 || !strings.Contains(nw.stderr, `warning: no live worker runs job kind "exec" with tags dc=nowhere (2 live workers)`) {
		t.Errorf("watch --on dc=nowhere: exit %d, want 0 and the no-worker warning:\n%s", nw.code, nw.stderr)
	} else if st := fanout(t, "", "watch", "stop", "--server", url, strings.TrimSpace(nw.stdout)); st.code != 0 {
		t.Errorf("watch stop: exit %d: %s", st.code, st.stderr)
	}
	row := lsRow(t, url, id)
	if on, workers := row[len(row)-4], row[len(row)-3]; on != "dc=paris" || workers != "tagged" {
		t.Errorf("watch ls row %v: want ON dc=paris, WORKERS tagged", row)
	}
	for _, p := range []*bgProc{fg, at} {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		if code := p.wait(t, testwait.Hang); code != 130 {
			t.Errorf("interrupted: exit %d, want 130:\n%s", code, p.errText())
		}
	}
	type line struct {
		Change string `json:"change"`
		Status string `json:"status"`
		Round  uint64 `json:"round"`
		Worker string `json:"worker"`
	}
	read := func(p *bgProc) []line {
		b, _ := os.ReadFile(p.stdout)
		var out []line
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			var x line
			if err := json.Unmarshal([]byte(l), &x); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			out = append(out, x)
		}
		return out
	}
	downs := 0
	for _, l := range read(fg) {
		if l.Change != "" {
			t.Errorf("--confirm 2/3: change %+v reported, want none (a one-round blip)", l)
		}
		if l.Worker != "tagged" {
			t.Errorf("result %+v: want every result from worker tagged (--on dc=paris)", l)
		}
		if l.Status == "down" {
			downs++
		}
	}
	if downs != 1 {
		t.Errorf("--all: %d down results, want the blip's one", downs)
	}
	var changes []string
	for _, l := range read(at) {
		changes = append(changes, l.Change)
	}
	if strings.Join(changes, ",") != "down,up" {
		t.Errorf("attach (1/1): changes %v, want down then up", changes)
	}
	h := fanout(t, "", "history", db, "127.0.0.1", "-o", "jsonl")
	if h.code != 0 {
		t.Fatalf("history: exit %d: %s", h.code, h.stderr)
	}
	var spans []string
	for _, l := range strings.Split(strings.TrimSpace(h.stdout), "\n") {
		var sp struct {
			Status string `json:"status"`
			Rounds int    `json:"rounds"`
		}
		if err := json.Unmarshal([]byte(l), &sp); err != nil {
			t.Fatalf("history line %q: %v", l, err)
		}
		spans = append(spans, fmt.Sprintf("%s:%d", sp.Status, sp.Rounds))
	}
	if len(spans) != 3 || !strings.HasPrefix(spans[0], "up:") || spans[1] != "down:1" || !strings.HasPrefix(spans[2], "up:") {
		t.Errorf("history of the attached watch: spans %v, want up, down for 1 round, up", spans)
	}
}

// TestClusterWatchRounds: --rounds N with --server ends the watch in the
// cluster after round N: the submitter following it exits then, 0 when
// every target of round N was up and 1 otherwise, as a local watch does;
// detached, the watch ends by itself (watch ls: ended, round N its last
// complete one, none after), and watch events on it returns once it has
// replayed it.
func TestClusterWatchRounds(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	url, _ := testServer(t)
	testWorker(t, url, "w1", "-c", "20")
	testWorker(t, url, "w2", "-c", "20")

	up := startFanout(t, nil, "watch", "tcp", "-p", port, "--every", "1s", "--timeout", "1s", "--rounds", "3", "--server", url, "--all", "-o", "jsonl", "127.0.0.1")
	if code := up.wait(t, testwait.Hang); code != 0 {
		t.Errorf("--rounds 3, the target up: exit %d, want 0; stderr:\n%s", code, up.errText())
	}
	if e := up.errText(); !strings.Contains(e, "round 3:") || strings.Contains(e, "round 4:") || !strings.Contains(e, "ended after round 3") {
		t.Errorf("--rounds 3: want rounds up to 3, none after, and the end said; stderr:\n%s", e)
	}
	if n := countLines(up.stdout); n != 3 {
		t.Errorf("--rounds 3 --all: %d result lines, want 3", n)
	}

	down := startFanout(t, nil, "watch", "tcp", "-p", "1", "--every", "1s", "--timeout", "1s", "--rounds", "2", "--server", url, "127.0.0.1")
	if code := down.wait(t, testwait.Hang); code != 1 {
		t.Errorf("--rounds 2, the target refused: exit %d, want 1; stderr:\n%s", code, down.errText())
	}

	sub := fanout(t, "", "watch", "tcp", "-p", port, "--every", "1s", "--timeout", "1s", "--rounds", "2", "--server", url, "--detach", "127.0.0.1")
	if sub.code != 0 {
		t.Fatalf("watch --rounds 2 --detach: exit %d: %s", sub.code, sub.stderr)
	}
	id := strings.TrimSpace(sub.stdout)
	var row []string
	waitFor(t, "watch ls: ended", testwait.Hang, func() bool {
		row = lsRow(t, url, id)
		return row[len(row)-2] == "ended"
	})
	time.Sleep(3 * time.Second) // three intervals: a round would have ticked
	if row = lsRow(t, url, id); row[4] != "2" || row[5] != "2" || row[len(row)-2] != "ended" {
		t.Errorf("watch ls row %v: want last round 2, complete 2, ended", row)
	}
	ev := startFanout(t, nil, "watch", "events", "--server", url, "--from-start", "--all", id)
	if code := ev.wait(t, testwait.Hang); code != 0 {
		t.Errorf("watch events on an ended watch: exit %d, want 0 (it returns); stderr:\n%s", code, ev.errText())
	}
	if e := ev.errText(); !strings.Contains(e, "round 2:") || strings.Contains(e, "round 3:") {
		t.Errorf("watch events --from-start: want rounds 1 and 2 alone; stderr:\n%s", e)
	}
}
