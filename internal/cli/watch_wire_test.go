package cli_test

// fanout watch with its history (--db, --keep-rounds), its metrics
// (--metrics) and, in watch_ssh_test.go, its kept ssh connections, through
// the real binary.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
)

// writeFile writes s to path by renaming it into place: a round never
// reads half a file.
func writeFile(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// hostList writes hosts h01..hN, one a line, to dir/hosts.
func hostList(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "h%02d\n", i)
	}
	path := filepath.Join(dir, "hosts")
	writeFile(t, path, b.String())
	return path
}

// roundResults are the results `fanout results DB --round N` prints for
// the file's only watch, as jsonl; nil when it has no such round.
func roundResults(t *testing.T, db string, n uint64) []job.Result {
	t.Helper()
	r := fanout(t, "", "results", db, "--round", strconv.FormatUint(n, 10), "-o", "jsonl")
	return results(t, r.stdout)
}

// keptRounds is what `fanout results` says of the rounds db keeps: "kept:
// rounds A to B".
func keptRounds(t *testing.T, db string) string {
	t.Helper()
	r := fanout(t, "", "results", db, "--round", "999999")
	m := regexp.MustCompile(`kept: rounds \d+ to \d+`).FindString(r.stderr)
	if m == "" {
		t.Fatalf("fanout results --round 999999: exit %d, stderr %q: no kept rounds named", r.code, r.stderr)
	}
	return m
}

func asJSON(t *testing.T, rs []job.Result) string {
	t.Helper()
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitRound waits until round n of db's watch holds want results.
func waitRound(t *testing.T, db string, n uint64, want int) []job.Result {
	t.Helper()
	var rs []job.Result
	testwait.For(t, fmt.Sprintf("round %d's %d results in %s", n, want, db), func() bool {
		rs = roundResults(t, db, n)
		return len(rs) == want
	})
	return rs
}

// A watch with --db killed with kill -9 in the middle of a round, then
// started again with the same file: what the killed run committed stays
// (its finished rounds whole, the cut round as far as it got, marked
// interrupted), and the new run's rounds are numbered after the last one
// the file holds, with the same watch id.
func TestWatchDBKill9Restart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hosts := hostList(t, dir, 5)
	db := filepath.Join(dir, "w.db")
	gate := filepath.Join(dir, "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o600) }) // the orphaned script ends
	// h05's third run says it started, then waits for the gate (at most
	// 200 s): round 3 is in flight when the test kills fanout.
	script := `n=$(cat "$2/n.$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$2/n.$1"
if [ "$1" = h05 ] && [ $n = 3 ]; then touch "$2/started"; i=0; while [ ! -e "$2/gate" ] && [ $i -lt 4000 ]; do sleep 0.05; i=$((i+1)); done; fi
echo "$1 run $n"`
	args := []string{"watch", "exec", "--every", "1h", "--spread=false", "-c", "1", "--all", "-o", "jsonl", "--db", db,
		"@" + hosts, "--", "sh", "-c", script, "sh", "{}", dir}
	w := startWatch(t, args...)
	for n := uint64(1); n <= 2; n++ {
		w.waitErr(t, fmt.Sprintf("round %d:", n))
		w.cmd.Process.Signal(syscall.SIGHUP) // the next round, now
	}
	<-testwait.FileAppears(filepath.Join(dir, "started"))
	before := map[uint64][]job.Result{}
	for n := uint64(1); n <= 2; n++ {
		before[n] = waitRound(t, db, n, 5) // committed before the kill
	}
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	w.wait(t)
	out, _ := w.lines()
	cs := changes(t, out)
	id := cs[0].Watch
	if id != "1" {
		t.Fatalf("watch id %q, want the file's id 1", id)
	}
	cut := roundResults(t, db, 3) // what round 3 committed before the kill: h01-h04 at most
	if len(cut) > 4 {
		t.Fatalf("round 3 holds %d results, but h05 never finished", len(cut))
	}

	// Again, with the same file: rounds 4 and 5.
	w = startWatch(t, append([]string{"watch", "exec", "--rounds", "2"}, args[2:]...)...)
	w.waitErr(t, "round 4:")
	w.cmd.Process.Signal(syscall.SIGHUP)
	if code := w.wait(t); code != 0 {
		_, errs := w.lines()
		t.Fatalf("restarted watch: exit %d, stderr:\n%s", code, strings.Join(errs, "\n"))
	}
	out, errs := w.lines()
	got := map[uint64]int{}
	for _, c := range changes(t, out) {
		if c.Watch != id {
			t.Fatalf("restarted watch's id %q, want %q: %+v", c.Watch, id, c)
		}
		if c.Change == "" { // a result (--all), not a change
			got[c.Round]++
		}
	}
	if len(got) != 2 || got[4] != 5 || got[5] != 5 {
		t.Fatalf("restarted watch printed rounds %v, want 5 results of rounds 4 and 5; stderr:\n%s", got, strings.Join(errs, "\n"))
	}
	for n := uint64(1); n <= 2; n++ {
		if after := roundResults(t, db, n); asJSON(t, after) != asJSON(t, before[n]) {
			t.Errorf("round %d after the restart:\n%v\nbefore:\n%v", n, after, before[n])
		}
	}
	if after := roundResults(t, db, 3); asJSON(t, after) != asJSON(t, cut) {
		t.Errorf("round 3 after the restart: %v, before %v", after, cut)
	}
	for n := uint64(4); n <= 5; n++ {
		waitRound(t, db, n, 5)
	}
	r := fanout(t, "", "sweeps", db)
	if !regexp.MustCompile(`(?m)^3\s+exec\s+interrupted`).MatchString(r.stdout) {
		t.Errorf("round 3's sweep not marked interrupted by the restart:\n%s%s", r.stdout, r.stderr)
	}
	if k := keptRounds(t, db); k != "kept: rounds 1 to 5" {
		t.Errorf("%s, want rounds 1 to 5", k)
	}
}

// --keep-rounds 3 over 10 rounds leaves exactly the last 3 in the file.
func TestWatchKeepRounds(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "w.db")
	r := fanout(t, "", "watch", "exec", "-q", "--every", "50ms", "--rounds", "10", "--keep-rounds", "3", "--db", db,
		"127.0.0.1-3", "--", "true")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if k := keptRounds(t, db); k != "kept: rounds 8 to 10" {
		t.Fatalf("%s, want rounds 8 to 10", k)
	}
	for n := uint64(8); n <= 10; n++ {
		if rs := roundResults(t, db, n); len(rs) != 3 {
			t.Errorf("round %d: %d results, want 3", n, len(rs))
		}
	}
	sw := fanout(t, "", "sweeps", db)
	if lines := strings.Count(strings.TrimSpace(sw.stdout), "\n"); lines != 3 { // a header and 3 sweeps
		t.Errorf("fanout sweeps: %d sweeps, want 3:\n%s", lines, sw.stdout)
	}
}

// --metrics during a watch: a scrape answers from the first round on, in
// Prometheus' text format as promtool and client_golang's parser read it,
// with the watch's totals and one fanout_up per target. The address in use
// exits 2 before any round, nothing sent.
func TestWatchMetrics(t *testing.T) {
	t.Parallel()
	accepted := make(chan struct{}, 100)
	ln := lab.ClosingListenerFunc(t, "127.0.0.1:0", func() { accepted <- struct{}{} })
	port := lab.Port(ln)
	// 127.0.0.1 is up; 127.0.0.2-4 refuse (nothing listens there).
	w := startWatch(t, "watch", "tcp", "-p", strconv.Itoa(port), "--every", "1s", "--timeout", "1s", "--metrics", "127.0.0.1:0", "127.0.0.1-4")
	w.waitErr(t, "round 2:")
	var addr string
	_, errs := w.lines()
	for _, l := range errs {
		if a, ok := strings.CutPrefix(l, "fanout: metrics at http://"); ok {
			addr = strings.TrimSuffix(a, "/metrics")
		}
	}
	if addr == "" {
		t.Fatalf("no metrics address on stderr:\n%s", strings.Join(errs, "\n"))
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %v %s", err, resp.Status)
	}
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed (apt-get install prometheus): checked with client_golang's parser only")
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		mf := mfs[name]
		if mf == nil {
			return 0, false
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			}
		}
		return 0, false
	}
	w1 := map[string]string{}
	if rounds, ok := value("fanout_watch_rounds_total", w1); !ok || rounds < 2 {
		t.Errorf("fanout_watch_rounds_total %v (%v), want 2 or more", rounds, ok)
	}
	if up, ok := value("fanout_watch_targets", map[string]string{"status": "up"}); !ok || up != 1 {
		t.Errorf("fanout_watch_targets{status=up} %v (%v), want 1", up, ok)
	}
	if n := len(mfs["fanout_up"].GetMetric()); n != 4 {
		t.Errorf("%d fanout_up series, want 4 (one per target)", n)
	}
	for i := 1; i <= 4; i++ {
		want := 0.0
		if i == 1 {
			want = 1
		}
		tl := fmt.Sprintf("127.0.0.%d:%d", i, port)
		if v, ok := value("fanout_up", map[string]string{"target": tl}); !ok || v != want {
			t.Errorf("fanout_up{target=%q} %v (%v), want %v", tl, v, ok, want)
		}
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t); code != 130 {
		t.Fatalf("exit %d, want 130", code)
	}

	// The address in use: exit 2, and not one connection to the target.
	for len(accepted) > 0 {
		<-accepted
	}
	r := fanout(t, "", "watch", "tcp", "-p", strconv.Itoa(port), "--every", "1s", "--timeout", "1s", "--metrics", ln.Addr().String(), "127.0.0.1")
	if r.code != 2 || !strings.Contains(r.stderr, "--metrics: metrics address "+ln.Addr().String()) || !strings.Contains(r.stderr, "address already in use") || r.stdout != "" {
		t.Errorf("metrics address in use: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "round 1") || len(accepted) > 0 {
		t.Errorf("a round ran with the metrics address in use (%d connections): %s", len(accepted), r.stderr)
	}
}

// fill writes a file in dir until the disk is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte("f"), 4096)
	for i := 0; i < 1<<16; i++ { // at most 256 MiB
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatal(err)
			}
			return path
		}
	}
	t.Fatal("the small disk never filled")
	return ""
}

// A full disk under watch --db: the watch goes on polling (every round's
// targets up), says once per round that it cannot record, and records
// again once there is room, under the next round number.
func TestWatchDiskFull(t *testing.T) {
	t.Parallel()
	disk := smallDisk(t, "2m")
	dir := t.TempDir()
	const n = 40
	hosts := hostList(t, dir, n)
	payload := filepath.Join(dir, "payload")
	writeFile(t, payload, "r1\n")
	db := filepath.Join(disk, "w.db")
	w := startWatch(t, "watch", "exec", "--every", "1h", "--spread=false", "--db", db, "@"+hosts, "--", "cat", payload)
	w.waitErr(t, "round 1:")
	waitRound(t, db, 1, n)
	// Rounds 2 and 3 print 40 KB a host, on a full disk.
	filler := fill(t, disk)
	writeFile(t, payload, strings.Repeat("x", 40<<10))
	for r := 2; r <= 3; r++ {
		w.cmd.Process.Signal(syscall.SIGHUP)
		w.waitErr(t, fmt.Sprintf("round %d:", r))
		w.waitErr(t, fmt.Sprintf("fanout: watch 1 in %s: cannot record round %d: disk full", db, r))
	}
	os.Remove(filler)
	writeFile(t, payload, "r4\n")
	w.cmd.Process.Signal(syscall.SIGHUP)
	w.waitErr(t, "round 4:")
	rs := waitRound(t, db, 4, n)
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t); code != 130 {
		t.Fatalf("exit %d, want 130", code)
	}
	_, errs := w.lines()
	stderr := strings.Join(errs, "\n")
	for r := 1; r <= 4; r++ {
		if !strings.Contains(stderr, fmt.Sprintf("round %d: %d targets, %d up", r, n, n)) {
			t.Errorf("round %d did not poll every target up:\n%s", r, stderr)
		}
		said := strings.Count(stderr, fmt.Sprintf("cannot record round %d:", r))
		if want := map[bool]int{true: 1, false: 0}[r == 2 || r == 3]; said != want {
			t.Errorf("round %d: said %d times that it cannot be recorded, want %d:\n%s", r, said, want, stderr)
		}
	}
	for _, r := range rs {
		if string(r.Stdout) != "r4\n" {
			t.Errorf("round 4 holds %s's %q, want round 4's output", r.Host, r.Stdout)
		}
	}
	if k := keptRounds(t, db); k != "kept: rounds 1 to 4" {
		t.Errorf("%s, want rounds 1 to 4 (2 and 3 not, or not fully, recorded)", k)
	}
}

// A watch with --db over @FILE stores, with each round, the list as that
// round polled it: the file changed after round 1 gives round 2 and 3 the
// new list, round 1 keeps the old one, and each round's results are its
// list's hosts.
func TestWatchDBReloadedList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	writeFile(t, hosts, "h1\nh2\n")
	db := filepath.Join(dir, "w.db")
	w := startWatch(t, "watch", "exec", "--every", "1h", "--spread=false", "--db", db, "@"+hosts, "--", "true")
	w.waitErr(t, "round 1:")
	writeFile(t, hosts, "h1\nh3\nh4\n")
	w.cmd.Process.Signal(syscall.SIGHUP)
	w.waitErr(t, "round 2:")
	w.cmd.Process.Signal(syscall.SIGHUP)
	w.waitErr(t, "round 3:")
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t); code != 130 {
		t.Fatalf("exit %d, want 130", code)
	}
	st, err := store.OpenExisting(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for n, want := range map[uint64]string{1: "h1\nh2\n", 2: "h1\nh3\nh4\n", 3: "h1\nh3\nh4\n"} {
		ri, err := st.Round(1, n)
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.List(ri.Sweep, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil || string(b) != want {
			t.Errorf("round %d's stored list %q (%v), want %q", n, b, err, want)
		}
		var got []string
		for _, res := range roundResults(t, db, n) {
			got = append(got, res.Host)
		}
		if strings.Join(got, "\n")+"\n" != want {
			t.Errorf("round %d's results: %q, want %q", n, got, want)
		}
	}
}
