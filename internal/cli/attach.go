package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
)

func init() { register(newAttachCmd) }

func newAttachCmd() *cobra.Command {
	f := &sweepFlags{}
	var creds cluster.Credentials
	cmd := &cobra.Command{
		Use:   "attach URL SWEEP [flags]",
		Short: "Stream the results of a sweep submitted to a cluster",
		Long: `Re-attach to a sweep submitted with --server (and --detach, or whose submitter
stopped): stream its results, each target once, with the same outputs,
progress bar, summary and exit status as the job command would have had.
Results already delivered before are delivered again unless a store that holds
them is given.`,
		Example: `  id=$(fanout ping 10.0.0.0/16 --server nats://127.0.0.1:4222 --detach)
  fanout attach nats://127.0.0.1:4222 "$id" -o jsonl --output-file results.jsonl`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			url, id := args[0], args[1]
			stderr := cmd.ErrOrStderr()
			if err := f.fill(new(fanout.Spec)); err != nil { // checks -o and --progress
				return err
			}
			if !cluster.ValidSweepID(id) {
				return usageErrorf("sweep id %q: want letters, digits, - and _ (as printed by --detach)", id)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); stop() }()
			client, closeConn, err := dialCluster(ctx, url, creds, stderr)
			if err != nil {
				return err
			}
			defer closeConn()
			rec, err := client.Lookup(ctx, id)
			if err != nil {
				return usageError(err)
			}
			p, err := newPlan(nil, rec.Spec)
			if err != nil {
				return fmt.Errorf("sweep %s: %w", id, err)
			}
			if err := openSinks(cmd, f, p); err != nil {
				return err
			}
			p.execute = func(ctx context.Context, p *plan, c *engine.Counters, emit func(job.Result)) error {
				return collect(ctx, client, url, id, p, c, emit, stderr)
			}
			return p.run(ctx, cmd.Context(), f, stderr)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVarP(&f.output, "output", "o", "text", "result format: text, jsonl or csv")
	fl.StringVar(&f.outputFile, "output-file", "", "write results to FILE instead of stdout")
	fl.BoolVar(&f.alive, "alive", false, "show only targets that are up")
	fl.BoolVar(&f.dead, "dead", false, "show only targets that are not up")
	fl.StringVar(&f.progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), always, never")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no summary on stderr")
	addCredFlags(fl, &creds)
	// Only the output flags are bound; the others keep values fill accepts.
	f.concurrency, f.maxTargets = 1, 1
	return cmd
}
