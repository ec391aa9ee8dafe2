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
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

// clusterWatchRefuses are the watch flags a cluster watch does not take,
// and why: they would be silently ignored otherwise. (None today: --rounds
// ends the watch in the cluster, --spread smears each worker's share.)
var clusterWatchRefuses = map[string]string{}

// followRules are the flags that make the follower of a cluster watch
// apply the rules of a local watch itself (followFeed): it then reads every
// result of every round, not only the changes the workers publish.
var followRules = []string{"confirm", "flap", "alive", "dead", "db", "metrics", "loss-threshold"}

// usesFeed reports whether cmd was given one of followRules.
func usesFeed(cmd *cobra.Command) bool {
	for _, name := range followRules {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return true
		}
	}
	return false
}

// runClusterWatch submits the watch to the cluster at --server; with
// --detach it prints the watch's id and returns, else it follows the
// watch's changes (and, with --all, results) until interrupted: the watch
// goes on in the cluster until fanout watch stop. With --confirm, --flap,
// --alive, --dead, --db or --metrics, the changes are reckoned here from
// every result, by the rules of a local watch (followFeed).
func runClusterWatch(cmd *cobra.Command, f *sweepFlags, spec fanout.Spec, wf *watchFlags) error {
	stderr := cmd.ErrOrStderr()
	cf := f.cluster
	for name, why := range clusterWatchRefuses {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return usageErrorf("--%s with --server: %s", name, why)
		}
	}
	feed := usesFeed(cmd)
	if feed && cf.detach {
		return usageErrorf("--detach with --confirm, --flap, --alive, --dead, --db or --metrics: those apply to the changes followed here; follow the watch with fanout attach --server URL ID and them")
	}
	if wf.every < cluster.MinWatchEvery || wf.every%time.Second != 0 {
		return usageErrorf("--every %v with --server: whole seconds, at least %v (the server's message schedules fire on the second)", wf.every, cluster.MinWatchEvery)
	}
	if most := cluster.MaxWatchRounds(wf.every); wf.rounds > most {
		return usageErrorf("--rounds %d with --server and --every %v: at most %d (a cluster watch's rounds end within %s)", wf.rounds, wf.every, most, shortDuration(cluster.MaxRetention))
	}
	var spread time.Duration
	if wf.spread {
		// Over the interval less what one target may take, at least a
		// tenth of it, as a local watch spreads its rounds.
		spread = max(wf.every-wf.targetTime, wf.every/10)
	}
	retention := cluster.DefaultWatchRetention
	if fl := cmd.Flags().Lookup("retention"); fl != nil && fl.Changed {
		retention = cf.retention
	}
	if retention < wf.every || retention > cluster.MaxRetention {
		return usageErrorf("--retention %v: want from --every (%v) to %s", retention, wf.every, shortDuration(cluster.MaxRetention))
	}
	on, err := cf.tags()
	if err != nil {
		return err
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
	printer, err := output.NewWatch(f.output, w, output.WatchMode{All: wf.all, Set: output.Filter{Alive: f.alive, Dead: f.dead}})
	if err != nil {
		return usageError(fmt.Errorf("--output: %w", err))
	}
	// --db and --metrics are opened before anything is submitted: a file
	// that cannot hold the watch, an address in use, are usage errors.
	opts := wf.rules
	opts.Every = wf.every
	var closers []func() error
	if feed {
		setup := &watchSetup{cmd: cmd, f: f, plan: p, stderr: stderr, spec: p.spec, opts: &opts}
		for _, s := range wf.setups {
			if err := s(setup); err != nil {
				closeAll(setup.closers)
				return err
			}
		}
		closers = setup.closers
		if f.db != "" && !setup.usesDB {
			closeAll(closers)
			return usageErrorf("--db: this build does not record a watch's history")
		}
	}
	defer func() { closeAll(closers) }()
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
	rec, err := client.SubmitWatch(ctx, p.spec, p.order.Len(), cluster.WatchOptions{Every: wf.every, Retention: retention, On: on,
		Rounds: wf.rounds, Spread: spread})
	if err != nil {
		return &exitError{code: ExitSomeNotUp, err: err}
	}
	pinned := ""
	if len(rec.On) > 0 {
		pinned = ", on workers tagged " + cluster.FormatTags(rec.On)
	}
	if rec.Rounds > 0 {
		pinned += fmt.Sprintf(", %d rounds", rec.Rounds)
	}
	if rec.Spread > 0 {
		pinned += fmt.Sprintf(", each worker's share spread over %v", rec.Spread)
	}
	fmt.Fprintf(stderr, "fanout: watch %s submitted to %s: %d targets in %d chunks of %d, every %v%s, rounds kept %s; sha256 %s\n",
		rec.ID, url, rec.Total, rec.Chunks, rec.ChunkSize, rec.Every, pinned, shortDuration(rec.Retention), rec.Digest)
	warnNoWorker(ctx, client, cluster.Record{Spec: rec.Spec, Retention: rec.Retention, On: rec.On}, url, stderr)
	if cf.detach {
		fmt.Fprintln(cmd.OutOrStdout(), rec.ID)
		fmt.Fprintf(stderr, "fanout: follow it with: fanout watch events --server %s %s; stop it with: fanout watch stop --server %s %s\n", url, rec.ID, url, rec.ID)
		return nil
	}
	// The last round followed: with --rounds, the exit status is that of
	// a local watch (0: every target of the last round up).
	var last watch.Round
	ended := func(rd watch.Round) {
		if rd.N >= last.N {
			last = rd
		}
	}
	if feed {
		opts.Observers = append(opts.Observers, &onRoundEnd{ended})
		err = followWithRules(ctx, client, rec, p.set, printer, opts, f.quiet, stderr)
	} else {
		err = followWatch(ctx, client, rec.ID, printer, wf.all, f.quiet, false, stderr, ended)
	}
	werr := printer.Close()
	if cerr := closeAll(closers); werr == nil {
		werr = cerr
	}
	closers = nil
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "fanout: watch %s goes on in the cluster: follow it with fanout attach --server %s %s; stop it with fanout watch stop --server %s %s\n", rec.ID, url, rec.ID, url, rec.ID)
		return exitCode(ExitInterrupted)
	}
	if werr != nil {
		return &exitError{code: ExitSomeNotUp, err: fmt.Errorf("write: %w", werr)}
	}
	if err == nil && rec.Rounds > 0 {
		if !f.quiet {
			fmt.Fprintf(stderr, "fanout: watch %s ended after round %d\n", rec.ID, rec.Rounds)
		}
		if last.N != rec.Rounds || last.Up < last.Targets {
			return exitCode(ExitSomeNotUp)
		}
	}
	return err
}

// followWithRules follows cluster watch rec with the rules of opts
// (Confirm, Flap, LossThreshold) reckoned here, as a local watch does,
// over set (the watch's targets): the printer, a summary line per round on
// stderr unless quiet, then opts.Observers (--db, --metrics) get its
// rounds.
func followWithRules(ctx context.Context, client *cluster.Client, rec cluster.WatchRecord, set target.Set, printer *output.WatchWriter, opts watch.Options, quiet bool, stderr io.Writer) error {
	if set.Len() != rec.Total {
		return fmt.Errorf("watch %s: %d targets here, %d in its record", rec.ID, set.Len(), rec.Total)
	}
	obs := []watch.Observer{printer}
	if !quiet {
		obs = append(obs, output.NewRoundSummary(stderr))
	}
	opts.Watch = rec.ID // its event ids are the cluster's
	opts.Observers = append(obs, opts.Observers...)
	return followFeed(ctx, client, rec, watch.NewFeed(set, opts), stderr)
}

// followWatch prints watch id's changes (and results with all) through
// printer, and a summary line per round on stderr unless quiet, until ctx
// is done or the watch is stopped (or ended after its rounds). ended, when
// set, is told each round's end.
func followWatch(ctx context.Context, client *cluster.Client, id string, printer *output.WatchWriter, all, quiet, fromStart bool, stderr io.Writer, ended func(watch.Round)) error {
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
			if ended != nil {
				ended(rd)
			}
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
ticked, the last complete round with its up and down counts, late rounds
among the last ones complete, the worker tags it is pinned to (--on; "-":
any worker), the workers that polled its last complete round, its state and
who submitted it.`,
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
			fmt.Fprintf(tw, "WATCH\tJOB\tTARGETS\tEVERY\tLAST ROUND\tCOMPLETE\tUP\tDOWN\tLATE\tON\tWORKERS\tSTATE\tOWNER\n")
			for _, w := range ws {
				state := "running"
				switch {
				case w.Stopped:
					state = "stopped"
				case w.Ended:
					state = "ended" // after its --rounds
				}
				owners := strings.Join(w.Owners, ",")
				if owners == "" {
					owners = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", w.ID, w.Spec.Job, w.Total, w.Every,
					w.LastRound, w.Complete, w.Up, w.Down, w.Late, cluster.FormatTags(w.On), output.Safe(owners), state, output.Safe(w.Owner))
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
			err = followWatch(ctx, client, args[0], printer, all, quiet, fromStart, cmd.ErrOrStderr(), nil)
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
// changes from now on, as fanout watch events prints them; with the rules
// of a local watch (--confirm, --flap, --alive, --dead, --db) reckoned here
// from every result (followWithRules).
func attachWatch(ctx context.Context, cmd *cobra.Command, client *cluster.Client, rec cluster.WatchRecord, f *sweepFlags, af *attachWatchFlags) error {
	stderr := cmd.ErrOrStderr()
	var w io.Writer = cmd.OutOrStdout()
	if f.outputFile != "" {
		file, err := os.Create(f.outputFile)
		if err != nil {
			return usageError(fmt.Errorf("--output-file: %w", err))
		}
		defer file.Close()
		w = file
	}
	printer, err := output.NewWatch(f.output, w, output.WatchMode{All: af.all, Set: output.Filter{Alive: f.alive, Dead: f.dead}})
	if err != nil {
		return usageError(fmt.Errorf("--output: %w", err))
	}
	if !usesFeed(cmd) {
		err = followWatch(ctx, client, rec.ID, printer, af.all, f.quiet, false, stderr, nil)
	} else {
		err = attachWithRules(ctx, client, rec, printer, f, af, stderr)
	}
	if werr := printer.Close(); err == nil && werr != nil {
		err = fmt.Errorf("write: %w", werr)
	}
	if ctx.Err() != nil {
		return exitCode(ExitInterrupted)
	}
	var ee *exitError
	if err != nil && !errors.As(err, &ee) {
		return &exitError{code: ExitSomeNotUp, err: err}
	}
	return err
}

func attachWithRules(ctx context.Context, client *cluster.Client, rec cluster.WatchRecord, printer *output.WatchWriter, f *sweepFlags, af *attachWatchFlags, stderr io.Writer) error {
	opts := af.rules
	opts.Every = rec.Every
	// The targets from the record alone: nothing is read here.
	set, _, err := rec.Spec.Visit()
	if err != nil {
		return fmt.Errorf("watch %s: %w", rec.ID, err)
	}
	if f.db != "" {
		wrec, _, err := af.store.openWatchStore(f.db, rec.Spec, rec.Every, stderr)
		if err != nil {
			return err
		}
		defer wrec.Close()
		opts.Observers = append(opts.Observers, wrec)
		fmt.Fprintf(stderr, "fanout: recording watch %s's rounds in %s as watch %d (fanout results --watch %d, fanout history %s HOST)\n",
			rec.ID, f.db, wrec.ID(), wrec.ID(), f.db)
	}
	return followWithRules(ctx, client, rec, set, printer, opts, f.quiet, stderr)
}

// attachWatchFlags are attach's flags for a cluster watch.
type attachWatchFlags struct {
	all           bool
	confirm, flap string
	store         watchStoreFlags // --keep, --keep-rounds with --db

	rules watch.Options // Confirm and Flap, set by check
}

// check reads --confirm and --flap, before any connection.
func (af *attachWatchFlags) check() error {
	c, err := watch.ParseConfirm(af.confirm)
	if err != nil {
		return usageErrorf("--confirm: %v", err)
	}
	fp, err := watch.ParseFlap(af.flap)
	if err != nil {
		return usageErrorf("--flap: %v", err)
	}
	af.rules = watch.Options{Confirm: c, Flap: fp}
	return nil
}

// watchOnly are attach's flags that only a watch takes.
var watchOnly = []string{"all", "confirm", "flap", "keep", "keep-rounds"}
