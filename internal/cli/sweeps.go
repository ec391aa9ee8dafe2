package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/report"
)

func init() { register(newSweepsCmd) }

// sweepRow is one sweep in `fanout sweeps -o jsonl`.
type sweepRow struct {
	ID        int64    `json:"id"`
	Job       string   `json:"job"`
	Targets   []string `json:"targets"`
	State     string   `json:"state"`
	Reason    string   `json:"reason,omitempty"`
	Total     uint64   `json:"total"`
	Done      uint64   `json:"done"`
	Up        uint64   `json:"up"`
	Down      uint64   `json:"down"`
	Errors    uint64   `json:"errors"`
	Start     string   `json:"start"`
	ElapsedMs int64    `json:"elapsed_ms"`
	Rate      float64  `json:"rate"` // targets finished per second of wall time
	Runs      int      `json:"runs"`
	Version   string   `json:"version,omitempty"`
}

func newSweepsCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "sweeps FILE",
		Short: "List the sweeps in a fanout database, with their counts and durations",
		Long: `List the sweeps in a fanout database, with their counts and durations.

RATE is targets finished per second of wall time (done over duration), as
in a sweep's summary and its progress line (which takes the last 5s).`,
		Example: `  fanout sweeps scan.db
  fanout sweeps -o jsonl scan.db`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "jsonl" {
				return usageErrorf("--output %q: want text or jsonl", format)
			}
			st, err := openDB(args[0])
			if err != nil {
				return err
			}
			defer st.Close()
			sws, err := st.Sweeps()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			if format == "text" {
				if len(sws) == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s has no sweep yet\n", args[0])
					return nil
				}
				fmt.Fprintln(tw, "ID\tJOB\tSTATE\tDONE/TOTAL\tUP\tDOWN\tERROR\tSTARTED\tDURATION\tRATE\tRUNS\tTARGETS")
			}
			enc := json.NewEncoder(out)
			for _, sw := range sws {
				c, err := st.Counts(sw.ID)
				if err != nil {
					return err
				}
				if format == "jsonl" {
					if err := enc.Encode(sweepRow{ID: sw.ID, Job: sw.Spec.Job, Targets: sw.Spec.Targets, State: string(sw.State),
						Reason: sw.Reason, Total: sw.Total, Done: c.Done, Up: c.Up, Down: c.Down, Errors: c.Errors,
						Start: sw.Start.UTC().Format(time.RFC3339Nano), ElapsedMs: sw.Elapsed.Milliseconds(),
						Rate: output.Rate(int64(c.Done), sw.Elapsed), Runs: sw.Runs, Version: sw.Version}); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", sw.ID, output.Safe(sw.Spec.Job), output.Safe(string(sw.State)),
					c.Done, sw.Total, c.Up, c.Down, c.Errors, sw.Start.Local().Format("2006-01-02 15:04:05"),
					report.Short(sw.Elapsed), output.FormatRate(output.Rate(int64(c.Done), sw.Elapsed)), sw.Runs, abbrev(output.Safe(strings.Join(sw.Spec.Targets, " ")), 40))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "text or jsonl")
	cmd.AddCommand(newSweepsRmCmd())
	return cmd
}

// newSweepsRmCmd deletes sweeps from a cluster before their retention ends.
func newSweepsRmCmd() *cobra.Command {
	var server string
	var creds cluster.Credentials
	cmd := &cobra.Command{
		Use:   "rm [--server URL] SWEEP...",
		Short: "Delete sweeps from a cluster: spec, stdin, queued tasks and results",
		Long: `Delete sweeps submitted to a cluster now rather than when their retention
(--retention at submission, default 24h) runs out: the spec, the stdin kept for
the workers, the tasks still queued and every stored result. Workers drop the
tasks they hold. A local database (--db) keeps its own copy.`,
		Example: `  fanout sweeps rm --server nats://127.0.0.1:4222 20260102t030405-1a2b3c4d`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, id := range args {
				if !cluster.ValidSweepID(id) {
					return usageErrorf("sweep id %q: want letters, digits, - and _ (see fanout status)", id)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			url := serverURL(server)
			client, closeConn, err := dialCluster(ctx, url, creds, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeConn()
			var failed error
			for _, id := range args {
				err := client.Delete(ctx, id)
				switch {
				case errors.Is(err, cluster.ErrNoSweep):
					fmt.Fprintf(cmd.ErrOrStderr(), "fanout: sweep %s: not on %s (expired or deleted); what was left of it is removed\n", id, url)
					failed = exitCode(ExitSomeNotUp)
				case err != nil:
					return fmt.Errorf("%s: %w", url, err)
				default:
					fmt.Fprintf(cmd.ErrOrStderr(), "fanout: sweep %s deleted from %s: spec, stdin, tasks and results\n", id, url)
				}
			}
			return failed
		},
	}
	cmd.Flags().StringVar(&server, "server", "", serverFlagHelp)
	addCredFlags(cmd.Flags(), &creds)
	return cmd
}
