package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/store"
)

func init() { register(newDiffCmd) }

// Kinds of change diff reports.
const (
	changeUp     = "up"     // not up in A, up in B
	changeDown   = "down"   // up in A, not up in B
	changeClass  = "class"  // not up in both, for another reason
	changeOutput = "output" // same status, different exit code or stdout (exec, ssh)
	changeNew    = "new"    // only in B
	changeGone   = "gone"   // only in A
)

// diffRow is one changed target (the jsonl form of diff).
type diffRow struct {
	Change string      `json:"change"`
	Host   string      `json:"host"`
	Port   int         `json:"port,omitempty"`
	A      *diffResult `json:"a,omitempty"`
	B      *diffResult `json:"b,omitempty"`
}

type diffResult struct {
	Index    uint64     `json:"index"`
	Status   job.Status `json:"status"`
	Class    job.Class  `json:"class,omitempty"`
	ExitCode *int       `json:"exit_code,omitempty"`
	Stdout   *string    `json:"stdout,omitempty"`
}

func newDiffCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "diff FILE SWEEP_A SWEEP_B | diff FILE_A FILE_B | diff FILE",
		Short: "Show what changed between two sweeps of the same targets",
		Long: `Compare two stored sweeps target by target (matched by host and port, not by
index, so the target lists may differ): targets that came up, went down,
failed for another reason (error class), and, for exec and ssh, whose exit code
or stdout changed. Targets in only one sweep are listed as new or gone.

With FILE_A FILE_B the last sweep of each file is compared; with FILE alone,
its last two sweeps. A SWEEP is a sweep id, or W:N for round N of watch W
(recorded by fanout watch --db; W:last is its last round).
Exit status: 0 no change, 1 changes, 2 usage error.`,
		Example: `  fanout diff scan.db 1 2
  fanout diff last-week.db today.db
  fanout diff watch.db 1:40 1:last
  fanout diff -o jsonl fleet.db 4 5 | jq -r 'select(.change=="output") | .host'`,
		Args: cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "jsonl" {
				return usageErrorf("--output %q: want text or jsonl", format)
			}
			a, b, closeAll, err := diffSides(args)
			if err != nil {
				return err
			}
			defer closeAll()
			n, err := diffSweeps(cmd.Context(), a, b, format, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if n > 0 {
				return exitCode(ExitSomeNotUp)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "text or jsonl")
	return cmd
}

// side is one sweep to compare.
type side struct {
	st *store.Store
	sw store.Sweep
}

func diffSides(args []string) (a, b side, closeAll func(), err error) {
	var opened []*store.Store
	closeAll = func() {
		for _, s := range opened {
			s.Close()
		}
	}
	open := func(path string) (*store.Store, error) {
		st, err := openDB(path)
		if err == nil {
			opened = append(opened, st)
		}
		return st, err
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	switch len(args) {
	case 1: // the file's last two sweeps
		st, err := open(args[0])
		if err != nil {
			return a, b, closeAll, err
		}
		sws, err := st.Sweeps()
		if err != nil {
			return a, b, closeAll, err
		}
		if len(sws) < 2 {
			return a, b, closeAll, usageErrorf("%s has %d sweep(s): diff needs two (or give FILE_A FILE_B)", args[0], len(sws))
		}
		return side{st, sws[len(sws)-2]}, side{st, sws[len(sws)-1]}, closeAll, nil
	case 2: // two files, their last sweeps
		for i, path := range args {
			if _, serr := os.Stat(path); serr != nil {
				_, nerr := strconv.Atoi(path)
				if _, _, round := store.ParseRoundRef(path); nerr == nil || round {
					return a, b, closeAll, usageErrorf("diff %s %s: want FILE SWEEP_A SWEEP_B or FILE_A FILE_B", args[0], args[1])
				}
			}
			st, err := open(path)
			if err != nil {
				return a, b, closeAll, err
			}
			sw, err := pickSweep(st, "")
			if err != nil {
				return a, b, closeAll, err
			}
			if i == 0 {
				a = side{st, sw}
			} else {
				b = side{st, sw}
			}
		}
		return a, b, closeAll, nil
	}
	st, err := open(args[0])
	if err != nil {
		return a, b, closeAll, err
	}
	swa, err := pickSweep(st, args[1])
	if err != nil {
		return a, b, closeAll, err
	}
	swb, err := pickSweep(st, args[2])
	if err != nil {
		return a, b, closeAll, err
	}
	return side{st, swa}, side{st, swb}, closeAll, nil
}

// stream yields a sweep's Results ordered by target, from a goroutine that
// stops when ctx is done.
func stream(ctx context.Context, s side) (<-chan job.Result, func() error) {
	ch := make(chan job.Result, 256)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		errc <- s.st.ResultsByTarget(ctx, s.sw.ID, func(r job.Result) error {
			select {
			case ch <- r:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return ch, func() error { return <-errc }
}

// cmpTarget orders Results as ResultsByTarget does: host (addresses by
// value, IPv4 then IPv6, then names in natural order: store.CompareHosts),
// port.
func cmpTarget(a, b *job.Result) int {
	if c := store.CompareHosts(a.Host, b.Host); c != 0 {
		return c
	}
	switch {
	case a.Port < b.Port:
		return -1
	case a.Port > b.Port:
		return 1
	}
	return 0
}

// diffSweeps merges the two sweeps in target order (constant memory however
// big they are) and writes each change; it returns the number of changes.
func diffSweeps(ctx context.Context, a, b side, format string, stdout, stderr io.Writer) (int, error) {
	warnMismatch(stderr, a, b)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ca, erra := stream(ctx, a)
	cb, errb := stream(ctx, b)
	// Fixed columns, not a tabwriter: a diff of a million targets streams.
	bw := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(bw)
	counts := map[string]int{}
	var same int
	emit := func(change string, ra, rb *job.Result) error {
		counts[change]++
		if format == "jsonl" {
			row := diffRow{Change: change, A: diffSide(ra), B: diffSide(rb)}
			r := ra
			if r == nil {
				r = rb
			}
			row.Host, row.Port = r.Host, r.Port
			return enc.Encode(row)
		}
		r := ra
		if r == nil {
			r = rb
		}
		name := output.Safe(r.Host)
		if r.Port != 0 {
			name += ":" + strconv.Itoa(r.Port)
		}
		var what string
		switch change {
		case changeNew:
			what = "only in B: " + describe(rb)
		case changeGone:
			what = "only in A: " + describe(ra)
		case changeOutput:
			what = outputChange(ra, rb)
		default:
			what = describe(ra) + " → " + describe(rb)
		}
		_, err := fmt.Fprintf(bw, "%-9s  %-21s  %s\n", label[change], name, what)
		return err
	}
	ra, oka := <-ca
	rb, okb := <-cb
	var err error
	for err == nil && (oka || okb) {
		c := 0
		switch {
		case !oka:
			c = 1
		case !okb:
			c = -1
		default:
			c = cmpTarget(&ra, &rb)
		}
		switch {
		case c < 0:
			err = emit(changeGone, &ra, nil)
			ra, oka = <-ca
		case c > 0:
			err = emit(changeNew, nil, &rb)
			rb, okb = <-cb
		default:
			if ch := compare(&ra, &rb); ch != "" {
				err = emit(ch, &ra, &rb)
			} else {
				same++
			}
			ra, oka = <-ca
			rb, okb = <-cb
		}
	}
	cancel()
	for range ca {
	}
	for range cb {
	}
	if e := erra(); err == nil && !errors.Is(e, context.Canceled) {
		err = e
	}
	if e := errb(); err == nil && !errors.Is(e, context.Canceled) {
		err = e
	}
	if err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	n := 0
	for _, v := range counts {
		n += v
	}
	fmt.Fprintf(stderr, "sweep %d (%s) → sweep %d (%s): %d came up, %d went down, %d changed reason, %d changed output, %d new, %d gone, %d unchanged\n",
		a.sw.ID, a.st.Path(), b.sw.ID, b.st.Path(), counts[changeUp], counts[changeDown], counts[changeClass],
		counts[changeOutput], counts[changeNew], counts[changeGone], same)
	return n, nil
}

// warnMismatch warns, once each, when the two sweeps ran different jobs or
// over different target sets: their diff is then mostly new and gone targets,
// or changes that are not changes of the hosts.
func warnMismatch(stderr io.Writer, a, b side) {
	name := func(s side) string {
		if a.st.Path() == b.st.Path() {
			return fmt.Sprintf("sweep %d", s.sw.ID)
		}
		return fmt.Sprintf("sweep %d of %s", s.sw.ID, output.Safe(s.st.Path()))
	}
	if a.sw.Spec.Job != b.sw.Spec.Job {
		fmt.Fprintf(stderr, "fanout: warning: different jobs: %s ran %s, %s ran %s\n",
			name(a), output.Safe(a.sw.Spec.Job), name(b), output.Safe(b.sw.Spec.Job))
	}
	targets := func(s side) string {
		t := strings.Join(s.sw.Spec.Targets, " ")
		if len(s.sw.Spec.Excludes) > 0 {
			t += " excluding " + strings.Join(s.sw.Spec.Excludes, " ")
		}
		return t
	}
	ta, tb := targets(a), targets(b)
	if ta != tb || a.sw.Total != b.sw.Total {
		fmt.Fprintf(stderr, "fanout: warning: different target sets: %s has %d targets (%s), %s has %d (%s); a target in only one is new or gone\n",
			name(a), a.sw.Total, abbrev(output.Safe(ta), 60), name(b), b.sw.Total, abbrev(output.Safe(tb), 60))
	}
}

var label = map[string]string{
	changeUp: "came up", changeDown: "went down", changeClass: "changed", changeOutput: "output",
	changeNew: "new", changeGone: "gone",
}

// compare is the change from a to b of the same target, or "".
func compare(a, b *job.Result) string {
	au, bu := a.Status == job.Up, b.Status == job.Up
	switch {
	case !au && bu:
		return changeUp
	case au && !bu:
		return changeDown
	case !au && (a.Status != b.Status || a.Class != b.Class):
		return changeClass
	}
	if !sameInt(a.ExitCode, b.ExitCode) || !bytes.Equal(a.Stdout, b.Stdout) {
		return changeOutput
	}
	return ""
}

func sameInt(a, b *int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func describe(r *job.Result) string {
	s := string(r.Status)
	if r.Class != "" {
		s += "/" + string(r.Class)
	}
	return output.Safe(s)
}

func outputChange(a, b *job.Result) string {
	var s string
	if !sameInt(a.ExitCode, b.ExitCode) {
		s = fmt.Sprintf("exit %s → %s", exitStr(a.ExitCode), exitStr(b.ExitCode))
	}
	if !bytes.Equal(a.Stdout, b.Stdout) {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("stdout %s → %s", firstLine(a.Stdout), firstLine(b.Stdout))
	}
	return s
}

func exitStr(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}

// firstLine quotes the start of an output for a one-line diff.
func firstLine(b []byte) string {
	lines := bytes.Count(b, []byte("\n"))
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	s := strconv.Quote(abbrev(string(b), 40))
	if lines > 1 {
		s += fmt.Sprintf(" (+%d lines)", lines-1)
	}
	return s
}

func diffSide(r *job.Result) *diffResult {
	if r == nil {
		return nil
	}
	d := &diffResult{Index: r.Index, Status: r.Status, Class: r.Class, ExitCode: r.ExitCode}
	if r.Stdout != nil {
		s := string(r.Stdout)
		d.Stdout = &s
	}
	return d
}
