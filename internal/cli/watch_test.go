package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/fanout/fanout/internal/testwait"
)

// watching is a fanout watch running in the background: its stdout and
// stderr lines as they come.
type watching struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    []string
	errs   []string
	closed sync.WaitGroup
}

func startWatch(t *testing.T, args ...string) *watching {
	t.Helper()
	w := &watching{cmd: exec.Command(fanoutBin(t), args...)}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.closed.Wait(); w.cmd.Wait() })
	read := func(r io.Reader, to *[]string) {
		defer w.closed.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			w.mu.Lock()
			*to = append(*to, sc.Text())
			w.mu.Unlock()
		}
	}
	w.closed.Add(2)
	go read(stdout, &w.out)
	go read(stderr, &w.errs)
	return w
}

// lines is a copy of what came so far.
func (w *watching) lines() (out, errs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.out...), append([]string(nil), w.errs...)
}

// waitErr waits for a stderr line starting with prefix.
func (w *watching) waitErr(t *testing.T, prefix string) {
	t.Helper()
	testwait.For(t, "stderr line "+prefix, func() bool {
		_, errs := w.lines()
		for _, l := range errs {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	})
}

// wait waits for the process to exit and returns its exit code.
func (w *watching) wait(t *testing.T) int {
	t.Helper()
	var err error
	testwait.Returns(t, "fanout watch to exit", func() { w.closed.Wait(); err = w.cmd.Wait() })
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// change is the part of a jsonl change record a test looks at.
type change struct {
	Host       string `json:"host"`
	Status     string `json:"status"`
	Watch      string `json:"watch"`
	Round      uint64 `json:"round"`
	Change     string `json:"change"`
	ID         string `json:"id"`
	PrevStatus string `json:"prev_status"`
	Since      string `json:"since"`
}

func changes(t *testing.T, lines []string) []change {
	t.Helper()
	var cs []change
	for _, l := range lines {
		var c change
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("jsonl line %q: %v", l, err)
		}
		cs = append(cs, c)
	}
	return cs
}

func events(cs []change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d:%s:%s", c.Round, c.Change, c.Host))
	}
	return out
}

// SIGINT in the middle of a round: no target starts after it, the one in
// flight finishes and its change is printed, the summary says so, exit 130.
func TestWatchSIGINT(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	// 127.0.0.1 answers at once; 127.0.0.2 says it started, then waits for
	// the gate (at most 200 s) and fails; 127.0.0.3 must never run.
	script := `case "$1" in
127.0.0.1) exit 0;;
127.0.0.2) touch "$2/started"; i=0; while [ ! -e "$2/gate" ] && [ $i -lt 4000 ]; do sleep 0.05; i=$((i+1)); done; exit 3;;
*) touch "$2/ran.$1"; exit 0;;
esac`
	w := startWatch(t, "watch", "exec", "--every", "1h", "--spread=false", "-c", "1", "-o", "jsonl",
		"127.0.0.1-3", "--", "sh", "-c", script, "sh", "{}", dir)
	<-testwait.FileAppears(filepath.Join(dir, "started"))
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	w.waitErr(t, "fanout: interrupted:") // taken before the target in flight is let go
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code := w.wait(t)
	out, errs := w.lines()
	stderr := strings.Join(errs, "\n")
	if code != 130 {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, stderr)
	}
	cs := changes(t, out)
	if got := events(cs); len(got) != 1 || got[0] != "1:down:127.0.0.2" {
		t.Fatalf("changes %v, want the in-flight target's down", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran.127.0.0.3")); err == nil {
		t.Errorf("127.0.0.3 was started after SIGINT")
	}
	for _, want := range []string{"round 1: 3 targets, 1 up, 1 down", "watch w", ": 1 rounds (0 late), 1 changes", "interrupted: round 1 ended early"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// An @FILE list re-read: SIGHUP re-reads it at once and starts a round (the
// interval is an hour): a host that left is reported once as removed, a new
// one down is reported down; before each round (--reload) the list is read
// again too, without a signal.
func TestWatchReload(t *testing.T) {
	t.Parallel()
	for _, viaSignal := range []bool{true, false} {
		t.Run(fmt.Sprint("SIGHUP=", viaSignal), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			hosts := filepath.Join(dir, "hosts")
			write := func(s string) {
				// Renamed into place: a round never reads half a file.
				tmp := hosts + ".tmp"
				if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, hosts); err != nil {
					t.Fatal(err)
				}
			}
			write("h1\nh2\nh3\n")
			every := "1h"
			if !viaSignal {
				every = "100ms"
			}
			w := startWatch(t, "watch", "exec", "--every", every, "--spread=false", "-o", "jsonl", "@"+hosts, "--", "sh", "-c", `test "$1" != h4`, "sh", "{}")
			w.waitErr(t, "round 1:")
			write("h1\nh3\nh4\n")
			if viaSignal {
				if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			testwait.For(t, "the removed and down changes", func() bool { out, _ := w.lines(); return len(out) >= 2 })
			w.cmd.Process.Signal(syscall.SIGTERM)
			if code := w.wait(t); code != 130 {
				t.Fatalf("exit %d, want 130", code)
			}
			out, errs := w.lines()
			cs := changes(t, out)
			got := events(cs)
			if len(got) != 2 || got[0][1:] != ":removed:h2" || got[1][1:] != ":down:h4" || got[0][0] != got[1][0] || got[0][0] == '1' {
				t.Fatalf("changes %v, want removed h2 and down h4 in a round after the first; stderr:\n%s", got, strings.Join(errs, "\n"))
			}
			if cs[0].PrevStatus != "up" || cs[0].ID != fmt.Sprintf("%s/%d/h2", cs[0].Watch, cs[0].Round) {
				t.Fatalf("removed %+v", cs[0])
			}
			if viaSignal && !bytes.Contains([]byte(strings.Join(errs, "\n")), []byte("round 2: 3 targets")) {
				t.Fatalf("stderr:\n%s", strings.Join(errs, "\n"))
			}
		})
	}
}
