package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// evil sets the terminal's title and clears its screen; shown is how the
// text formats print it.
const (
	evil  = "\x1b]0;pwned\x07\x1b[2J"
	shown = `\x1b]0;pwned\x07\x1b[2J`
)

// rawControl reports whether s holds a control byte a terminal would act on
// (0x9b, CSI, as a byte: ContainsAny reads its argument as UTF-8).
func rawControl(s string) bool {
	return strings.ContainsAny(s, "\x1b\x07\r") || strings.IndexByte(s, 0x9b) >= 0
}

// TestTerminalSafety: what a command or a host prints reaches the terminal
// escaped in every text format (exec's line, ssh's inline lines and notes,
// --gather), and as sent in jsonl and --outdir.
func TestTerminalSafety(t *testing.T) {
	t.Parallel()
	check := func(what string, r run, code int) {
		t.Helper()
		if r.code != code {
			t.Errorf("%s: exit %d, want %d; stderr:\n%s", what, r.code, code, r.stderr)
		}
		if rawControl(r.stdout) || rawControl(r.stderr) {
			t.Errorf("%s: a control sequence reached the terminal:\nstdout %q\nstderr %q", what, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout+r.stderr, shown) {
			t.Errorf("%s: output lacks the escaped %s:\nstdout %q\nstderr %q", what, shown, r.stdout, r.stderr)
		}
	}

	t.Run("exec", func(t *testing.T) {
		t.Parallel()
		r := fanout(t, "", "exec", "-q", "127.0.0.1", "--", "printf", `%s\n`, evil)
		check("exec text", r, 0)
		r = fanout(t, "", "exec", "-q", "127.0.0.1", "--", "sh", "-c", `printf '%s\n' "$0" >&2; exit 3`, evil)
		check("exec text, failing", r, 1)
		r = fanout(t, "", "exec", "-q", "-o", "jsonl", "127.0.0.1", "--", "printf", `%s\n`, evil)
		if rs := results(t, r.stdout); len(rs) != 1 || string(rs[0].Stdout) != evil+"\n" {
			t.Errorf("exec jsonl: %+v, want stdout %q as sent", rs, evil+"\n")
		}
	})

	t.Run("ssh", func(t *testing.T) {
		t.Parallel()
		flags, dir := sshFleet(t)
		r := fanout(t, "", append(flags, "-q", "127.2.0.1", "--", "echo", evil)...)
		check("ssh inline stdout", r, 0)
		r = fanout(t, "", append(flags, "-q", "127.2.0.1", "--", "stderr", evil)...)
		check("ssh inline stderr", r, 0)
		r = fanout(t, "", append(flags, "-q", "--gather", "127.2.0.[1-3]", "--", "echo", evil)...)
		check("ssh --gather", r, 0)
		if !strings.Contains(r.stdout, "127.2.0.[1-3] (3)\n") {
			t.Errorf("ssh --gather: not gathered:\n%s", r.stdout)
		}
		r = fanout(t, "", append(flags, "-q", "-o", "jsonl", "127.2.0.1", "--", "echo", evil)...)
		if rs := results(t, r.stdout); len(rs) != 1 || string(rs[0].Stdout) != evil+"\n" {
			t.Errorf("ssh jsonl: %+v, want stdout %q as sent", rs, evil+"\n")
		}
		out := filepath.Join(dir, "out")
		r = fanout(t, "", append(flags, "-q", "--outdir", out, "127.2.0.1", "--", "echo", evil)...)
		if b, err := os.ReadFile(filepath.Join(out, "127.2.0.1.stdout")); err != nil || string(b) != evil+"\n" {
			t.Errorf("ssh --outdir: %q, %v; want %q as sent (exit %d, stderr %s)", b, err, evil+"\n", r.code, r.stderr)
		}
	})
}
