package cli

// fanout watch JOB: every job command, with its own flags, run a round at a
// time on a clock, reporting what changed (package watch). The job commands
// are built by their own constructors, and the watch's flags added to them;
// their RunE reaches runSweep, which hands over to runWatch when the command
// sits under watch (watchOf).

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/icmp"
	jobssh "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

func init() { register(newWatchCmd) }

// defaultEvery is --every's default.
const defaultEvery = time.Minute

// watchFlags are the flags a watch adds to a job command.
type watchFlags struct {
	every   time.Duration
	rounds  uint64
	spread  bool
	confirm string
	flap    string
	all     bool
	reload  bool
	loss    float64 // percent; ping only

	// Not flags: set by check, before the job command's RunE runs.
	rules      watch.Options // Confirm, Flap, LossThreshold
	targetTime time.Duration // the longest a target may take
	// recordOptions, when set by the job command, are the job options the
	// watch is known by in --db, where they differ from those it runs with
	// (ssh: how connections are kept between rounds is not the watch).
	recordOptions json.RawMessage
	// setups are the watch's extensions, one per registered extension,
	// bound to this command (watchExtensions).
	setups []func(*watchSetup) error
}

// watchSetup is what runWatch has built before the first round, handed to
// the watch's extensions (the store's history, metrics) so that they add
// their Observers, set the watch's id and first round, and closers.
type watchSetup struct {
	cmd    *cobra.Command
	f      *sweepFlags
	plan   *plan
	stderr io.Writer // safe from several goroutines
	// spec is the watch as --db knows it: plan.spec, with the job
	// options of watchFlags.recordOptions when set.
	spec fanout.Spec
	// lists, with --db and a spec that reads lists, are the copies of the
	// lists each round polled (watchext.go).
	lists   *listCopies
	opts    *watch.Options // Watch, FirstRound, Observers...
	closers []func() error // run after the watch, in order
	// usesDB is set by the extension that records the watch in --db; --db
	// is refused without one.
	usesDB bool
}

// watchExtensions add flags to every watch job command and, before its
// first round, Observers of their own: func(cmd) binds the flags to cmd and
// returns what runWatch calls with the setup. Registered from init, like
// commands.
var watchExtensions []func(cmd *cobra.Command) func(*watchSetup) error

// watchKey marks, in a command's context, that it runs under watch.
type watchKey struct{}

// watchOf is the watch flags of cmd when it runs under fanout watch.
func watchOf(cmd *cobra.Command) *watchFlags {
	if ctx := cmd.Context(); ctx != nil {
		wf, _ := ctx.Value(watchKey{}).(*watchFlags)
		return wf
	}
	return nil
}

func newWatchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch JOB --every DURATION [flags] TARGETS... [-- COMMAND...]",
		Short: "Run a job every interval and report what changes",
		Long: `Run a job (ping, tcp, exec, ssh: each with all its own flags) against
TARGETS every --every, a round at a time, until Ctrl-C or --rounds N, and
print what changed between rounds: a target that went down, came back up,
changed error class, changed output (exec, ssh: stdout and exit code), or
whose loss crossed --loss-threshold (ping --count). Each change is one line
(text) or record (jsonl, csv): the target's result, plus the round, the
previous state and since when it held (jsonl: the result's own record plus
watch, round, change, id, prev_status, prev_class, since; id is stable,
WATCH/ROUND/TARGET, to drop duplicates). A target down in its first round is
a change; one up is not. --all prints every result of every round, with its
round; --alive or --dead print the round's up or down set instead of the
changes. A summary line per round goes to stderr.

Rounds never overlap: a round due while the previous one runs starts when
it ends, and is counted late. --spread (on by default) starts a round's
targets evenly over the interval (less the time one target may take), so a
round is not one burst.

--confirm N/M reports a change only once the new state held in N of the
last M rounds (default 1/1: at once; 2/3 ignores a one-round blip). A target
whose state changed more than K times in the last M rounds (--flap K/M,
default 4/10) is reported once as flapping; its changes are then held back
until it has held one state for M rounds, when it is reported once as
settled.

@FILE targets are re-read before each round (--reload, default on): hosts
added are polled from that round on, a host that left is reported once as
removed. SIGHUP re-reads them at once and starts a round. Standard input
("-") is read once. SIGINT or SIGTERM: no target starts after it, the
round's targets in flight finish and are printed, the summary follows, and
fanout exits 130 (a second signal kills it).

--db FILE records every round as a sweep of the watch (fanout results
--watch/--round, history, diff, report read them), pruned by --keep AGE and
--keep-rounds N; the same watch started again with the same FILE continues
its round numbering, and its id in FILE is the watch's id. --metrics ADDR
serves Prometheus metrics at http://ADDR/metrics (per-target series up to
--metrics-targets targets). watch ssh keeps each host's connection between
rounds and opens a session per round (--reconnect: a connection per round;
--max-connections bounds them, default -c).

--server URL runs the watch on a cluster (fanout server, fanout worker)
instead: the server fires its rounds, each worker polls its share of the
targets, and the watch goes on until fanout watch stop --server URL ID,
whoever submitted it. --detach prints its id and returns; else its changes
print here until Ctrl-C. fanout watch events follows one, fanout watch ls
lists them, fanout attach --server URL ID follows one again. --on
KEY=VALUE,... pins it to the workers started with those --tags. --every is
then whole seconds. --rounds N ends the watch in the cluster after round N
(the server's clock for it expires; no round starts after; this command,
when it follows, exits then as a local watch does); --spread starts each
worker's share of a round over the interval. --confirm, --flap,
--alive, --dead, --db and --metrics apply to the changes followed here:
this command then reads every result of every round and reckons the changes
by the rules above, instead of printing those the workers publish (1/1).

Exit status: 0 when every target of the last round was up, 1 otherwise, 2
on usage errors (nothing sent), 130 interrupted.`,
		Example: `  fanout watch ping --every 30s 10.0.0.0/16
  fanout watch ping --every 1m --count 5 --interval 200ms --loss-threshold 20 @hosts.txt
  fanout watch tcp --every 30s -p 22,443 --confirm 2/3 -o jsonl @hosts.txt
  fanout watch ssh --every 5m @hosts.txt -- cat /etc/debian_version
  fanout watch ping --every 30s --db fleet.db --keep 7d --metrics 127.0.0.1:9108 10.0.0.0/16
  fanout watch exec --every 1m --rounds 10 web[01-20] -- curl -fsS http://{}/health`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return exitCode(ExitUsage)
		},
	}
	for _, newJob := range []func() *cobra.Command{newPingCmd, newTCPCmd, newExecCmd, newWatchSSHCmd} {
		cmd.AddCommand(watchJob(newJob()))
	}
	cmd.AddCommand(newWatchStopCmd(), newWatchLsCmd(), newWatchEventsCmd()) // cluster watches (cwatch.go)
	return cmd
}

// watchRefuses are the job commands' flags a local watch does not take.
var watchRefuses = map[string]string{
	"progress": "a watch prints a summary line per round on stderr instead",
}

// watchJob makes job command sub a watch command: the watch's flags, the
// refused ones, and a RunE that checks them, then runs sub's own RunE
// marked as a watch (runSweep hands over to runWatch).
func watchJob(sub *cobra.Command) *cobra.Command {
	wf := &watchFlags{}
	fl := sub.Flags()
	fl.DurationVar(&wf.every, "every", defaultEvery, "start a round every DURATION (at least --timeout)")
	fl.Uint64Var(&wf.rounds, "rounds", 0, "stop after N rounds (0 = until interrupted)")
	fl.BoolVar(&wf.spread, "spread", true, "start a round's targets evenly over the interval (--spread=false: all at once)")
	fl.StringVar(&wf.confirm, "confirm", "1/1", "report a change once the new state held in N of the last M rounds, as N/M (M at most "+strconv.Itoa(watch.MaxConfirmRounds)+")")
	fl.StringVar(&wf.flap, "flap", fmt.Sprintf("%d/%d", watch.DefaultFlapChanges, watch.DefaultFlapRounds),
		"flapping: more than K changes in the last M rounds, as K/M (M at most "+strconv.Itoa(watch.MaxFlapRounds)+"), or off")
	fl.BoolVar(&wf.all, "all", false, "print every result of every round (with its round), beside the changes")
	fl.BoolVar(&wf.reload, "reload", true, "re-read @FILE targets before each round")
	if sub.Name() == icmp.Kind {
		fl.Float64Var(&wf.loss, "loss-threshold", 0, "report a loss change when a target's loss (in %, of --count) goes above or back under this (0 = off)")
	}
	fl.Lookup("alive").Usage = "print the targets up in each round, instead of the changes"
	fl.Lookup("dead").Usage = "print the targets not up in each round, instead of the changes"
	fl.Lookup("output-file").Usage = "write changes (or results) to FILE instead of stdout"
	fl.Lookup("quiet").Usage = "no summary lines on stderr"
	for _, ext := range watchExtensions {
		wf.setups = append(wf.setups, ext(sub))
	}
	fl.VisitAll(func(f *pflag.Flag) {
		if why, ok := watchRefuses[f.Name]; ok {
			refuseFlag(f, why)
		}
	})
	exclusive(sub, "all", "alive")
	exclusive(sub, "all", "dead")
	sub.Use = strings.Replace(sub.Use, "[flags]", "--every DURATION [flags]", 1)
	sub.Short = "Watch: " + sub.Short + ", every interval"
	sub.Long = "Under fanout watch (see fanout watch --help): a round every --every, reporting what\nchanges. The job:\n\n" + sub.Long
	sub.Example = ""
	run := sub.RunE
	sub.RunE = func(cmd *cobra.Command, args []string) error {
		if err := wf.check(cmd); err != nil {
			return err
		}
		cmd.SetContext(context.WithValue(cmd.Context(), watchKey{}, wf))
		return run(cmd, args)
	}
	return sub
}

// durationFlag is the value of cmd's duration flag name, 0 when it has none.
func durationFlag(cmd *cobra.Command, name string) time.Duration {
	if f := cmd.Flags().Lookup(name); f != nil {
		d, _ := time.ParseDuration(f.Value.String())
		return d
	}
	return 0
}

func intFlag(cmd *cobra.Command, name string) int {
	if f := cmd.Flags().Lookup(name); f != nil {
		n, _ := strconv.Atoi(f.Value.String())
		return n
	}
	return 0
}

// check reads what the job command's flags mean for the watch, before the
// command's RunE rewrites them (ssh moves --timeout into its job): --every
// must leave room for one target's --timeout (and ping's --count x
// --interval), and --confirm and --flap must parse.
func (wf *watchFlags) check(cmd *cobra.Command) error {
	c, err := watch.ParseConfirm(wf.confirm)
	if err != nil {
		return usageErrorf("--confirm: %v", err)
	}
	fp, err := watch.ParseFlap(wf.flap)
	if err != nil {
		return usageErrorf("--flap: %v", err)
	}
	wf.rules = watch.Options{Confirm: c, Flap: fp, LossThreshold: wf.loss / 100}
	timeout := durationFlag(cmd, "timeout")
	if timeout > wf.every {
		return usageErrorf("--every %v is shorter than --timeout %v: a round must have room for one target's attempt", wf.every, timeout)
	}
	tt := timeout * time.Duration(1+intFlag(cmd, "retries"))
	if cmd.Name() == icmp.Kind {
		count, interval := intFlag(cmd, "count"), durationFlag(cmd, "interval")
		tt = time.Duration(max(count-1, 0))*interval + timeout
		if tt > wf.every {
			return usageErrorf("--every %v is shorter than a target's %d echo requests --interval %v apart and the last one's --timeout %v (%v)", wf.every, count, interval, timeout, tt)
		}
	}
	if cmd.Name() == jobssh.Kind {
		ct := durationFlag(cmd, "connect-timeout")
		if ct == 0 {
			ct = 10 * time.Second
		}
		tt += ct
	}
	wf.targetTime = tt
	return nil
}

// runWatch is runSweep for a command under watch: spec and the sweep flags
// f as the job command made them, the watch flags wf.
func runWatch(cmd *cobra.Command, f *sweepFlags, spec fanout.Spec, wf *watchFlags) error {
	if f.cluster != nil && f.cluster.server != "" {
		return runClusterWatch(cmd, f, spec, wf) // cwatch.go
	}
	if _, err := f.cluster.tags(); err != nil { // --on without --server
		return err
	}
	// The rounds' summaries and the signal handler both write to stderr.
	stderr := &lockedWriter{w: cmd.ErrOrStderr()}
	// 1. Everything the user typed is checked before any traffic.
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
	traits, _ := job.TraitsOf(spec.Job)
	p.opts.Concurrency = fitConcurrency(stderr, p.opts.Concurrency, traits.FDsPerTarget)

	opts := wf.rules
	opts.Watch = watch.NewID()
	opts.Every, opts.Rounds, opts.Spread, opts.TargetTime = wf.every, wf.rounds, wf.spread, wf.targetTime
	opts.Engine = p.opts
	opts.Order = p.spec.Order
	opts.Warn = func(err error) { fmt.Fprintf(stderr, "fanout: warning: %s\n", output.SafeLines(err.Error())) }
	var lists *listCopies // with --db, the lists each round polled
	if f.db != "" && p.spec.Listed() > 0 {
		lists = newListCopies(f.db, p)
		defer lists.Close()
	}
	reload, err := listReloader(p, lists)
	if err != nil {
		return usageError(err)
	}
	opts.Reload, opts.ReloadEach = reload, reload != nil && wf.reload

	// 2. Outputs, opened before the first round: an unwritable
	// --output-file is a usage error.
	var w io.Writer = cmd.OutOrStdout()
	var closers []func() error
	if f.outputFile != "" {
		file, err := os.Create(f.outputFile)
		if err != nil {
			return usageError(fmt.Errorf("--output-file: %w", err))
		}
		closers = append(closers, file.Close)
		w = file
	}
	printer, err := output.NewWatch(f.output, w, output.WatchMode{All: wf.all, Set: output.Filter{Alive: f.alive, Dead: f.dead}})
	if err != nil {
		return usageError(fmt.Errorf("--output: %w", err))
	}
	summary := output.NewRoundSummary(stderr)
	opts.Observers = append(opts.Observers, printer)
	if !f.quiet {
		opts.Observers = append(opts.Observers, summary)
	}
	setup := &watchSetup{cmd: cmd, f: f, plan: p, stderr: stderr, spec: p.spec, lists: lists, opts: &opts}
	if wf.recordOptions != nil {
		setup.spec.JobOptions = wf.recordOptions
	}
	for _, s := range wf.setups {
		if err := s(setup); err != nil {
			closeAll(setup.closers)
			closeAll(closers)
			return err
		}
	}
	closers = append(setup.closers, closers...)
	if f.db != "" && !setup.usesDB {
		closeAll(closers)
		return usageErrorf("--db: this build does not record a watch's history")
	}

	// 3. Signals: SIGINT/SIGTERM stop the watch gently (a second one kills
	// fanout), SIGHUP re-reads the lists at once; a write error (stdout
	// gone) stops it too.
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopNow := func() { stopOnce.Do(func() { close(stop) }) }
	interrupted := false
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	reloadNow := make(chan struct{}, 1)
	if reload != nil {
		signal.Notify(hup, syscall.SIGHUP)
	}
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-sigs:
				signal.Stop(sigs) // the next one kills
				mu.Lock()
				interrupted = true
				mu.Unlock()
				stopNow()
				fmt.Fprintln(stderr, "fanout: interrupted: no target starts now, those in flight finish (again to kill)")
			case <-hup:
				select {
				case reloadNow <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	defer func() {
		signal.Stop(sigs)
		signal.Stop(hup)
		close(done)
		wg.Wait()
	}()
	opts.Stop, opts.ReloadNow = stop, reloadNow
	opts.Observers = append(opts.Observers, &onRoundEnd{func(watch.Round) {
		if printer.Err() != nil {
			stopNow()
		}
	}})

	// 4. The rounds.
	st, err := watch.Run(cmd.Context(), p.set, p.job, opts)
	werr := printer.Close()
	if cerr := closeAll(closers); werr == nil {
		werr = cerr
	}
	mu.Lock()
	intr := interrupted
	mu.Unlock()
	if !f.quiet {
		summary.Print(opts.Watch, intr)
	}
	switch {
	case errors.Is(werr, syscall.EPIPE):
		return exitCode(ExitSomeNotUp)
	case werr != nil:
		return &exitError{code: ExitSomeNotUp, err: fmt.Errorf("write: %w", werr)}
	case intr:
		return exitCode(ExitInterrupted)
	case err != nil && !errors.Is(err, context.Canceled):
		return &exitError{code: ExitSomeNotUp, err: err}
	case err != nil:
		return exitCode(ExitInterrupted)
	case st.Last.Up < st.Last.Targets:
		return exitCode(ExitSomeNotUp)
	}
	return nil
}

// lockedWriter serializes writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func closeAll(cs []func() error) error {
	var first error
	for _, c := range cs {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// onRoundEnd is a function called at the end of each round, as an Observer.
type onRoundEnd struct{ f func(watch.Round) }

func (*onRoundEnd) RoundStart(watch.Round)    {}
func (*onRoundEnd) Result(uint64, job.Result) {}
func (*onRoundEnd) Change(watch.Change)       {}
func (o *onRoundEnd) RoundEnd(r watch.Round)  { o.f(r) }

// listReloader re-reads the plan's @FILE lists: it returns a new Set when
// their bytes changed since the last read, nil when they did not. nil when
// the spec has no @FILE (or reads standard input, which is read once).
// With copies, the lists re-read are copied for the rounds that poll them,
// and read again, even unchanged, while a copy could not be kept.
func listReloader(p *plan, copies *listCopies) (func() (target.Set, error), error) {
	var files []string
	for _, t := range append(append([]string(nil), p.spec.Targets...), p.spec.Excludes...) {
		if t == "-" {
			return nil, nil
		}
		if target.Listed(t) {
			files = append(files, strings.TrimPrefix(t, "@"))
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	digest := func() ([32]byte, error) {
		h := sha256.New()
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				return [32]byte{}, err
			}
			fmt.Fprintf(h, "%d\n", len(b))
			h.Write(b)
		}
		return [32]byte(h.Sum(nil)), nil
	}
	last, err := digest()
	if err != nil {
		return nil, err
	}
	return func() (target.Set, error) {
		sum, err := digest()
		if err != nil {
			return nil, fmt.Errorf("re-read targets: %w", err)
		}
		if sum == last && !copies.isStale() {
			return nil, nil
		}
		read, done := fanout.Lists(target.OpenList(nil)), func(bool) {}
		if copies != nil {
			read, done = copies.reading(read)
		}
		set, err := p.spec.SetFor(p.job, read)
		done(err == nil)
		if err != nil {
			return nil, fmt.Errorf("re-read targets: %w", err)
		}
		last = sum
		return set, nil
	}, nil
}
