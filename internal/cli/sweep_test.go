package cli_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
)

// downIf2 is an exec command that fails for 127.0.0.2 only.
var downIf2 = []string{"--", "sh", "-c", `test "$1" != 127.0.0.2`, "sh", "{}"}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"all up", []string{"exec", "127.0.0.1-3", "--", "true"}, 0},
		{"all down", []string{"exec", "127.0.0.1-3", "--", "false"}, 1},
		{"some down", append([]string{"exec", "127.0.0.1-3"}, downIf2...), 1},
		{"down one excluded", append([]string{"exec", "127.0.0.1-3", "--exclude", "127.0.0.2"}, downIf2...), 0},
		{"timeout", []string{"exec", "--timeout", "100ms", "127.0.0.1", "--", "sleep", "5"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := fanout(t, "", tc.args...)
			if r.code != tc.code {
				t.Fatalf("fanout %q: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestJSONL(t *testing.T) {
	t.Parallel()
	r := fanout(t, "", append([]string{"exec", "-o", "jsonl", "-q", "127.0.0.1-3"}, downIf2...)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", r.code, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("-q: stderr not empty:\n%s", r.stderr)
	}
	got := byHost(results(t, r.stdout))
	if len(got) != 3 {
		t.Fatalf("got %d results, want 3:\n%s", len(got), r.stdout)
	}
	for host, want := range map[string]job.Status{"127.0.0.1": job.Up, "127.0.0.2": job.Down, "127.0.0.3": job.Up} {
		if got[host].Status != want {
			t.Errorf("%s: status %q, want %q", host, got[host].Status, want)
		}
		if got[host].Job != "exec" || got[host].Attempts != 1 || got[host].Start.IsZero() {
			t.Errorf("%s: envelope not filled: %+v", host, got[host])
		}
	}
	if d := got["127.0.0.2"]; d.Class != job.ClassExit || d.ExitCode == nil || *d.ExitCode != 1 {
		t.Errorf("127.0.0.2: class %q exit %v, want exit 1", d.Class, d.ExitCode)
	}
	if got["127.0.0.3"].Index != 2 {
		t.Errorf("127.0.0.3: index %d, want 2", got["127.0.0.3"].Index)
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	r := fanout(t, "", append([]string{"exec", "-o", "csv", "127.0.0.1-3"}, downIf2...)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", r.code, r.stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v\n%s", err, r.stdout)
	}
	if len(recs) != 4 {
		t.Fatalf("got %d records, want a header and 3 rows:\n%s", len(recs), r.stdout)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	for _, name := range []string{"index", "host", "status"} {
		if _, ok := col[name]; !ok {
			t.Fatalf("header %q lacks %q", recs[0], name)
		}
	}
	status := map[string]string{}
	for _, rec := range recs[1:] {
		status[rec[col["host"]]] = rec[col["status"]]
	}
	want := map[string]string{"127.0.0.1": "up", "127.0.0.2": "down", "127.0.0.3": "up"}
	for h, s := range want {
		if status[h] != s {
			t.Errorf("%s: status %q, want %q (all: %v)", h, status[h], s, status)
		}
	}
}

// TestFilters: --alive / --dead choose the lines printed, in every format,
// and the exit code still counts every target.
func TestFilters(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "jsonl", "csv"} {
		for flag, want := range map[string]string{"--alive": "127.0.0.3", "--dead": "127.0.0.2"} {
			// Text prints the command's output lines, each after its host.
			r := fanout(t, "", "exec", "-o", format, flag, "127.0.0.2-3", "--", "sh", "-c", `echo hi; test "$1" != 127.0.0.2`, "sh", "{}")
			if r.code != 1 {
				t.Errorf("%s %s: exit %d, want 1", format, flag, r.code)
			}
			other := "127.0.0.2"
			if want == other {
				other = "127.0.0.3"
			}
			if !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, other) {
				t.Errorf("-o %s %s: want %s only, got:\n%s", format, flag, want, r.stdout)
			}
		}
	}
}

func TestTextAndSummary(t *testing.T) {
	t.Parallel()
	r := fanout(t, "", "exec", "127.0.0.1-3", "--", "sh", "-c", `echo hi; test "$1" != 127.0.0.2`, "sh", "{}")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines of text, got:\n%s", r.stdout)
	}
	for _, l := range lines {
		if !strings.Contains(l, "127.0.0.") {
			t.Errorf("line %q names no target", l)
		}
	}
	// The summary counts by status; no progress bar on a pipe.
	if !strings.Contains(r.stderr, "2") || !strings.Contains(r.stderr, "1") || !strings.Contains(strings.ToLower(r.stderr), "up") {
		t.Errorf("summary on stderr lacks the counts:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("progress bar drawn on a pipe with --progress auto:\n%q", r.stderr)
	}
}

func TestOutputFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "out.jsonl")
	r := fanout(t, "", "exec", "-o", "jsonl", "--output-file", file, "127.0.0.1-4", "--", "true")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q; stderr: %s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(results(t, string(b))); n != 4 {
		t.Errorf("%d results in the file, want 4", n)
	}
	r = fanout(t, "", "exec", "--output-file", filepath.Join(file, "sub"), "127.0.0.1", "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, "sub") {
		t.Errorf("unwritable --output-file: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestTargetSources: @FILE (comments, blank lines), "-", excludes, node-sets.
func TestTargetSources(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(file, []byte("# lab hosts\n127.0.0.1\n\n127.0.0.[2-3] # a node-set\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := fanout(t, "127.0.0.9\n127.0.0.10\n", "exec", "-o", "jsonl", "@"+file, "-", "--exclude", "127.0.0.2", "--", "true")
	if r.code != 0 {
		t.Fatalf("exit %d; stderr: %s", r.code, r.stderr)
	}
	var hosts []string
	for _, res := range results(t, r.stdout) {
		hosts = append(hosts, res.Host)
	}
	slices.Sort(hosts)
	want := []string{"127.0.0.1", "127.0.0.10", "127.0.0.3", "127.0.0.9"}
	if !slices.Equal(hosts, want) {
		t.Errorf("targets %v, want %v", hosts, want)
	}
}

// TestOrder: --shard takes a contiguous slice of the canonical order,
// --shuffle with a seed is reproducible and a permutation.
func TestOrder(t *testing.T) {
	t.Parallel()
	indexes := func(args ...string) []uint64 {
		t.Helper()
		r := fanout(t, "", append([]string{"exec", "-c", "1", "-o", "jsonl", "-q"}, append(args, "--", "true")...)...)
		if r.code != 0 {
			t.Fatalf("fanout %q: exit %d; stderr: %s", args, r.code, r.stderr)
		}
		var ix []uint64
		for _, res := range results(t, r.stdout) {
			ix = append(ix, res.Index)
		}
		return ix
	}
	if got := indexes("--shard", "2/3", "127.0.0.1-9"); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("--shard 2/3 of 9: indexes %v, want [3 4 5]", got)
	}
	a := indexes("--shuffle", "--seed", "7", "127.0.0.0/27")
	b := indexes("--shuffle", "--seed", "7", "127.0.0.0/27")
	if !slices.Equal(a, b) {
		t.Errorf("--shuffle --seed 7 twice: %v then %v", a, b)
	}
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	if len(a) != 32 || sorted[0] != 0 || sorted[31] != 31 || slices.Equal(a, sorted) {
		t.Errorf("--shuffle of 32: %v is not a shuffled permutation", a)
	}
}

// TestInterrupt: SIGINT or SIGTERM stops the sweep, the finished Result is flushed, the
// summary is printed, the exit code is 130, and no command survives.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			testInterrupt(t, sig)
		})
	}
}

func testInterrupt(t *testing.T, sig syscall.Signal) {
	sleep := namedSleep(t, "sleep-fanout-test")
	// The sleeps outlast testwait.Hang: only fanout's kill ends them, so
	// fanout exiting at all shows it did not wait for them.
	script := `case "$1" in 127.0.0.1) echo quick;; *) "$2" 3600;; esac`
	killSurvivors(t, sleep)
	cmd := exec.Command(fanoutBin(t), "exec", "-o", "jsonl", "127.0.0.1-5", "--", "sh", "-c", script, "sh", "{}", sleep)
	stdout, stderr := startPiped(t, cmd)

	// Wait for the quick target's Result, then for the sleeps to be running.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	l, _ := testwait.Recv(t, "the quick target's result", lines)
	out = append(out, l)
	testwait.For(t, "the 4 sleeps to run", func() bool { return len(survivors(t, sleep)) >= 4 })

	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	var err error
	testwait.Returns(t, fmt.Sprintf("fanout to exit after %v", sig), func() {
		for l := range lines {
			out = append(out, l)
		}
		err = cmd.Wait()
	})
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit: %v, want code 130; stderr:\n%s", err, stderr.String())
	}
	rs := results(t, strings.Join(out, "\n"))
	if len(rs) != 1 || rs[0].Host != "127.0.0.1" || rs[0].Status != job.Up || string(rs[0].Stdout) != "quick\n" {
		t.Errorf("want the one finished result (127.0.0.1 up), got %+v", rs)
	}
	if !strings.Contains(strings.ToLower(stderr.String()), "interrupt") {
		t.Errorf("summary does not say the sweep was interrupted:\n%s", stderr.String())
	}
	if s := survivors(t, sleep); len(s) != 0 {
		t.Errorf("%d commands survived the sweep: pids %v", len(s), s)
	}
}

// killSurvivors kills, when the test ends, whatever still runs name: a
// failed test must not leave hour-long sleeps behind.
func killSurvivors(t *testing.T, name string) {
	t.Cleanup(func() {
		for _, pid := range survivors(t, name) {
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	})
}

// survivors are the pids whose command line runs name.
func survivors(t *testing.T, name string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if argv0, _, _ := strings.Cut(string(b), "\x00"); argv0 == name {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestProgress: the bar is drawn on stderr only when asked for off a terminal.
func TestProgress(t *testing.T) {
	t.Parallel()
	// No bar: 0.6s in which one would have been drawn (a span; a busy
	// machine only lengthens it).
	for _, mode := range []string{"auto", "never"} {
		r := fanout(t, "", "exec", "--progress", mode, "127.0.0.1", "--", "sleep", "0.6")
		if r.code != 0 {
			t.Fatalf("--progress %s: exit %d; stderr: %s", mode, r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "\r") {
			t.Errorf("--progress %s on a pipe: bar drawn; stderr %q", mode, r.stderr)
		}
	}
	// A bar: the command runs until one was drawn, however long that takes.
	code, out := runUntilDrawn(t, "\r", fanoutBin(t), "exec", "--progress", "always", "127.0.0.1", "--")
	if code != 0 {
		t.Fatalf("--progress always: exit %d; output: %q", code, out)
	}
}

// runUntilDrawn runs name with args and, appended, a command that waits
// for a file; once the output (stdout and stderr) holds want, it creates the
// file, so the command ends. It returns the exit code and the output.
func runUntilDrawn(t *testing.T, want, name string, args ...string) (int, string) {
	t.Helper()
	flag := filepath.Join(t.TempDir(), "drawn")
	args = append(args, "sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done`, flag)
	cmd := exec.Command(name, args...)
	var out lab.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	testwait.For(t, fmt.Sprintf("%q in the output of %s %q", want, name, args), func() bool { return strings.Contains(out.String(), want) })
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	testwait.Returns(t, "the command to end once its file exists", func() { err = cmd.Wait() })
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// namedSleep is the sleep command under a name of its own, in a temporary
// directory, to find survivors in /proc.
func namedSleep(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	sleep := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(path, sleep); err != nil {
		t.Fatal(err)
	}
	return sleep
}

// startPiped starts cmd with its stdout on a pipe and its stderr in a
// buffer; the process is killed at the end of the test.
func startPiped(t *testing.T, cmd *exec.Cmd) (io.ReadCloser, *bytes.Buffer) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return stdout, stderr
}

// TestClosedStdout: when the reader of stdout goes away (| head -1), fanout
// does not die of SIGPIPE leaving its commands behind: the next write fails,
// the sweep stops, the commands are killed, and it exits 1 without noise.
func TestClosedStdout(t *testing.T) {
	t.Parallel()
	sleep := namedSleep(t, "sleep-fanout-pipe")
	// The long sleeps outlast testwait.Hang: only fanout's kill ends them.
	script := `case "$1" in 127.0.0.1) echo first;; 127.0.0.2) "$2" 1; echo second;; *) "$2" 3600;; esac`
	killSurvivors(t, sleep)
	cmd := exec.Command(fanoutBin(t), "exec", "127.0.0.1-5", "--", "sh", "-c", script, "sh", "{}", sleep)
	stdout, stderr := startPiped(t, cmd)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "127.0.0.1") {
		t.Fatalf("first line %q, %v", line, err)
	}
	stdout.Close() // like head -1
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	err, _ = testwait.Recv(t, "fanout to exit after its stdout closed", done)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want code 1; stderr:\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "fanout:") {
		t.Errorf("a closed stdout made noise:\n%s", stderr.String())
	}
	if s := survivors(t, sleep); len(s) != 0 {
		t.Errorf("%d commands survived: pids %v", len(s), s)
	}
}

// TestEngineFlags: --rate, --timeout and --retries reach the engine.
func TestEngineFlags(t *testing.T) {
	t.Parallel()
	t.Run("rate", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := fanout(t, "", "exec", "-q", "--rate", "10", "127.0.0.1-6", "--", "true")
		// 6 starts at 10/s: the last one no sooner than 0.5s after the first.
		if took := time.Since(start); r.code != 0 || took < 450*time.Millisecond {
			t.Errorf("--rate 10 over 6 targets: exit %d in %v, want 0 in 0.5s or more", r.code, took)
		}
	})
	t.Run("timeout and retries", func(t *testing.T) {
		t.Parallel()
		r := fanout(t, "", "exec", "-o", "jsonl", "--timeout", "50ms", "--retries", "2", "127.0.0.1", "--", "sleep", "5")
		rs := results(t, r.stdout)
		if r.code != 1 || len(rs) != 1 || rs[0].Class != job.ClassTimeout || rs[0].Attempts != 3 {
			t.Errorf("exit %d, results %+v; want 1 result, class timeout after 3 attempts", r.code, rs)
		}
	})
	t.Run("no retry of a non-retryable failure", func(t *testing.T) {
		t.Parallel()
		r := fanout(t, "", "exec", "-o", "jsonl", "--retries", "2", "127.0.0.1", "--", "false")
		rs := results(t, r.stdout)
		if r.code != 1 || len(rs) != 1 || rs[0].Class != job.ClassExit || rs[0].Attempts != 1 {
			t.Errorf("exit %d, results %+v; want 1 result, class exit after 1 attempt", r.code, rs)
		}
	})
	t.Run("concurrency fits the file limit", func(t *testing.T) {
		t.Parallel()
		// A hard limit of 128 files cannot hold 1000 commands in flight.
		r := command(t, "", "sh", "-c", `ulimit -n 128 && exec "$0" "$@"`, fanoutBin(t),
			"exec", "-c", "1000", "-o", "jsonl", "127.0.0.1-20", "--", "true")
		if r.code != 0 || len(results(t, r.stdout)) != 20 {
			t.Errorf("exit %d, %d results; want 0 and 20; stderr:\n%s", r.code, len(results(t, r.stdout)), r.stderr)
		}
		if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, "concurrency 1000") {
			t.Errorf("no warning that -c 1000 was lowered:\n%s", r.stderr)
		}
	})
}

// TestExecPingLab is the seed's sweep taken literally, in the lab: exec runs
// iputils ping per host; 127.0.0.0/28 answers, 127.1.0.0/28 drops echoes.
func TestExecPingLab(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("no ping command (apt-get install iputils-ping)")
	}
	r := fanout(t, "", "exec", "-o", "jsonl", "127.0.0.0/28", "127.1.0.0/28", "--", "ping", "-c", "1", "-W", "1", "{}")
	if r.code != 1 {
		t.Errorf("exit %d, want 1; stderr: %s", r.code, r.stderr)
	}
	var up, down int
	for _, res := range results(t, r.stdout) {
		live := strings.HasPrefix(res.Host, "127.0.0.")
		switch {
		case live && res.Status == job.Up:
			up++
		case !live && res.Status == job.Down && res.Class == job.ClassExit && res.ExitCode != nil && *res.ExitCode == 1:
			down++
		default:
			t.Errorf("%s: %s %s exit %v", res.Host, res.Status, res.Class, res.ExitCode)
		}
	}
	if up != 16 || down != 16 {
		t.Errorf("up %d, down %d; want 16 and 16", up, down)
	}
}

// TestProgressOnTerminal: with --progress auto the bar appears when stderr is
// a terminal (script(1) gives the command a pseudo-terminal).
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no script command (bsdutils)")
	}
	// The command runs until the bar is drawn: it shows a percentage, which
	// no result or summary line has.
	flag := filepath.Join(t.TempDir(), "drawn")
	line := fanoutBin(t) + ` exec 127.0.0.1 -- sh -c 'while [ ! -e "$0" ]; do sleep 0.05; done; echo done' ` + flag
	cmd := exec.Command("script", "-qec", line, "/dev/null")
	var out lab.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	testwait.For(t, "a progress bar on a terminal", func() bool { return strings.Contains(out.String(), "%") })
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	testwait.Returns(t, "fanout under script to end", func() { err = cmd.Wait() })
	if err != nil {
		t.Fatalf("%v; output:\n%q", err, out.String())
	}
	// The result line is written whole after the bar was erased, never
	// inside a frame (one writer owns the terminal).
	if !strings.Contains(out.String(), "\x1b[K127.0.0.1: done\r\n") {
		t.Errorf("no result line on a line of its own:\n%q", out.String())
	}
}
