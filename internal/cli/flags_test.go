package cli

// In-process tests of the flag checks of flags.go, over the whole command
// tree: a flag added later is covered without editing them. execute reports
// whether a command ran; a refused flag must stop fanout before that, so
// nothing can have been sent.

import (
	"bytes"
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commandFlag is one flag of one command of the tree.
type commandFlag struct {
	path []string // the command's words after "fanout"
	cmd  *cobra.Command
	flag *pflag.Flag
}

// treeFlags lists every flag of every command, hidden ones included.
func treeFlags(t *testing.T) []commandFlag {
	t.Helper()
	var out []commandFlag
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			out = append(out, commandFlag{path: path, cmd: c, flag: f})
		})
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRoot(), nil)
	if len(out) < 50 {
		t.Fatalf("only %d flags found in the command tree", len(out))
	}
	return out
}

// outcome is one in-process run of fanout.
type outcome struct {
	code           int
	ran            bool
	stdout, stderr string
}

// runIn runs fanout in this process. Its context is already cancelled: a
// command that ran by mistake stops at once (and the test fails on ran).
func runIn(args ...string) outcome {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code, ran := execute(ctx, newRoot(), args, strings.NewReader(""), &out, &errb)
	return outcome{code, ran, out.String(), errb.String()}
}

// numericType matches the pflag value types that hold numbers, whatever
// flags.go knows of: a new kind of numeric flag must be checked too.
var numericType = regexp.MustCompile(`(?i)int|float|duration|count`)

// hostileAlways are refused by every numeric flag: not numbers, not finite,
// negative, overflowing, or (for durations) without a unit.
var hostileAlways = []string{
	"NaN", "nan", "Inf", "+Inf", "-Inf", "infinity", "1e400", "-1e400",
	"-1", "-1s", "-1ns", "-0.5", "99999999999999999999", "100000000000h",
	"", " ", "1x", "0x", "--", "1,000",
}

// hostileMaybe are refused unless the flag's declared range holds them.
var hostileMaybe = []string{"0", "0s", "9223372036854775807", "18446744073709551615"}

// TestNumericFlagsRefuseHostileValues: every numeric flag of every command
// has a declared range, and refuses NaN, infinities, negative numbers,
// overflows, empty and malformed values, 0 where 0 is not accepted and
// numbers above its maximum: exit 2, a message naming the flag and what it
// accepts, no panic, and no command run.
func TestNumericFlagsRefuseHostileValues(t *testing.T) {
	numeric := 0
	for _, cf := range treeFlags(t) {
		f := cf.flag
		if !numericType.MatchString(f.Value.Type()) {
			continue
		}
		numeric++
		name := strings.Join(append(append([]string{"fanout"}, cf.path...), "--"+f.Name), " ")
		_, refused := f.Value.(*refusedValue)
		cv, checked := f.Value.(*checkedValue)
		if !refused && !checked {
			t.Errorf("%s (%s): not checked as it is parsed (checkFlags does not know type %q)", name, f.Value.Type(), f.Value.Type())
			continue
		}
		r, declared := rangeOf(cf.cmd.Name(), f.Name)
		if !refused && !declared {
			t.Errorf("%s: no range declared: add %q to flagRanges", name, f.Name)
		}
		values := append([]string(nil), hostileAlways...)
		for _, v := range hostileMaybe {
			if refused {
				values = append(values, v)
				continue
			}
			if x, err := parseNum(cv.kind, v); err != nil || !r.accepts(x) {
				values = append(values, v)
			}
		}
		for _, v := range values {
			args := append(append([]string(nil), cf.path...), "--"+f.Name+"="+v)
			o := runIn(args...)
			switch {
			case strings.Contains(o.stderr, "panic") || strings.Contains(o.stderr, "goroutine "):
				t.Errorf("fanout %q: panicked:\n%s", args, o.stderr)
			case o.code != ExitUsage || o.ran:
				t.Errorf("fanout %q: exit %d (command ran: %v), want 2 before any command; stderr:\n%s", args, o.code, o.ran, o.stderr)
			case !strings.Contains(o.stderr, "--"+f.Name):
				t.Errorf("fanout %q: the message does not name --%s:\n%s", args, f.Name, o.stderr)
			case !refused && !strings.Contains(o.stderr, "want "):
				t.Errorf("fanout %q: the message does not say what is accepted:\n%s", args, o.stderr)
			case o.stdout != "":
				t.Errorf("fanout %q: stdout %q, want none", args, o.stdout)
			}
		}
	}
	if numeric < 20 {
		t.Errorf("only %d numeric flags found: the walk misses some", numeric)
	}
}

// TestNumericFlagsAcceptTheirRange: the values at the edges of a range are
// accepted (parsing gets past them), so the checks refuse no valid input.
func TestNumericFlagsAcceptTheirRange(t *testing.T) {
	for _, cf := range treeFlags(t) {
		cv, ok := cf.flag.Value.(*checkedValue)
		if !ok {
			continue
		}
		r, _ := rangeOf(cf.cmd.Name(), cf.flag.Name)
		num := func(v float64) string {
			if cv.kind == kindDuration {
				return time.Duration(v).String()
			}
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		good := []string{num(r.min)}
		if r.above {
			good = []string{num(r.min + 1)}
		}
		if !math.IsInf(r.max, 1) && r.max < 1<<53 {
			good = append(good, num(r.max))
		}
		if r.zero != "" {
			good = append(good, "0")
		}
		for _, v := range good {
			if err := cv.Set(v); err != nil {
				t.Errorf("fanout %s --%s=%s: refused: %v", strings.Join(cf.path, " "), cf.flag.Name, v, err)
			}
		}
	}
}

// TestUnusedFlagsRefusedAndHidden: a flag a command registers without using
// it is refused, with the reason, and absent from its help.
func TestUnusedFlagsRefusedAndHidden(t *testing.T) {
	want := map[string][]string{
		"ping":   {"retries"},
		"resume": append(append([]string(nil), resumeKeeps...), "db"),
	}
	for _, cf := range treeFlags(t) {
		if _, ok := cf.flag.Value.(*refusedValue); !ok {
			continue
		}
		if !cf.flag.Hidden {
			t.Errorf("fanout %s --%s: refused but not hidden", strings.Join(cf.path, " "), cf.flag.Name)
		}
	}
	for cmd, names := range want {
		help := runIn(cmd, "--help")
		_, flags, ok := strings.Cut(help.stdout, "\nFlags:\n")
		if help.code != 0 || !ok {
			t.Fatalf("fanout %s --help: exit %d, no Flags: section: %s%s", cmd, help.code, help.stdout, help.stderr)
		}
		for _, name := range names {
			if strings.Contains(flags, "--"+name+" ") || strings.Contains(flags, "--"+name+"\n") {
				t.Errorf("fanout %s --help lists --%s, which %s refuses:\n%s", cmd, name, cmd, help.stdout)
			}
			for _, args := range [][]string{{cmd, "--" + name, "1"}, {cmd, "--" + name + "=x"}, {cmd, "FILE", "--" + name}, {cmd, "--" + name, "FILE"}} {
				o := runIn(args...)
				if o.code != ExitUsage || o.ran || !strings.Contains(o.stderr, "--"+name+":") {
					t.Errorf("fanout %q: exit %d (ran %v), stderr %q; want 2, refused before running, naming --%s", args, o.code, o.ran, o.stderr, name)
				}
			}
		}
	}
	// What ping refuses is still there for the others.
	if h := runIn("exec", "--help"); !strings.Contains(h.stdout, "--retries") {
		t.Errorf("exec --help lacks --retries:\n%s", h.stdout)
	}
}

// TestContradictoryFlags: --alive with --dead on every command that has
// both, and the other exclusive or dependent flags, are refused before any
// command runs.
func TestContradictoryFlags(t *testing.T) {
	both := 0
	seen := map[string]bool{}
	for _, cf := range treeFlags(t) {
		key := strings.Join(cf.path, " ")
		if seen[key] || cf.cmd.Flags().Lookup("alive") == nil || cf.cmd.Flags().Lookup("dead") == nil {
			continue
		}
		seen[key] = true
		both++
		args := append(append([]string(nil), cf.path...), "--alive", "--dead")
		if o := runIn(args...); o.code != ExitUsage || o.ran || !strings.Contains(o.stderr, "--alive and --dead: choose one") {
			t.Errorf("fanout %q: exit %d (ran %v), stderr %q; want 2 and --alive and --dead: choose one", args, o.code, o.ran, o.stderr)
		}
	}
	if both < 6 { // ping tcp exec ssh resume results attach
		t.Errorf("--alive and --dead found together on %d commands only", both)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"results", "x.db", "--dead", "--status", "up"}, "--dead and --status: choose one"},
		{[]string{"ssh", "--gather", "--outdir", "dir", "h", "--", "true"}, "--gather and --outdir: choose one"},
		{[]string{"exec", "--seed", "7", "127.0.0.1", "--", "true"}, "--seed needs --shuffle"},
		{[]string{"tcp", "-p", "22", "--detach", "127.0.0.1"}, "--detach needs --server"},
		{[]string{"attach", "--db-sweep", "2", "--server", "nats://127.0.0.1:1", "x"}, "--db-sweep needs --db"},
	}
	for _, c := range cases {
		if o := runIn(c.args...); o.code != ExitUsage || o.ran || !strings.Contains(o.stderr, c.want) {
			t.Errorf("fanout %q: exit %d (ran %v), stderr %q; want 2 and %q", c.args, o.code, o.ran, o.stderr, c.want)
		}
	}
}
