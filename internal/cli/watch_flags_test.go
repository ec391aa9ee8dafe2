package cli

import (
	"strings"
	"testing"
)

// Bad watch input exits 2 before any round, naming the flag: --every zero,
// negative or shorter than --timeout (or than ping's --count x --interval),
// a bad --confirm or --flap, --all with --alive, cluster flags, a bad
// --keep, --keep-rounds or --metrics-targets without what they need, a
// --metrics address that is not one, a --db file that cannot be opened.
func TestWatchBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
		ran  bool // RunE was entered (the check is in it), nothing was sent
	}{
		{[]string{"watch"}, "Usage:", true},
		{[]string{"watch", "ping", "--every", "0s", "127.0.0.1"}, "--every 0s: want a duration", false},
		{[]string{"watch", "ping", "--every", "-1s", "127.0.0.1"}, "--every -1s: want", false},
		{[]string{"watch", "ping", "--every", "500ms", "--timeout", "1s", "127.0.0.1"}, "--every 500ms is shorter than --timeout 1s", true},
		{[]string{"watch", "tcp", "-p", "22", "--every", "1s", "--timeout", "2s", "127.0.0.1"}, "--every 1s is shorter than --timeout 2s", true},
		{[]string{"watch", "ssh", "--every", "1s", "--timeout", "2s", "127.0.0.1", "--", "true"}, "--every 1s is shorter than --timeout 2s", true},
		{[]string{"watch", "ping", "--every", "2s", "--count", "5", "--interval", "1s", "127.0.0.1"}, "--every 2s is shorter than a target's 5 echo requests", true},
		{[]string{"watch", "ping", "--confirm", "3/2", "127.0.0.1"}, "--confirm: confirm \"3/2\": want N/M", true},
		{[]string{"watch", "ping", "--confirm", "x", "127.0.0.1"}, "--confirm: confirm \"x\"", true},
		{[]string{"watch", "ping", "--confirm", "1/9", "127.0.0.1"}, "M <= 8", true},
		{[]string{"watch", "exec", "--flap", "5/4", "127.0.0.1", "--", "true"}, "--flap: flap \"5/4\"", true},
		{[]string{"watch", "ping", "--loss-threshold", "101", "127.0.0.1"}, "--loss-threshold 101: want a number from 0 to 100", false},
		{[]string{"watch", "ping", "--all", "--alive", "127.0.0.1"}, "--alive and --all: choose one", false},
		{[]string{"watch", "tcp", "-p", "22", "--server", "nats://127.0.0.1:4222", "--rounds", "20000", "127.0.0.1"}, "--rounds 20000 with --server and --every 1m0s: at most 10078", true},
		{[]string{"watch", "ping", "--progress", "always", "127.0.0.1"}, "--progress:", false},
		{[]string{"watch", "ping", "--rounds", "-1", "127.0.0.1"}, "--rounds -1: want", false},
		{[]string{"watch", "exec", "127.0.0.1"}, "no command given", true},
		{[]string{"watch", "ping", "--every", "1m"}, "no targets given", true},
		{[]string{"watch", "exec", "--db", "x.db", "--keep", "3x", "127.0.0.1", "--", "true"}, `--keep 3x: unknown unit "x"`, false},
		{[]string{"watch", "exec", "--db", "x.db", "--keep", "-1d", "127.0.0.1", "--", "true"}, "--keep -1d: want a duration with a unit", false},
		{[]string{"watch", "exec", "--keep-rounds", "3", "127.0.0.1", "--", "true"}, "--keep-rounds needs --db", false},
		{[]string{"watch", "exec", "--db", "x.db", "--keep-rounds", "-1", "127.0.0.1", "--", "true"}, "--keep-rounds -1: want", false},
		{[]string{"watch", "exec", "--metrics", "nope", "127.0.0.1", "--", "true"}, `--metrics: metrics address "nope": want HOST:PORT`, true},
		{[]string{"watch", "exec", "--metrics-targets", "5", "127.0.0.1", "--", "true"}, "--metrics-targets needs --metrics", false},
		{[]string{"watch", "ssh", "--max-connections", "-1", "127.0.0.1", "--", "true"}, "--max-connections -1: want", false},
		{[]string{"watch", "exec", "--db", "/nonexistent-dir/x.db", "127.0.0.1", "--", "true"}, "--db: ", true},
	}
	for _, c := range cases {
		o := runIn(c.args...)
		if o.code != ExitUsage || o.ran != c.ran || !strings.Contains(o.stderr, c.want) || o.stdout != "" {
			t.Errorf("fanout %q: exit %d (ran %v), stdout %q, stderr:\n%s\nwant 2 and %q", c.args, o.code, o.ran, o.stdout, o.stderr, c.want)
		}
	}
}
