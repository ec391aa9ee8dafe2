package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/output"
)

func init() { register(newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var server, format string
	var creds cluster.Credentials
	cmd := &cobra.Command{
		Use:   "status [--server URL]",
		Short: "Show a cluster's sweeps and workers",
		Long: `List the sweeps submitted to the cluster (progress, workers on them, rate) and
the live workers (last heartbeat, targets in flight, tasks held).

-o json prints one object {"sweeps": [...], "workers": [...]}; -o jsonl one
line per sweep and per worker, each with "type": "sweep" or "worker" beside
the same fields.`,
		Example: `  fanout status
  fanout status --server nats://10.0.0.1:4222 -o json
  fanout status -o jsonl | jq -r 'select(.type=="worker") | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" && format != "jsonl" {
				return usageErrorf("--output %q: want text, json or jsonl", format)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			url := serverURL(server)
			client, closeConn, err := dialCluster(ctx, url, creds, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeConn()
			st, err := client.Status(ctx)
			if err != nil {
				return fmt.Errorf("status %s: %w", url, err)
			}
			out := cmd.OutOrStdout()
			for i := range st.Sweeps {
				st.Sweeps[i].Spec.JobOptions = nil // may hold secrets (ssh)
			}
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			if format == "jsonl" {
				return statusJSONL(out, st)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "SWEEP\tJOB\tTARGETS\tDONE\tPROGRESS\tRATE/s\tTASKS LEFT\tWORKERS\tSTATE\tSUBMITTED\n")
			for _, s := range st.Sweeps {
				state := "running"
				switch {
				case s.Complete:
					state = "complete"
				case !s.Published:
					state = "submitting"
				case len(s.Workers) == 0:
					state = "waiting for workers"
				}
				pct := 100.0
				if s.Total > 0 {
					pct = 100 * float64(s.DoneApprox) / float64(s.Total)
				}
				ws := strings.Join(s.Workers, ",")
				if ws == "" {
					ws = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f%%\t%.0f\t%d\t%s\t%s\t%s\n", s.ID, s.Spec.Job, s.Total, s.DoneApprox,
					pct, s.Rate, s.TasksQueued, ws, state, s.Submitted.Local().Format("2006-01-02 15:04:05"))
			}
			if len(st.Sweeps) == 0 {
				fmt.Fprintf(tw, "(no sweeps)\n")
			}
			fmt.Fprintf(tw, "\nWORKER\tHOST\tLAST SEEN\tIN FLIGHT\tCONCURRENCY\tTASKS HELD\tTASKS DONE\tRESULTS\tALLOW\tTAGS\n")
			for _, w := range st.Workers {
				held := 0
				for _, n := range w.Sweeps {
					held += n
				}
				fmt.Fprintf(tw, "%s\t%s\t%s ago\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", w.Name, w.Host,
					time.Since(w.Seen).Round(100*time.Millisecond), w.InFlight, w.Concurrency, held,
					w.TasksDone, w.ResultsDone, strings.Join(w.Allow, ","), output.Safe(cluster.FormatTags(w.Tags)))
			}
			if len(st.Workers) == 0 {
				fmt.Fprintf(tw, "(no live workers)\n")
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "", serverFlagHelp)
	fl.StringVarP(&format, "output", "o", "text", "text, json or jsonl")
	addCredFlags(fl, &creds)
	return cmd
}

// statusJSONL writes st as `status -o jsonl` does: a line per sweep, then a
// line per worker, each typed.
func statusJSONL(w io.Writer, st cluster.Status) error {
	type sweep struct {
		Type string `json:"type"`
		cluster.SweepStatus
	}
	type worker struct {
		Type string `json:"type"`
		cluster.Heartbeat
	}
	enc := json.NewEncoder(w)
	for _, s := range st.Sweeps {
		if err := enc.Encode(sweep{"sweep", s}); err != nil {
			return err
		}
	}
	for _, h := range st.Workers {
		if err := enc.Encode(worker{"worker", h}); err != nil {
			return err
		}
	}
	return nil
}
