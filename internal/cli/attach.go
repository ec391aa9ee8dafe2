package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
)

func init() { register(newAttachCmd) }

func newAttachCmd() *cobra.Command {
	f := &sweepFlags{}
	var creds cluster.Credentials
	var dbSweep int64
	cmd := &cobra.Command{
		Use:   "attach URL SWEEP [flags]",
		Short: "Stream the results of a sweep submitted to a cluster",
		Long: `Re-attach to a sweep submitted with --server (and --detach, or whose submitter
stopped): stream its results, each target once, with the same outputs,
progress bar, summary and exit status as the job command would have had.
Results already delivered before are delivered again, except with --db: the
submitter's record of the sweep in that file is continued and what it holds is
skipped.`,
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
			p, err := newPlan(nil, rec.Spec, nil)
			if err != nil {
				return fmt.Errorf("sweep %s: %w", id, err)
			}
			if f.db != "" {
				// Continue the store's record of this sweep (the submitter's
				// --db), skipping what it already holds.
				if f.resumeSweep = dbSweep; f.resumeSweep == 0 {
					f.resumeSweep = storeSweepOf(f.db, rec)
				}
				if f.resumeSweep != 0 {
					fmt.Fprintf(stderr, "fanout: continuing sweep %d of %s\n", f.resumeSweep, f.db)
				}
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
	fl.StringVar(&f.db, "db", "", "record the results in this SQLite file; continues the submitter's record of the sweep there, skipping what it holds")
	fl.Int64Var(&dbSweep, "db-sweep", 0, "with --db: the sweep id in the file to continue (default: the newest unfinished one with the same targets and job)")
	addCredFlags(fl, &creds)
	// Only the output flags are bound; the others keep values fill accepts.
	f.concurrency, f.maxTargets = 1, 1
	return cmd
}

// storeSweepOf finds the sweep of the fanout database at path that recorded
// rec when it was submitted: the newest unfinished one with the same job,
// targets, order and size. 0 when there is none (a new one is created).
func storeSweepOf(path string, rec cluster.Record) int64 {
	st, err := store.OpenExisting(path)
	if err != nil {
		return 0
	}
	defer st.Close()
	sws, err := st.Sweeps()
	if err != nil {
		return 0
	}
	key := func(s fanout.Spec) string {
		b, _ := json.Marshal([]any{s.Job, s.Targets, s.Excludes, s.Shuffle, s.Seed, s.ShardI, s.ShardN})
		return string(b)
	}
	want := key(rec.Spec)
	var best int64
	for _, sw := range sws {
		if sw.State != store.Finished && sw.Total == rec.Total && key(sw.Spec) == want && sw.ID > best {
			best = sw.ID
		}
	}
	return best
}
