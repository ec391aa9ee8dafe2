package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDiffOrderAndWarnings: diff lists hosts as addresses (by value, IPv4
// then IPv6) and node sets (natural order), not as text; two sweeps of
// different jobs or target sets get one warning each, saying which.
func TestDiffOrderAndWarnings(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "order.db")
	hosts := []string{"web10", "127.0.0.10", "::1", "web2", "127.0.0.9", "127.0.0.2", "web9"}
	for _, out := range []string{"a", "b"} {
		args := append(append([]string{"exec", "--db", db, "-q"}, hosts...), "--", "echo", out)
		if r := fanout(t, "", args...); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	}
	r := fanout(t, "", "diff", db, "1", "2")
	var order []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			order = append(order, f[1])
		}
	}
	want := "127.0.0.2 127.0.0.9 127.0.0.10 ::1 web2 web9 web10"
	if strings.Join(order, " ") != want {
		t.Errorf("diff order %q, want %q\n%s", strings.Join(order, " "), want, r.stdout)
	}
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("same job and targets, yet: %s", r.stderr)
	}

	// sweeps: the rate, as the summary defines it.
	if r := fanout(t, "", "sweeps", db); !strings.Contains(r.stdout, "DURATION  RATE") || strings.Count(r.stdout, " targets/s ") != 2 {
		t.Errorf("sweeps without a rate per sweep:\n%s", r.stdout)
	}
	if r := fanout(t, "", "sweeps", "-o", "jsonl", db); strings.Count(r.stdout, `"rate":`) != 2 {
		t.Errorf("sweeps -o jsonl without a rate:\n%s", r.stdout)
	}

	// Another target set, then another job.
	if r := fanout(t, "", "exec", "--db", db, "-q", "127.0.0.2-3", "--", "echo", "b"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r := fanout(t, "", "tcp", "--db", db, "-q", "-p", "1", "127.0.0.2-3"); r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	r = fanout(t, "", "diff", db, "2", "3")
	if strings.Count(r.stderr, "warning") != 1 || !strings.Contains(r.stderr, "warning: different target sets: sweep 2 has 7 targets") ||
		!strings.Contains(r.stderr, "sweep 3 has 2 (127.0.0.2-3)") {
		t.Errorf("diff of two target sets: %s", r.stderr)
	}
	r = fanout(t, "", "diff", db, "3", "4")
	if strings.Count(r.stderr, "warning") != 1 || !strings.Contains(r.stderr, "warning: different jobs: sweep 3 ran exec, sweep 4 ran tcp") {
		t.Errorf("diff of two jobs: %s", r.stderr)
	}
}
