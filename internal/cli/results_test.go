package cli_test

import (
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
)

// script is what each target's command prints or exits with, in two sweeps a
// week apart: 127.0.0.2 comes up, .3 goes down, .5 changes its output, .1 is
// gone and .7 is new.
const (
	scriptA = `case {} in 127.0.0.2) exit 3;; 127.0.0.5) echo old;; *) echo same;; esac`
	scriptB = `case {} in 127.0.0.3) exit 4;; 127.0.0.5) echo new;; *) echo same;; esac`
)

func TestResultsSweepsDiffReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "fleet.db")
	other := filepath.Join(dir, "today.db")
	if r := fanout(t, "", "exec", "--db", db, "-q", "127.0.0.1-6", "--", "sh", "-c", scriptA); r.code != 1 {
		t.Fatalf("sweep A: exit %d: %s", r.code, r.stderr)
	}
	for _, file := range []string{db, other} {
		if r := fanout(t, "", "exec", "--db", file, "-q", "127.0.0.2-7", "--", "sh", "-c", scriptB); r.code != 1 {
			t.Fatalf("sweep B: exit %d: %s", r.code, r.stderr)
		}
	}

	// sweeps: both, finished, with their counts.
	r := fanout(t, "", "sweeps", db)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("sweeps: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i, want := range []string{`^1\s+exec\s+finished\s+6/6\s+5\s+1\s+0\s`, `^2\s+exec\s+finished\s+6/6\s+5\s+1\s+0\s`} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("sweeps line %d = %q, want %s", i+1, lines[i+1], want)
		}
	}
	r = fanout(t, "", "sweeps", "-o", "jsonl", db)
	var row struct {
		ID   int64  `json:"id"`
		Done uint64 `json:"done"`
		Up   uint64 `json:"up"`
	}
	if err := json.Unmarshal([]byte(strings.Split(r.stdout, "\n")[0]), &row); err != nil || row.ID != 1 || row.Done != 6 || row.Up != 5 {
		t.Errorf("sweeps -o jsonl: %+v %v\n%s", row, err, r.stdout)
	}

	// results: filters, formats, default sweep, summary and histogram on stderr.
	r = fanout(t, "", "results", db, "--sweep", "1", "--dead", "-o", "jsonl")
	rs := results(t, r.stdout)
	if r.code != 0 || len(rs) != 1 || rs[0].Host != "127.0.0.2" || rs[0].Class != job.ClassExit ||
		rs[0].ExitCode == nil || *rs[0].ExitCode != 3 || rs[0].Job != "exec" {
		t.Errorf("results --dead: exit %d %+v", r.code, rs)
	}
	r = fanout(t, "", "results", db, "--sweep", "1", "--class", "exit", "-o", "csv", "-q")
	if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")); n != 2 || !strings.HasPrefix(r.stdout, "index,host") || r.stderr != "" {
		t.Errorf("results --class exit -o csv -q: %d lines\n%s\nstderr: %s", n, r.stdout, r.stderr)
	}
	r = fanout(t, "", "results", db, "--status", "up", "-o", "jsonl")
	if rs := results(t, r.stdout); len(rs) != 5 || string(rs[0].Stdout) != "same\n" {
		t.Errorf("results --status up (last sweep): %d results", len(rs))
	}
	if !strings.Contains(r.stderr, "sweep 2 in "+db) || !strings.Contains(r.stderr, "6 of 6 targets: 5 up, 1 down, 0 error") ||
		!strings.Contains(r.stderr, "shown: 5 (5 up, 0 down, 0 error)") {
		t.Errorf("results summary on stderr:\n%s", r.stderr)
	}
	// A job with RTTs gets a histogram in the terminal summary.
	tcpDB := filepath.Join(dir, "tcp.db")
	if r := fanout(t, "", "tcp", "-p", strconv.Itoa(listen(t, "127.0.0.1:0")), "--db", tcpDB, "-q", "127.0.0.1"); r.code != 0 {
		t.Fatalf("tcp --db: exit %d: %s", r.code, r.stderr)
	}
	if r := fanout(t, "", "results", tcpDB); !regexp.MustCompile(`rtt: min \S+ .*\(1 with an RTT\)\n\s+\S+ █+ 1\n`).MatchString(r.stderr) {
		t.Errorf("results: no RTT histogram on stderr:\n%s", r.stderr)
	}
	r = fanout(t, "", "results", db)
	if n := strings.Count(r.stdout, "\n"); r.code != 0 || n < 6 {
		t.Errorf("results (text): exit %d, %d lines\n%s", r.code, n, r.stdout)
	}

	// diff: matched by target, not index (the lists differ).
	want := map[string]string{
		"127.0.0.2": "came up", "127.0.0.3": "went down", "127.0.0.5": "output",
		"127.0.0.1": "gone", "127.0.0.7": "new",
	}
	for _, args := range [][]string{{"diff", db, "1", "2"}, {"diff", db}} {
		r = fanout(t, "", args...)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1 (changes)\n%s", args, r.code, r.stderr)
		}
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 {
				t.Errorf("%v: line %q", args, l)
				continue
			}
			if f[0] == "came" || f[0] == "went" {
				f = append([]string{f[0] + " " + f[1]}, f[2:]...)
			}
			got[f[1]] = f[0]
		}
		for host, change := range want {
			if got[host] != change {
				t.Errorf("%v: %s is %q, want %q\n%s", args, host, got[host], change, r.stdout)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%v: %d changes, want %d:\n%s", args, len(got), len(want), r.stdout)
		}
		if !strings.Contains(r.stderr, "1 came up, 1 went down, 0 changed reason, 1 changed output, 1 new, 1 gone, 2 unchanged") {
			t.Errorf("%v: summary %q", args, r.stderr)
		}
	}
	if r = fanout(t, "", "diff", "-o", "jsonl", db, "1", "2"); !strings.Contains(r.stdout, `"change":"output","host":"127.0.0.5"`) ||
		!strings.Contains(r.stdout, `"stdout":"new\n"`) {
		t.Errorf("diff -o jsonl:\n%s", r.stdout)
	}
	if r = fanout(t, "", "diff", db, "2", "2"); r.code != 0 || r.stdout != "" {
		t.Errorf("a sweep against itself: exit %d\n%s", r.code, r.stdout)
	}
	// Two files: their last sweeps (the same targets and outputs: no change).
	if r = fanout(t, "", "diff", db, other); r.code != 0 || !strings.Contains(r.stderr, "6 unchanged") {
		t.Errorf("diff FILE_A FILE_B: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// report: text, and a self-contained page.
	r = fanout(t, "", "report", db, "--sweep", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "6 of 6 targets: 5 up, 1 down, 0 error") || !strings.Contains(r.stdout, "not up: non-zero exit status: 1 host") {
		t.Errorf("report (text): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	page := filepath.Join(dir, "fleet.html")
	r = fanout(t, "", "report", db, "--html", page)
	b, err := os.ReadFile(page)
	if r.code != 0 || err != nil || !strings.Contains(string(b), `id="count-up">5<`) || !strings.Contains(string(b), `<canvas id="map"`) {
		t.Errorf("report --html: exit %d %v %s", r.code, err, r.stderr)
	}
}

func TestStoreBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a database\n"), 0o644)
	db := filepath.Join(dir, "ok.db")
	if r := fanout(t, "", "exec", "--db", db, "-q", "127.0.0.1", "--", "true"); r.code != 0 {
		t.Fatalf("exec --db: exit %d: %s", r.code, r.stderr)
	}
	newer := filepath.Join(dir, "newer.db")
	if r := fanout(t, "", "exec", "--db", newer, "-q", "127.0.0.1", "--", "true"); r.code != 0 {
		t.Fatalf("exec --db: exit %d: %s", r.code, r.stderr)
	}
	if st, err := store.Open(newer); err != nil {
		t.Fatal(err)
	} else {
		st.Close()
	}
	raw, err := sql.Open("sqlite", newer)
	if err != nil {
		t.Fatal(err)
	}
	// One past what this fanout writes: a file of a later fanout.
	newerVersion := strconv.Itoa(store.SchemaVersion + 1)
	if _, err := raw.Exec(`UPDATE fanout_meta SET value=? WHERE key='schema_version'`, newerVersion); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"results", text}, 2, text + " is not a fanout database (not an SQLite file)"},
		{[]string{"tcp", "-p", "9", "--db", text, "127.0.0.1"}, 2, "--db: " + text + " is not a fanout database"},
		{[]string{"sweeps", newer}, 2, "has schema version " + newerVersion + ", newer than this fanout understands"},
		{[]string{"results", filepath.Join(dir, "missing.db")}, 2, "no such file or directory"},
		{[]string{"results", db, "--sweep", "9"}, 2, "sweep 9 in " + db + ": no such sweep (known: 1;"},
		{[]string{"results", db, "--sweep", "x"}, 2, `sweep "x": want a sweep id`},
		{[]string{"results", db, "--status", "sideways"}, 2, `--status "sideways": want up, down or error`},
		{[]string{"report", db, "--sweep", "4", "--html", filepath.Join(dir, "r.html")}, 2, "no such sweep"},
		{[]string{"diff", db, "1", "5"}, 2, "sweep 5 in"},
		{[]string{"resume", db, "3"}, 2, "sweep 3 in"},
		{[]string{"resume", db}, 0, "every sweep in " + db + " is finished: nothing to resume"},
		{[]string{"resume", db, "1", "--timeout", "1s"}, 2, "--timeout: a resumed sweep keeps the options it was started with"},
	}
	for _, c := range cases {
		r := fanout(t, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("fanout %v: exit %d, stderr:\n%s\nwant exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "r.html")); err == nil {
		t.Errorf("a failed report left a page behind")
	}
	if b, _ := os.ReadFile(text); string(b) != "not a database\n" {
		t.Errorf("refusing %s changed it: %q", text, b)
	}
}

// TestReadOnlyDB: a database fanout may not write is refused for a new
// sweep before any traffic, and still readable.
func TestReadOnlyDB(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "ro.db")
	if r := fanout(t, "", "exec", "--db", db, "-q", "127.0.0.1", "--", "true"); r.code != 0 {
		t.Fatalf("exec --db: exit %d: %s", r.code, r.stderr)
	}
	if os.Geteuid() == 0 {
		// Root writes through file modes; an immutable file stops it.
		if out, err := exec.Command("chattr", "+i", db).CombinedOutput(); err != nil {
			t.Skipf("chattr +i not possible here (%v: %s); as a user, chmod 0444 is the same test", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", db).Run() })
	} else if err := os.Chmod(db, 0o444); err != nil {
		t.Fatal(err)
	}
	r := fanout(t, "", "exec", "--db", db, "127.0.0.1", "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, "--db: open "+db+": database is read-only (") || r.stdout != "" {
		t.Errorf("new sweep in a read-only database: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := fanout(t, "", "sweeps", db); r.code != 0 || !strings.Contains(r.stdout, "1/1") {
		t.Errorf("reading a read-only database: exit %d\n%s", r.code, r.stderr)
	}
}
