package cli

// Flag checks, in one place for every command:
//
//   - every numeric flag (int, uint, float, duration) accepts only the range
//     flagRanges gives it, checked as the flag is parsed: NaN, Inf, negative
//     values, out-of-range and malformed numbers are usage errors naming the
//     flag and what it accepts, before arguments are even looked at;
//   - flags that contradict each other (exclusive) or that mean nothing
//     without another (flagNeeds) are refused before the command runs;
//   - a flag a command registers but does not use is refused as it is
//     parsed, and hidden from help (refuseFlag).
//
// checkFlags installs them on a command tree.

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/job/icmp"
)

// Upper bounds of the numeric flags that size something.
const (
	maxConcurrency = 1 << 24 // targets in flight: a /8 at once
	maxRate        = 1e9     // targets (or echo requests) per second
	maxRetries     = 100
	maxOutput      = 1 << 30 // bytes kept per stream and target
	maxHandshakes  = 1 << 20
)

// flagRange is what a numeric flag accepts: min to max (inclusive, or above
// min with above), and 0 as well when zero says what 0 means.
type flagRange struct {
	min, max float64
	above    bool   // min itself is refused
	zero     string // when set, 0 is accepted and means this
}

var noMax = math.Inf(1)

// flagRanges is the range of every numeric flag, by flag name, or by
// "COMMAND FLAG" where one command's flag differs. A numeric flag missing
// here accepts 0 or more; TestNumericFlagsRefuseHostileValues fails until
// it is added.
var flagRanges = map[string]flagRange{
	"concurrency":     {min: 1, max: maxConcurrency},
	"rate":            {min: 0, max: maxRate, zero: "unlimited"},
	"timeout":         {min: 0, max: noMax, zero: "no limit"},
	"ping timeout":    {min: 0, max: noMax, above: true},
	"retries":         {min: 0, max: maxRetries},
	"seed":            {min: 0, max: math.MaxUint64},
	"max-targets":     {min: 1, max: noMax},
	"count":           {min: 1, max: icmp.MaxCount},
	"interval":        {min: 0, max: noMax, above: true},
	"payload-size":    {min: 32, max: 65000, zero: "the minimum, 32"},
	"max-output":      {min: 1, max: maxOutput},
	"port":            {min: 1, max: 65535, zero: "the ssh config's, else 22"},
	"connect-timeout": {min: 0, max: noMax, zero: "the ssh config's, else 10s"},
	"max-handshakes":  {min: 1, max: maxHandshakes},
	"max-connections": {min: 1, max: maxConcurrency, zero: "as many as -c"},
	"ack-wait":        {min: float64(100 * time.Millisecond), max: noMax},
	"db-sweep":        {min: 1, max: math.MaxInt64, zero: "the newest matching sweep"},
	"retention":       {min: float64(time.Second), max: float64(cluster.MaxRetention)},
	"keep-rounds":     {min: 0, max: maxKeepRounds, zero: "no limit"},
	"metrics-targets": {min: 0, max: maxMetricsTargets, zero: "no per-target series"},
	"results watch":   {min: 0, max: math.MaxInt64, zero: "the file's only watch"},
	"history watch":   {min: 0, max: math.MaxInt64, zero: "the file's only watch"},
	"round":           {min: 0, max: math.MaxInt64, zero: "the last recorded round"},
	"history port":    {min: 0, max: 65535, zero: "every port"},
	"every":           {min: 0, max: noMax, above: true},
	"rounds":          {min: 1, max: math.MaxUint64, zero: "until interrupted"},
	"loss-threshold":  {min: 0, max: 100, zero: "no loss changes"},
	"replicas":        {min: 1, max: cluster.MaxReplicas, zero: "3 when --routes names two peers or more, else 1"},
}

// rangeOf is the range of cmd's flag name, and whether one is declared.
func rangeOf(cmd, name string) (flagRange, bool) {
	if r, ok := flagRanges[cmd+" "+name]; ok {
		return r, true
	}
	r, ok := flagRanges[name]
	if !ok {
		r = flagRange{min: 0, max: noMax}
	}
	return r, ok
}

// numKind is how a numeric flag's value is written.
type numKind int

const (
	notNumeric numKind = iota
	kindInt
	kindUint
	kindFloat
	kindDuration
)

// kindOf classifies a pflag value type.
func kindOf(typ string) numKind {
	switch typ {
	case "int", "int8", "int16", "int32", "int64":
		return kindInt
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return kindUint
	case "float32", "float64":
		return kindFloat
	case "duration":
		return kindDuration
	}
	return notNumeric
}

// parseNum reads s as kind would.
func parseNum(kind numKind, s string) (float64, error) {
	switch kind {
	case kindInt:
		v, err := strconv.ParseInt(s, 0, 64)
		return float64(v), err
	case kindUint:
		v, err := strconv.ParseUint(s, 0, 64)
		return float64(v), err
	case kindDuration:
		d, err := time.ParseDuration(s)
		return float64(d), err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		err = errors.New("not a finite number")
	}
	return v, err
}

// accepts reports whether v is in r.
func (r flagRange) accepts(v float64) bool {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return false
	case v == 0 && r.zero != "":
		return true
	case v < r.min || (r.above && v == r.min):
		return false
	}
	return v <= r.max
}

// want says what r accepts, in kind's words: "an integer from 1 to 65535",
// "a duration (500ms, 2s, 1m) of 0 or more (0 = no limit)".
func (r flagRange) want(kind numKind) string {
	num := func(v float64) string {
		if kind == kindDuration && v != 0 {
			return time.Duration(v).String()
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	var what string
	switch kind {
	case kindInt, kindUint:
		what = "an integer"
	case kindDuration:
		what = "a duration (500ms, 2s, 1m)"
	default:
		what = "a number"
	}
	var s string
	switch {
	case r.above && math.IsInf(r.max, 1):
		s = fmt.Sprintf("%s of more than %s", what, num(r.min))
	case math.IsInf(r.max, 1) || (kind == kindUint && r.max >= math.MaxUint64) || (kind == kindInt && r.max >= math.MaxInt64):
		s = fmt.Sprintf("%s of %s or more", what, num(r.min))
	default:
		s = fmt.Sprintf("%s from %s to %s", what, num(r.min), num(r.max))
	}
	if r.zero != "" {
		s += fmt.Sprintf(" (0 = %s)", r.zero)
	}
	return s
}

// flagError is a refused flag value, "--rate NaN: want a number from 0 to
// 1000000000 (0 = unlimited)", or a refused flag, "--retries: why".
type flagError struct {
	name, value, why string
	flagOnly         bool // the flag is refused whatever its value
}

func (e *flagError) Error() string {
	if e.flagOnly {
		return fmt.Sprintf("--%s: %s", e.name, e.why)
	}
	v := e.value
	if v == "" || strings.ContainsAny(v, " \t") || strconv.Quote(v) != `"`+v+`"` {
		v = strconv.Quote(v)
	}
	return fmt.Sprintf("--%s %s: %s", e.name, v, e.why)
}

// checkedValue is a numeric flag's value that refuses what its range does
// not accept, before the value it wraps is set.
type checkedValue struct {
	pflag.Value
	cmd, name string
	kind      numKind
}

func (v *checkedValue) Set(s string) error {
	r, _ := rangeOf(v.cmd, v.name)
	x, err := parseNum(v.kind, s)
	if err != nil || !r.accepts(x) {
		return &flagError{name: v.name, value: s, why: "want " + r.want(v.kind)}
	}
	if err := v.Value.Set(s); err != nil {
		return &flagError{name: v.name, value: s, why: "want " + r.want(v.kind)}
	}
	return nil
}

// checkRange checks a value that did not come from a flag (a stored sweep's
// options) as flag name would.
func checkRange(name string, kind numKind, v float64) error {
	r, _ := rangeOf("", name)
	if r.accepts(v) {
		return nil
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if kind == kindDuration {
		s = time.Duration(v).String()
	}
	return usageError(&flagError{name: name, value: s, why: "want " + r.want(kind)})
}

// checkFlags makes every numeric flag of the tree under c check its range
// as it is parsed, and every command check its flags' relations right after
// (markExclusive, flagNeeds), before its arguments: the Args hook is the
// first cobra runs after parsing.
func checkFlags(c *cobra.Command) {
	// A nil Args of a command with subcommands (the root) is cobra's
	// "unknown command" check: kept as it is.
	if c.Annotations[annChecked] == "" && !(c.Args == nil && c.HasSubCommands()) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[annChecked] = "yes"
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := checkFlagRelations(cmd); err != nil {
				return err
			}
			if args == nil {
				return nil // cobra's default: any arguments
			}
			return args(cmd, a)
		}
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		switch f.Value.(type) {
		case *checkedValue, *refusedValue:
			return
		}
		if k := kindOf(f.Value.Type()); k != notNumeric {
			f.Value = &checkedValue{Value: f.Value, cmd: c.Name(), name: f.Name, kind: k}
		}
	})
	for _, sub := range c.Commands() {
		checkFlags(sub)
	}
}

// refusedValue is the value of a flag the command does not use: any value
// is refused, with why.
type refusedValue struct {
	typ, name, why string
}

func (v *refusedValue) Set(string) error { return &flagError{name: v.name, why: v.why, flagOnly: true} }
func (v *refusedValue) String() string   { return "" }
func (v *refusedValue) Type() string     { return v.typ }

// refuseFlag makes f refused (with why) and hidden from help.
func refuseFlag(f *pflag.Flag, why string) {
	// The flag alone is enough to be refused: --timeout at the end of the
	// line gets the reason, not "needs an argument".
	f.NoOptDefVal = "refused"
	f.Value = &refusedValue{typ: f.Value.Type(), name: f.Name, why: why}
	f.Hidden = true
}

// flagNeeds lists the flags that mean nothing without another one.
var flagNeeds = []struct{ flag, needs, why string }{
	{"seed", "shuffle", "the seed orders targets only with --shuffle"},
	{"detach", "server", "a local sweep cannot outlive this command"},
	{"db-sweep", "db", "it names a sweep in the --db file"},
	{"keep", "db", "it prunes the rounds the --db file keeps"},
	{"keep-rounds", "db", "it prunes the rounds the --db file keeps"},
	{"metrics-targets", "metrics", "it bounds the series --metrics serves"},
}

// annChecked marks a command whose Args checkFlags wrapped.
const annChecked = "fanout-flags-checked"

// annExclusive is the Annotations key of a command's exclusive flag groups
// (set by exclusive), checked with a clear message before cobra's own check.
const annExclusive = "fanout-exclusive"

// exclusive marks names as flags of cmd that cannot be given together.
func exclusive(cmd *cobra.Command, names ...string) {
	cmd.MarkFlagsMutuallyExclusive(names...)
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	g := strings.Join(names, " ")
	if old := cmd.Annotations[annExclusive]; old != "" {
		g = old + ";" + g
	}
	cmd.Annotations[annExclusive] = g
}

// markExclusive marks, on every command of the tree that has both,
// --alive and --dead exclusive.
func markExclusive(c *cobra.Command) {
	if c.Flags().Lookup("alive") != nil && c.Flags().Lookup("dead") != nil {
		exclusive(c, "alive", "dead")
	}
	for _, sub := range c.Commands() {
		markExclusive(sub)
	}
}

// checkFlagRelations refuses contradictory flags and flags that need
// another.
func checkFlagRelations(cmd *cobra.Command) error {
	fl := cmd.Flags()
	if groups := cmd.Annotations[annExclusive]; groups != "" {
		for _, g := range strings.Split(groups, ";") {
			var set []string
			for _, name := range strings.Fields(g) {
				if fl.Changed(name) {
					set = append(set, "--"+name)
				}
			}
			if len(set) > 1 {
				sort.Strings(set)
				return usageErrorf("%s: choose one", strings.Join(set, " and "))
			}
		}
	}
	for _, n := range flagNeeds {
		if fl.Lookup(n.flag) != nil && fl.Lookup(n.needs) != nil && fl.Changed(n.flag) && !fl.Changed(n.needs) {
			return usageErrorf("--%s needs --%s: %s", n.flag, n.needs, n.why)
		}
	}
	return nil
}
