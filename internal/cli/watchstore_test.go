package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/watch"
	"github.com/fanout/fanout/watch/watchtest"
)

// runLive runs fanout in this process with a live context.
func runLive(args ...string) outcome {
	var out, errb bytes.Buffer
	code, ran := execute(context.Background(), newRoot(), args, strings.NewReader(""), &out, &errb)
	return outcome{code, ran, out.String(), errb.String()}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// recordWatch records five rounds of a tcp watch of 127.0.0.1-4 through
// the store's recorder, as fanout watch --db does: 127.0.0.1 is up in
// rounds 1-2 and 4-5 and refuses in round 3; the others always refuse.
func recordWatch(t *testing.T) (path string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go acceptAll(ln)
	addr := ln.Addr().String()
	port = ln.Addr().(*net.TCPAddr).Port
	spec := fanout.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{"127.0.0.1-4"}, Concurrency: 10, Timeout: 5 * time.Second}
	set, order, j, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "watch.db")
	var ws watchStoreFlags
	var errs bytes.Buffer
	rec, next, err := ws.openWatchStore(path, spec, time.Second, &errs)
	if err != nil {
		t.Fatal(err)
	}
	d := &watchtest.Driver{Watch: "1", Set: set, Order: order, Job: j, Next: next,
		Observers: []watch.Observer{rec}, Changes: watchtest.StatusChanges}
	for n := 1; n <= 5; n++ {
		switch n {
		case 3:
			ln.Close()
		case 4:
			if ln, err = net.Listen("tcp", addr); err != nil {
				t.Fatal(err)
			}
			go acceptAll(ln)
		}
		testwait.Returns(t, fmt.Sprintf("round %d", n), func() {
			if _, err := d.Round(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	ln.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if errs.Len() > 0 {
		t.Fatalf("recorder: %s", errs.String())
	}
	return path, port
}

func jsonResults(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestWatchReadSide reads a watch's history written through its recorder:
// results of a round (--watch/--round, W:N), a host's timeline, a diff of
// two rounds, and the report's uptime.
func TestWatchReadSide(t *testing.T) {
	t.Parallel()
	path, port := recordWatch(t)
	one := fmt.Sprintf("127.0.0.1:%d", port)

	statusOf := func(o outcome) map[string]any {
		t.Helper()
		if o.code == ExitUsage {
			t.Fatalf("exit 2: %s", o.stderr)
		}
		rs := jsonResults(t, o.stdout)
		if len(rs) != 4 {
			t.Fatalf("%d results, want 4:\n%s%s", len(rs), o.stdout, o.stderr)
		}
		return rs[0]
	}
	for _, c := range []struct {
		args []string
		want string // 127.0.0.1's status
	}{
		{[]string{"results", path, "--watch", "1", "--round", "3", "-o", "jsonl"}, "down"},
		{[]string{"results", path, "--round", "3", "-o", "jsonl"}, "down"}, // the file's only watch
		{[]string{"results", path, "--watch", "1", "-o", "jsonl"}, "up"},   // its last round, 5
		{[]string{"results", path, "--sweep", "1:2", "-o", "jsonl"}, "up"},
		{[]string{"results", path, "--sweep", "1:last", "-o", "jsonl"}, "up"},
	} {
		if r := statusOf(runLive(c.args...)); r["host"] != "127.0.0.1" || r["status"] != c.want {
			t.Errorf("fanout %q: first result %v, want 127.0.0.1 %s", c.args, r, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"results", path, "--watch", "1", "--round", "9"}, "no round 9 (kept: rounds 1 to 5)"},
		{[]string{"results", path, "--watch", "2"}, "watch 2 in " + path + ": no such watch (known: 1)"},
		{[]string{"results", path, "--sweep", "1:3", "--round", "3"}, "--round and --sweep: choose one"},
		{[]string{"history", path, "127.0.0.9"}, "has no result for 127.0.0.9"},
		{[]string{"history", path}, "accepts 2 arg(s)"},
	} {
		o := runLive(c.args...)
		if o.code != ExitUsage || !strings.Contains(o.stderr, c.want) {
			t.Errorf("fanout %q: exit %d, stderr %q; want 2 and %q", c.args, o.code, o.stderr, c.want)
		}
	}

	o := runLive("history", path, "127.0.0.1")
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	if o.code != 0 || len(lines) != 3 {
		t.Fatalf("history: exit %d, %d lines, want 3:\n%s%s", o.code, len(lines), o.stdout, o.stderr)
	}
	for i, want := range []string{"up  .*rounds 1-2 .*rtt ", "down/refused .*round 3 .*refused", "up  .*rounds 4-5 .*rtt "} {
		for _, part := range strings.Split(want, ".*") {
			if !strings.Contains(lines[i], part) || !strings.HasPrefix(lines[i], one) {
				t.Errorf("history line %d: %q, want %q", i, lines[i], want)
				break
			}
		}
	}
	o = runLive("history", path, one, "-o", "jsonl")
	spans := jsonResults(t, o.stdout)
	if len(spans) != 3 || spans[1]["status"] != "down" || spans[1]["from_round"] != 3.0 || spans[2]["rtt_avg_ms"] == nil {
		t.Fatalf("history -o jsonl: %v", spans)
	}

	o = runLive("diff", path, "1:2", "1:3")
	if o.code != ExitSomeNotUp || !strings.Contains(o.stdout, "went down") || !strings.Contains(o.stdout, "127.0.0.1:") ||
		strings.Count(strings.TrimSpace(o.stdout), "\n") != 0 {
		t.Fatalf("diff 1:2 1:3: exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}
	if o := runLive("diff", path, "1:4", "1:last"); o.code != 0 || o.stdout != "" {
		t.Fatalf("diff 1:4 1:last: exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}

	o = runLive("report", path, "--sweep", "1:last")
	if o.code != 0 || !strings.Contains(o.stdout, "uptime over 5 rounds of watch 1: 20.00%") ||
		!strings.Contains(o.stdout, one+" ") || !strings.Contains(o.stdout, "(4 of 5 rounds up)") {
		t.Fatalf("report: exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}
	html := filepath.Join(t.TempDir(), "r.html")
	if o := runLive("report", path, "--sweep", "1:last", "--html", html); o.code != 0 {
		t.Fatalf("report --html: exit %d: %s", o.code, o.stderr)
	}
	page, _ := os.ReadFile(html)
	if !bytes.Contains(page, []byte(`id="uptime"`)) || !bytes.Contains(page, []byte("80.00%")) || !bytes.Contains(page, []byte("4 of 5")) {
		t.Fatalf("report --html: no uptime section with 127.0.0.1 at 80%%")
	}
	// A plain sweep's report has no uptime section.
	if o := runLive("sweeps", path); o.code != 0 {
		t.Fatalf("sweeps: %s", o.stderr)
	}
}

// TestWatchStoreFlags: --keep takes days and weeks and refuses what is not
// a duration with a unit; --keep-rounds and --metrics-targets have ranges;
// --metrics on an address in use is a usage error.
func TestWatchStoreFlags(t *testing.T) {
	t.Parallel()
	cmd := &cobra.Command{Use: "watch", Args: cobra.ArbitraryArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	var ws watchStoreFlags
	var mf metricsFlags
	addWatchStoreFlags(cmd.Flags(), &ws)
	addMetricsFlags(cmd.Flags(), &mf)
	checkFlags(cmd)
	fl := cmd.Flags()
	for _, c := range []struct {
		v    string
		want time.Duration
	}{{"7d", 7 * 24 * time.Hour}, {"2w", 14 * 24 * time.Hour}, {"36h", 36 * time.Hour}, {"1d12h", 36 * time.Hour},
		{"90m", 90 * time.Minute}, {"0", 0}, {"1.5d", 36 * time.Hour}} {
		if err := fl.Set("keep", c.v); err != nil || time.Duration(ws.keep) != c.want {
			t.Errorf("--keep %s: %v, %v; want %v", c.v, time.Duration(ws.keep), err, c.want)
		}
	}
	for _, v := range []string{"7", "7x", "-1d", "", "d", "1e400d", "NaN", "NaNd", "500ms", "7d-", "+7d", "1000000w"} {
		err := fl.Set("keep", v)
		if err == nil || !strings.Contains(err.Error(), "--keep") || !strings.Contains(err.Error(), "want a duration with a unit") {
			t.Errorf("--keep %q: %v, want refused naming --keep", v, err)
		}
	}
	for name, bad := range map[string][]string{"keep-rounds": {"-1", "NaN", "8388609", "x"}, "metrics-targets": {"-1", "16777217", "1.5"}} {
		for _, v := range bad {
			if err := fl.Set(name, v); err == nil || !strings.Contains(err.Error(), "--"+name) || !strings.Contains(err.Error(), "want ") {
				t.Errorf("--%s %q: %v, want refused", name, v, err)
			}
		}
	}
	if err := fl.Set("keep-rounds", "3"); err != nil || ws.keepRounds != 3 {
		t.Errorf("--keep-rounds 3: %v %d", err, ws.keepRounds)
	}
	if mf.targets != 10000 {
		t.Errorf("--metrics-targets default %d, want 10000", mf.targets)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mf.addr = ln.Addr().String()
	_, err = mf.listen()
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != ExitUsage || !strings.Contains(err.Error(), "--metrics") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("--metrics on an address in use: %v", err)
	}
	mf.addr = "127.0.0.1:0"
	e, err := mf.listen()
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	mf.addr = ""
	if e, err := mf.listen(); e != nil || err != nil {
		t.Fatalf("no --metrics: %v %v", e, err)
	}
}

// TestWatchRoundNotResumed: resume leaves a watch's rounds alone, even one
// the watch left unfinished.
func TestWatchRoundNotResumed(t *testing.T) {
	t.Parallel()
	path, port := recordWatch(t)
	spec := fanout.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{"127.0.0.1-4"}, Concurrency: 10, Timeout: 5 * time.Second}
	rec, next, err := store.OpenWatch(path, spec, time.Second, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Round 6 starts, one target finishes, and the watch stops.
	rec.RoundStart(watch.Round{Watch: "1", N: next, Start: time.Now(), Due: time.Now(), Targets: 4})
	rec.Result(next, job.Result{Index: 1, Host: "127.0.0.2", Addr: "127.0.0.2", Port: port, Job: "tcp", Status: job.Down, Class: job.ClassRefused})
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := st.Round(1, 6)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	o := runLive("resume", path, fmt.Sprint(rd.Sweep))
	if o.code != ExitUsage || !strings.Contains(o.stderr, "round 6 of watch 1") {
		t.Fatalf("resume of a round: exit %d: %s", o.code, o.stderr)
	}
	o = runLive("resume", path)
	if o.code != 0 || !strings.Contains(o.stderr, "is finished: nothing to resume") {
		t.Fatalf("resume of a file with watch rounds only: exit %d: %s", o.code, o.stderr)
	}
}
