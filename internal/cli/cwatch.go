package cli

// fanout watch JOB --server URL: the watch runs on a cluster (cluster/watch.go)
// and outlives this command; fanout watch stop | ls | events manage it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/watch"
)

// clusterWatchRefuses are the watch flags a cluster watch does not take
// (yet), and why: they would be silently ignored otherwise.
var clusterWatchRefuses = map[string]string{
	"rounds":  "a cluster watch runs until fanout watch stop",
	"confirm": "a cluster watch reports every change (1/1)",
	"flap":    "a cluster watch does not detect flapping",
	"alive":   "a cluster watch prints changes (or --all)",
	"dead":    "a cluster watch prints changes (or --all)",
	"db":      "a cluster watch keeps its rounds on the server (--retention)",
	"spread":  "a cluster watch's chunks start when the round does",
}

// runClusterWatch submits the watch to the cluster at --server; with
// --detach it prints the watch's id and returns, else it follows the
// watch's changes (and, with --all, results) until interrupted: the watch
// goes on in the cluster until fanout watch stop.
func runClusterWatch(cmd *cobra.Command, f *sweepFlags, spec fanout.Spec, wf *watchFlags) error {
	stderr := cmd.ErrOrStderr()
	cf := f.cluster
	for name, why := range clusterWatchRefuses {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return usageErrorf("--%s with --server: %s", name, why)
		}
	}
	if wf.every < cluster.MinWatchEvery || wf.every%time.Second != 0 {
		return usageErrorf("--every %v with --server: whole seconds, at least %v (the server's message schedules fire on the second)", wf.every, cluster.MinWatchEvery)
	}
	retention := cluster.DefaultWatchRetention
	if fl := cmd.Flags().Lookup("retention"); fl != nil && fl.Changed {
		retention = cf.retention
	}
	if retention < wf.every || retention > cluster.MaxRetention {
		return usageErrorf("--retention %v: want from --every (%v) to %s", retention, wf.every, shortDuration(cluster.MaxRetention))
	}
	if err := f.fill(&spec); err != nil {
		return err
	}
	p, err := newPlan(cmd.InOrStdin(), spec, f)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range p.closers {
			_ = c()
		}
	}()
	var w io.Writer = cmd.OutOrStdout()
	if f.outputFile != "" {
		file, err := os.Create(f.outputFile)
		if err != nil {
			return usageError(fmt.Errorf("--output-file: %w", err))
		}
		defer file.Close()
		w = file
	}
	printer, err := output.NewWatch(f.output, w, output.WatchMode{All: wf.all})
	if err != nil {
		return usageError(fmt.Errorf("--output: %w", err))
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := cf.server
	client, closeConn, err := dialCluster(ctx, url, cf.creds, stderr)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return &exitError{code: ExitSomeNotUp, err: err}
	}
	defer closeConn()
	rec, err := client.SubmitWatch(ctx, p.spec, p.order.Len(), cluster.WatchOptions{Every: wf.every, Retention: retention})
	if err != nil {
		return &exitError{code: ExitSomeNotUp, err: err}
	}
	fmt.Fprintf(stderr, "fanout: watch %s submitted to %s: %d targets in %d chunks of %d, every %v, rounds kept %s; sha256 %s\n",
		rec.ID, url, rec.Total, rec.Chunks, rec.ChunkSize, rec.Every, shortDuration(rec.Retention), rec.Digest)
	warnNoWorker(ctx, client, cluster.Record{Spec: rec.Spec, Retention: rec.Retention}, url, stderr)
	if cf.detach {
		fmt.Fprintln(cmd.OutOrStdout(), rec.ID)
		fmt.Fprintf(stderr, "fanout: follow it with: fanout watch events --server %s %s; stop it with: fanout watch stop --server %s %s\n", url, rec.ID, url, rec.ID)
		return nil
	}
	err = followWatch(ctx, client, rec.ID, printer, wf.all, f.quiet, false, stderr)
	werr := printer.Close()
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "fanout: watch %s goes on in the cluster: follow it with fanout watch events --server %s %s; stop it with fanout watch stop --server %s %s\n", rec.ID, url, rec.ID, url, rec.ID)
		return exitCode(ExitInterrupted)
	}
	if werr != nil {
		return &exitError{code: ExitSomeNotUp, err: fmt.Errorf("write: %w", werr)}
	}
	return err
}

// followWatch prints watch id's changes (and results with all) through
// printer, and a summary line per round on stderr unless quiet, until ctx
// is done or the watch is stopped.
func followWatch(ctx context.Context, client *cluster.Client, id string, printer *output.WatchWriter, all, quiet, fromStart bool, stderr io.Writer) error {
	started := false
	start := func(n uint64) {
		if !started {
			printer.RoundStart(watch.Round{Watch: id, N: n})
			started = true
		}
	}
	o := cluster.FollowOptions{
		FromStart: fromStart,
		Change: func(e cluster.Event) {
			start(e.Round)
			printer.Change(e.Change())
		},
		RoundEnd: func(rd watch.Round) {
			printer.RoundEnd(rd)
			if !quiet {
				fmt.Fprintln(stderr, output.RoundLine(rd))
			}
		},
	}
	if all {
		o.Result = func(n uint64, r job.Result) {
			start(n)
			printer.Result(n, r)
		}
	}
	err := client.Follow(ctx, id, o)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// watchClusterFlags are the flags of watch stop, ls and events.
type watchClusterFlags struct {
	server string
	creds  cluster.Credentials
}

func (wc *watchClusterFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&wc.server, "server", "", serverFlagHelp)
	addCredFlags(fl, &wc.creds)
}

func (wc *watchClusterFlags) dial(cmd *cobra.Command, ctx context.Context) (*cluster.Client, func(), string, error) {
	url := serverURL(wc.server)
	c, closeConn, err := dialCluster(ctx, url, wc.creds, cmd.ErrOrStderr())
	return c, closeConn, url, err
}

func newWatchStopCmd() *cobra.Command {
	var wc watchClusterFlags
	cmd := &cobra.Command{
		Use:   "stop --server URL ID...",
		Short: "Stop cluster watches: no round starts after",
		Long: `Stop watches submitted with fanout watch JOB --server: no round starts
after this command returns (rounds already running finish). Whoever
submitted a watch, and wherever that process went.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, id := range args {
				if !cluster.ValidSweepID(id) {
					return usageErrorf("watch id %q: want letters, digits, - and _", id)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			client, closeConn, _, err := wc.dial(cmd, ctx)
			if err != nil {
				return err
			}
			defer closeConn()
			for _, id := range args {
				if err := client.StopWatch(ctx, id); err != nil {
					return &exitError{code: ExitSomeNotUp, err: err}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "fanout: watch %s stopped\n", id)
			}
			return nil
		},
	}
	wc.add(cmd)
	return cmd
}

func newWatchLsCmd() *cobra.Command {
	var wc watchClusterFlags
	cmd := &cobra.Command{
		Use:   "ls --server URL",
		Short: "List cluster watches",
		Long: `List the watches on the cluster: job, targets, interval, the last round
ticked, the last complete round with its up and down counts and the workers
that polled it, late rounds among the last ones complete, and state.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			client, closeConn, _, err := wc.dial(cmd, ctx)
			if err != nil {
				return err
			}
			defer closeConn()
			ws, err := client.Watches(ctx)
			if err != nil {
				return &exitError{code: ExitSomeNotUp, err: err}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "WATCH\tJOB\tTARGETS\tEVERY\tLAST ROUND\tCOMPLETE\tUP\tDOWN\tLATE\tWORKERS\tSTATE\tOWNER\n")
			for _, w := range ws {
				state := "running"
				if w.Stopped {
					state = "stopped"
				}
				owners := strings.Join(w.Owners, ",")
				if owners == "" {
					owners = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", w.ID, w.Spec.Job, w.Total, w.Every,
					w.LastRound, w.Complete, w.Up, w.Down, w.Late, owners, state, output.Safe(w.Owner))
			}
			if len(ws) == 0 {
				fmt.Fprintf(tw, "(no watches)\n")
			}
			return tw.Flush()
		},
	}
	wc.add(cmd)
	return cmd
}

func newWatchEventsCmd() *cobra.Command {
	var wc watchClusterFlags
	var format string
	var all, fromStart, quiet bool
	cmd := &cobra.Command{
		Use:   "events --server URL ID",
		Short: "Follow a cluster watch's changes",
		Long: `Print the changes of a watch submitted with fanout watch JOB --server, as
they are published on fanout.events.ID (each once), and a summary line per
round on stderr, until Ctrl-C or the watch is stopped. --all prints every
result of every round too; --from-start replays what the server keeps.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cluster.ValidSweepID(args[0]) {
				return usageErrorf("watch id %q: want letters, digits, - and _", args[0])
			}
			printer, err := output.NewWatch(format, cmd.OutOrStdout(), output.WatchMode{All: all})
			if err != nil {
				return usageError(fmt.Errorf("--output: %w", err))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			client, closeConn, _, err := wc.dial(cmd, ctx)
			if err != nil {
				return err
			}
			defer closeConn()
			err = followWatch(ctx, client, args[0], printer, all, quiet, fromStart, cmd.ErrOrStderr())
			if werr := printer.Close(); err == nil && werr != nil {
				err = fmt.Errorf("write: %w", werr)
			}
			if ctx.Err() != nil {
				return exitCode(ExitInterrupted)
			}
			if err != nil {
				return &exitError{code: ExitSomeNotUp, err: err}
			}
			return nil
		},
	}
	wc.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&format, "output", "o", "text", "text, jsonl or csv")
	fl.BoolVar(&all, "all", false, "print every result of every round too")
	fl.BoolVar(&fromStart, "from-start", false, "replay the changes (and results) the server keeps")
	fl.BoolVarP(&quiet, "quiet", "q", false, "no summary lines on stderr")
	return cmd
}

// attachWatch is fanout attach --server URL ID for a cluster watch: its
// changes from now on, as fanout watch events prints them.
func attachWatch(ctx context.Context, cmd *cobra.Command, client *cluster.Client, id string, f *sweepFlags) error {
	printer, err := output.NewWatch(f.output, cmd.OutOrStdout(), output.WatchMode{})
	if err != nil {
		return usageError(fmt.Errorf("--output: %w", err))
	}
	err = followWatch(ctx, client, id, printer, false, f.quiet, false, cmd.ErrOrStderr())
	if werr := printer.Close(); err == nil && werr != nil {
		err = fmt.Errorf("write: %w", werr)
	}
	if ctx.Err() != nil {
		return exitCode(ExitInterrupted)
	}
	if err != nil {
		return &exitError{code: ExitSomeNotUp, err: err}
	}
	return nil
}
