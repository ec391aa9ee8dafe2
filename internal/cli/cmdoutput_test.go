package cli_test

import (
	"github.com/fanout/fanout/internal/golden"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// execScript prints two lines and a stderr line on 127.0.0.1, fails with
// exit 2 and some output on 127.0.0.2 and 127.0.0.4, prints nothing on
// 127.0.0.3.
var execScript = []string{"--", "sh", "-c", `case "$1" in
127.0.0.1) echo "first line"; echo "second line"; echo "a warning" >&2;;
127.0.0.2|127.0.0.4) echo "same output"; exit 2;;
esac`, "sh", "{}"}

// TestExecTextGolden: exec's text output is every line of every target's
// output, prefixed with the target (as pdsh and pssh -i print it), not the
// last line; the summary says exit statuses in words.
func TestExecTextGolden(t *testing.T) {
	t.Parallel()
	var got strings.Builder
	for _, args := range [][]string{
		{"exec", "-c", "1", "-q", "127.0.0.1-4"},
		{"exec", "-c", "1", "-q", "--gather", "127.0.0.1-4"},
		{"exec", "-c", "1", "-q", "--dead", "127.0.0.1-4"},
	} {
		r := fanout(t, "", append(args, execScript...)...)
		got.WriteString("$ fanout " + strings.Join(args, " ") + " -- ...\n")
		got.WriteString("--- stdout\n" + r.stdout + "--- stderr\n" + r.stderr)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1", args, r.code)
		}
	}
	golden.Check(t, "exec-text.golden", got.String())

	r := fanout(t, "", append([]string{"exec", "-c", "1", "127.0.0.1-4"}, execScript...)...)
	// The summary is the last line (a rate such as "624 targets/s" holds
	// "4 targets" too: the line is not found by that).
	last := r.stderr[strings.LastIndex(strings.TrimSuffix(r.stderr, "\n"), "\n")+1:]
	if !regexp.MustCompile(`^4 targets in [0-9.]+s: up 2, down 2 \(exit status 2: 2 hosts\), errors 0; [0-9.]+ targets/s\n$`).MatchString(last) {
		t.Errorf("summary: %q", r.stderr)
	}
}

// TestExecOutdir: exec --outdir writes each target's stdout and stderr to
// DIR/HOST.stdout and .stderr, as pssh -o/-e, and prints one line per target.
func TestExecOutdir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	r := fanout(t, "", append([]string{"exec", "-q", "--outdir", dir, "127.0.0.1-4"}, execScript...)...)
	if r.code != 1 {
		t.Fatalf("exit %d; stderr %s", r.code, r.stderr)
	}
	for file, want := range map[string]string{
		"127.0.0.1.stdout": "first line\nsecond line\n", "127.0.0.1.stderr": "a warning\n",
		"127.0.0.2.stdout": "same output\n", "127.0.0.3.stdout": "", "127.0.0.3.stderr": "",
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", file, b, err, want)
		}
	}
	if n := strings.Count(r.stdout, "\n"); n != 4 || !strings.Contains(r.stdout, "127.0.0.2 failed (exit 2") {
		t.Errorf("stdout, want one line per target:\n%s", r.stdout)
	}
	if r := fanout(t, "", "exec", "--gather", "--outdir", dir, "127.0.0.1", "--", "true"); r.code != 2 {
		t.Errorf("--gather with --outdir: exit %d, want 2", r.code)
	}
}

// TestTimeoutMessage: a command killed at --timeout says the timeout that
// fired, in the result and on the terminal.
func TestTimeoutMessage(t *testing.T) {
	t.Parallel()
	r := fanout(t, "", "exec", "-o", "jsonl", "--timeout", "300ms", "127.0.0.1", "--", "sleep", "30")
	rs := results(t, r.stdout)
	if r.code != 1 || len(rs) != 1 || rs[0].Class != "timeout" || rs[0].Error != "command timed out after 300ms: killed" {
		t.Errorf("exit %d, results %+v", r.code, rs)
	}
	r = fanout(t, "", "exec", "-q", "--timeout", "300ms", "127.0.0.1", "--", "sleep", "30")
	if !strings.Contains(r.stderr, "127.0.0.1: [fanout] timeout: command timed out after 300ms: killed") {
		t.Errorf("text: %q", r.stderr)
	}
}
