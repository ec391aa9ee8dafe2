package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/report"
	"github.com/fanout/fanout/store"
)

func init() { register(newResultsCmd) }

func newResultsCmd() *cobra.Command {
	var (
		sweep, format      string
		alive, dead, quiet bool
		statuses, classes  []string
		watchID            int64
		round              uint64
	)
	cmd := &cobra.Command{
		Use:   "results FILE [flags]",
		Short: "Print the Results stored in a fanout database",
		Long: `Print the Results of one sweep stored with --db FILE, in index order, with the
same formats as a live sweep (text, jsonl, csv). The summary and an RTT
histogram go to stderr (-q to omit them). --sweep defaults to the last sweep.

A watch recorded with fanout watch --db keeps each round as a sweep:
--watch W --round N shows round N of watch W (--round alone: of the file's
only watch; --watch alone: its last recorded round). --sweep W:N says the same.`,
		Example: `  fanout results scan.db --dead
  fanout results scan.db --sweep 2 --class timeout -o csv
  fanout results scan.db -o jsonl | jq -r 'select(.rtt_ms > 100) | .host'
  fanout results watch.db --watch 1 --round 42 --dead`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := store.Query{}
			for _, s := range statuses {
				switch job.Status(s) {
				case job.Up, job.Down, job.Error:
					q.Status = append(q.Status, job.Status(s))
				default:
					return usageErrorf("--status %q: want up, down or error", s)
				}
			}
			if len(q.Status) == 0 {
				if alive {
					q.Status = []job.Status{job.Up}
				} else if dead {
					q.Status = []job.Status{job.Down, job.Error}
				}
			}
			for _, c := range classes {
				q.Class = append(q.Class, job.Class(c))
			}
			w, err := output.New(format, cmd.OutOrStdout(), output.Filter{})
			if err != nil {
				return usageError(fmt.Errorf("--output: %w", err))
			}
			st, err := openDB(args[0])
			if err != nil {
				return err
			}
			defer st.Close()
			var sw store.Sweep
			if fl := cmd.Flags(); fl.Changed("watch") || fl.Changed("round") {
				sw, err = pickRound(st, watchID, round)
			} else {
				sw, err = pickSweep(st, sweep)
			}
			if err != nil {
				return err
			}
			var (
				hist report.Histogram
				n    uint64
				by   = map[job.Status]uint64{}
			)
			err = st.Results(cmd.Context(), sw.ID, q, func(r job.Result) error {
				n++
				by[r.Status]++
				if r.Status == job.Up {
					hist.Add(r.RTT)
				}
				return w.Write(r)
			})
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if !quiet {
				c, err := st.Counts(sw.ID)
				if err != nil {
					return err
				}
				printStored(cmd.ErrOrStderr(), st.Path(), sw, c)
				if n != c.Done {
					fmt.Fprintf(cmd.ErrOrStderr(), "shown: %d (%d up, %d down, %d error)\n", n, by[job.Up], by[job.Down], by[job.Error])
				}
				hist.WriteText(cmd.ErrOrStderr(), 40)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&sweep, "sweep", "", "sweep id, or W:N for round N of watch W (default: the last sweep in FILE)")
	fl.Int64Var(&watchID, "watch", 0, "show a round of this watch (see --round; 0 = the file's only watch)")
	fl.Uint64Var(&round, "round", 0, "with a watch: show this round (0 = its last recorded round)")
	fl.StringVarP(&format, "output", "o", "text", "result format: text, jsonl or csv")
	fl.BoolVar(&alive, "alive", false, "show only targets that are up")
	fl.BoolVar(&dead, "dead", false, "show only targets that are not up")
	fl.StringSliceVar(&statuses, "status", nil, "show only these statuses: up, down, error (repeatable or comma-separated)")
	fl.StringSliceVar(&classes, "class", nil, "show only these error classes: timeout, refused, exit, ... (repeatable or comma-separated)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "no summary or histogram on stderr")
	exclusive(cmd, "alive", "dead", "status")
	exclusive(cmd, "sweep", "watch")
	exclusive(cmd, "sweep", "round")
	return cmd
}

// printStored is the summary of a stored sweep: one line of what it is, one
// of its counts, one of its error classes.
func printStored(w io.Writer, file string, sw store.Sweep, c store.Counts) {
	// What a file holds is printed escaped: it may come from anywhere.
	fmt.Fprintf(w, "sweep %d in %s: %s %s, %s", sw.ID, output.Safe(file), output.Safe(sw.Spec.Job),
		abbrev(output.Safe(strings.Join(sw.Spec.Targets, " ")), 60), output.Safe(string(sw.State)))
	if sw.Reason != "" && sw.State != store.Finished {
		fmt.Fprintf(w, " (%s)", output.Safe(sw.Reason))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d of %d targets: %d up, %d down, %d error", c.Done, sw.Total, c.Up, c.Down, c.Errors)
	if sw.Elapsed > 0 {
		fmt.Fprintf(w, " in %s", report.Short(sw.Elapsed))
	}
	fmt.Fprintln(w)
	if len(c.Classes) > 0 {
		type kv struct {
			k string
			v uint64
		}
		var cl []kv
		for k, v := range c.Classes {
			cl = append(cl, kv{k, v})
		}
		sort.Slice(cl, func(i, j int) bool { return cl[i].v > cl[j].v || (cl[i].v == cl[j].v && cl[i].k < cl[j].k) })
		parts := make([]string, len(cl))
		for i, e := range cl {
			if e.k == string(job.ClassExit) { // in words: not to be read as "exit status 3"
				parts[i] = fmt.Sprintf("non-zero exit status: %d %s", e.v, map[bool]string{true: "host", false: "hosts"}[e.v == 1])
				continue
			}
			parts[i] = fmt.Sprintf("%s %d", output.Safe(e.k), e.v)
		}
		fmt.Fprintf(w, "not up: %s\n", strings.Join(parts, ", "))
	}
}

func abbrev(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
