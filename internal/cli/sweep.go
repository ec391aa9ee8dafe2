package cli

// The machinery every job command shares: the sweep flags, and runSweep,
// which turns a fanout.Spec into a checked plan (targets, order, job), runs
// it, feeds the Results to the sinks, and maps the outcome to an exit code.
//
// Extension points, for the owners of later features:
//   - a sink: add it to plan.sinks in openSinks (a store appends its own
//     output.Writer there, and sets plan.opts.Skip for resume);
//   - a writer of the command's own (ssh: inline or gathered output):
//     sweepFlags.results and sweepFlags.extraSinks;
//   - how the spec is run: plan.execute defaults to runLocal; --server sets
//     a cluster submitter instead (clusterFlags.apply, runSweep step 4).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/target"
)

// sweepFlags are the flags bound to every job command.
type sweepFlags struct {
	concurrency int
	rate        float64
	timeout     time.Duration
	retries     int
	shuffle     bool
	seed        uint64
	shard       string
	excludes    []string
	maxTargets  uint64
	allowHuge   bool
	allAddrs    bool // --all-addresses
	inventory   string
	limit       string
	// hostsOnly is the command's rule (ping, tcp, ssh): the network and
	// broadcast addresses of a CIDR of /30 and wider are no hosts.
	hostsOnly bool

	output     string
	outputFile string
	alive      bool
	dead       bool
	progress   string
	quiet      bool

	db          string // --db FILE: record the sweep and its Results (db.go)
	resumeSweep int64  // not a flag: resume sets it to append to that sweep of db

	cluster *clusterFlags // --server, --detach and credentials (submit.go)

	// Not flags: what the command tells runSweep about its output.
	// results, when set, builds the writer of the text format (ssh: output
	// lines prefixed by host, or gathered); a nil Writer keeps the default.
	results func(w, stderr io.Writer) (output.Writer, error)
	// extraSinks are further writers every Result goes to (ssh --outdir).
	extraSinks []func() (output.Writer, error)
}

// sweepDefaults are the per-command defaults of the sweep flags.
type sweepDefaults struct {
	Timeout time.Duration // per attempt; 0 = none
	// HostsOnly leaves out the network and broadcast addresses of IPv4
	// CIDRs of /30 and wider, as fping -g does, unless --all-addresses.
	HostsOnly bool
	// Refuse names the sweep flags the command does not use, each with the
	// reason it is refused: they are hidden from help (refuseFlag).
	Refuse map[string]string
}

// addSweepFlags binds the shared flags to cmd.
func addSweepFlags(cmd *cobra.Command, d sweepDefaults) *sweepFlags {
	f := &sweepFlags{hostsOnly: d.HostsOnly}
	// Defined apart, then added to cmd in order, refused ones refused.
	fl := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	fl.SortFlags = false
	fl.IntVarP(&f.concurrency, "concurrency", "c", engine.DefaultConcurrency, "targets in flight at most")
	fl.Float64Var(&f.rate, "rate", 0, "targets started per second (0 = unlimited)")
	fl.DurationVar(&f.timeout, "timeout", d.Timeout, "per attempt (0 = no limit)")
	fl.IntVar(&f.retries, "retries", 0, "extra attempts after a timeout or refusal, with backoff")
	fl.BoolVar(&f.shuffle, "shuffle", false, "visit targets in a pseudo-random order (spreads load over subnets)")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of --shuffle (same seed, same order)")
	fl.StringVar(&f.shard, "shard", "", "run only the i-th of n disjoint slices, as i/n (1/3 .. 3/3)")
	fl.StringArrayVar(&f.excludes, "exclude", nil, "remove targets (same syntax as TARGETS; repeatable)")
	fl.StringVar(&f.inventory, "inventory", "", "also target the hosts of this Ansible inventory (INI or YAML), with their ansible_host, ansible_port, ansible_user")
	fl.StringVar(&f.limit, "limit", "", "only the --inventory hosts these patterns select, as ansible --limit: GROUP[,GROUP], host names, globs, &GROUP, !GROUP")
	fl.Uint64Var(&f.maxTargets, "max-targets", target.DefaultMaxTargets, "refuse target sets larger than this")
	fl.BoolVar(&f.allowHuge, "allow-huge", false, "accept IPv6 prefixes of /64 and larger")
	fl.BoolVar(&f.allAddrs, "all-addresses", false, "keep the network and broadcast addresses of IPv4 CIDRs of /30 and wider (left out by default, as fping -g does)")
	fl.StringVarP(&f.output, "output", "o", "text", "result format: text, jsonl or csv")
	fl.StringVar(&f.outputFile, "output-file", "", "write results to FILE instead of stdout")
	fl.BoolVar(&f.alive, "alive", false, "show only targets that are up")
	fl.BoolVar(&f.dead, "dead", false, "show only targets that are not up")
	fl.StringVar(&f.progress, "progress", "auto", "progress line on stderr: auto (when a terminal), always, never; its rate, as the summary's, is targets finished per second of wall time (over the last 5s)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no summary on stderr")
	fl.StringVar(&f.db, "db", "", "record the sweep and its results in this SQLite file (fanout resume/results/report read it)")
	cmd.Flags().SortFlags = false
	fl.VisitAll(func(flag *pflag.Flag) {
		if why, ok := d.Refuse[flag.Name]; ok {
			refuseFlag(flag, why)
		}
		cmd.Flags().AddFlag(flag)
	})
	f.cluster = addClusterFlags(cmd)
	return f
}

// fill completes spec with the sweep flags' engine and target options. Bad
// values are usage errors. Flags were checked as they were parsed; this
// checks the values that came from elsewhere (resume's stored sweep) alike.
func (f *sweepFlags) fill(spec *fanout.Spec) error {
	for _, c := range []struct {
		name string
		kind numKind
		v    float64
	}{
		{"concurrency", kindInt, float64(f.concurrency)},
		{"rate", kindFloat, f.rate},
		{"timeout", kindDuration, float64(f.timeout)},
		{"retries", kindInt, float64(f.retries)},
		{"max-targets", kindUint, float64(f.maxTargets)},
	} {
		if err := checkRange(c.name, c.kind, c.v); err != nil {
			return err
		}
	}
	if !slices.Contains(output.Formats, f.output) {
		return usageErrorf("--output %q: want one of %s", f.output, strings.Join(output.Formats, ", "))
	}
	switch f.progress {
	case "auto", "always", "never":
	default:
		return usageErrorf("--progress %q: want auto, always or never", f.progress)
	}
	if f.shard != "" {
		i, n, err := target.ParseShard(f.shard)
		if err != nil {
			return usageError(fmt.Errorf("--shard: %w", err))
		}
		spec.ShardI, spec.ShardN = i, n
	}
	if f.limit != "" && f.inventory == "" {
		return usageErrorf("--limit %q: selects hosts of --inventory FILE, which is not given", f.limit)
	}
	if f.inventory != "" {
		hosts, err := inventoryHosts(f.inventory, f.limit)
		if err != nil {
			return usageError(err)
		}
		spec.Targets = append(spec.Targets, hosts...)
		f.inventory, f.limit = "", "" // read once: fill may run again (resume)
	}
	spec.Excludes = append(spec.Excludes, f.excludes...)
	spec.MaxTargets = f.maxTargets
	spec.AllowHuge = f.allowHuge
	spec.SkipNetworkBroadcast = f.hostsOnly && !f.allAddrs
	spec.Shuffle, spec.Seed = f.shuffle, f.seed
	spec.Concurrency, spec.Rate, spec.Timeout, spec.Retries = f.concurrency, f.rate, f.timeout, f.retries
	return nil
}

// jobOptions encodes a kind's Config for Spec.JobOptions.
func jobOptions(cfg any) json.RawMessage {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(fmt.Sprintf("encode job options %T: %v", cfg, err)) // a Config is plain data
	}
	return b
}

// plan is one sweep, checked and ready: nothing has been sent yet.
type plan struct {
	spec  fanout.Spec
	set   target.Set
	order target.Order
	job   fanout.Job
	opts  engine.Options

	// sinks receive every finished Result, in order, through one
	// output.Tee (tee), made once they are all open.
	sinks []output.Writer
	tee   *output.Tee
	// closers run after the sinks are closed (output files).
	closers []func() error
	// spools are copies of the spec's lists as they were read, for --db
	// to store (lists.go).
	spools []*os.File

	// term, when the progress line is shown, owns the terminal: results
	// written to it go through term so that they never tear the line.
	term *output.Terminal

	// execute runs the sweep and calls emit once per finished Result.
	execute func(ctx context.Context, p *plan, c *engine.Counters, emit func(job.Result)) error

	// note, with --db, keeps a note about the sweep in the file (the cluster
	// sweep it was submitted as); reattach, when set, is the command that
	// streams the rest of a cluster sweep, suggested instead of resume.
	note     func(key, value string) error
	reattach string
}

// runLocal runs the plan in this process.
func runLocal(ctx context.Context, p *plan, c *engine.Counters, emit func(job.Result)) error {
	return fanout.Sweep(ctx, p.set, p.job, fanout.Options{Options: p.opts, Order: p.order, Counters: c, OnResult: emit})
}

// runSweep runs spec (Job, JobOptions and Targets filled in by the command)
// with the shared flags f. It returns nil when every target is up, and an
// exitError otherwise (1 some not up, 2 usage, 130 interrupted).
func runSweep(cmd *cobra.Command, f *sweepFlags, spec fanout.Spec) error {
	if wf := watchOf(cmd); wf != nil {
		return runWatch(cmd, f, spec, wf) // fanout watch JOB (watch.go)
	}
	stderr := cmd.ErrOrStderr()

	// 1. Everything the user typed is checked before any traffic.
	if err := f.fill(&spec); err != nil {
		return err
	}
	p, err := newPlan(cmd.InOrStdin(), spec, f)
	if err != nil {
		return err
	}
	// The kind says how many files a target in flight holds.
	traits, _ := job.TraitsOf(spec.Job)
	p.opts.Concurrency = fitConcurrency(stderr, p.opts.Concurrency, traits.FDsPerTarget)

	// 2. Sinks. Opened before the sweep: an unwritable --output-file is a
	// usage error, not a lost sweep.
	if err := openSinks(cmd, f, p); err != nil {
		return err
	}

	// 3. Ctrl-C / SIGTERM: stop starting, cancel in flight, flush, exit 130.
	// A second signal kills the process the default way.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	// A closed stdout (| head) must not kill fanout outright: its commands
	// would outlive it. Noticed, a write fails with EPIPE and the sweep stops.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)

	// 4. How the spec is run: on a cluster with --server (which may just
	// submit and detach), else here.
	detached, err := f.cluster.apply(ctx, cmd, p, f.db)
	if detached {
		return err // apply closed the sinks
	}
	if err != nil {
		_ = p.closeSinks()
		return err
	}
	if p.execute == nil {
		p.execute = runLocal
	}
	return p.run(ctx, cmd.Context(), f, stderr)
}

// newPlan parses targets (reading "-" and @FILE as lists.go says) and
// order and builds the job. Every error is a usage error naming the input.
// f may be nil (a spec that stands alone: attach).
func newPlan(stdin io.Reader, spec fanout.Spec, f *sweepFlags) (*plan, error) {
	if len(spec.Targets) == 0 {
		return nil, usageErrorf("no targets given (%s)", target.Accepted)
	}
	p := &plan{spec: spec}
	lists, release, err := p.lists(stdin, f)
	if err != nil {
		return nil, usageError(err)
	}
	defer release()
	err = parseLists(spec.Listed() > 0, func() error {
		if f != nil && f.cluster.on() {
			// A cluster's spec stands alone: workers never read our files.
			if p.spec, err = spec.InlineFrom(lists); err != nil {
				return err
			}
			lists = nil
			if t, _ := job.TraitsOf(p.spec.Job); t.LendsIdentity {
				// The workers log in with their own keys: this machine
				// needs none, and builds no job that would look for them.
				p.set, p.order, err = p.spec.Visit()
				return err
			}
		}
		p.set, p.order, p.job, err = p.spec.BuildFrom(lists)
		return err
	})
	if err != nil {
		p.dropSpools()
		return nil, usageError(err)
	}
	p.opts = p.spec.EngineOptions()
	p.closers = append(p.closers, func() error { p.dropSpools(); return nil })
	return p, nil
}

// fitConcurrency raises the open-file limit and lowers c to fit it, warning.
func fitConcurrency(stderr io.Writer, c, fdsPerTarget int) int {
	if _, err := engine.RaiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "fanout: warning: %v\n", err)
	}
	c, warn := engine.FitConcurrency(c, fdsPerTarget)
	if warn != "" {
		fmt.Fprintf(stderr, "fanout: warning: %s\n", warn)
	}
	return c
}

// openSinks sets up the result writers: the chosen format on stdout or
// --output-file. Later sinks (a store) are appended here.
func openSinks(cmd *cobra.Command, f *sweepFlags, p *plan) error {
	stdout, stderr := p.terminal(cmd.OutOrStdout(), cmd.ErrOrStderr(), f.progress)
	w := stdout
	if f.outputFile != "" {
		file, err := os.Create(f.outputFile)
		if err != nil {
			return usageError(fmt.Errorf("--output-file: %w", err))
		}
		p.closers = append(p.closers, file.Close)
		w = file
	}
	var rw output.Writer
	var err error
	// --alive and --dead apply to every output the user reads (the
	// command's own writers too), never to the store.
	filter := output.Filter{Alive: f.alive, Dead: f.dead}
	if f.results != nil && f.output == "text" {
		if rw, err = f.results(w, stderr); err != nil {
			return usageError(err)
		}
		if rw != nil {
			rw = output.Filtered(rw, filter)
		}
	}
	if rw == nil && f.results == nil && f.output == "text" && isCommandJob(p.spec.Job) {
		// resume and attach print a command's output as exec and ssh do.
		rw = output.Filtered(output.NewInline(w, stderr), filter)
	}
	if rw == nil {
		if rw, err = output.New(f.output, w, filter); err != nil {
			return usageError(fmt.Errorf("--output: %w", err))
		}
	}
	p.sinks = append(p.sinks, rw)
	for _, open := range f.extraSinks {
		s, err := open()
		if err != nil {
			p.closeSinks()
			return usageError(err)
		}
		p.sinks = append(p.sinks, output.Filtered(s, filter))
	}
	return openStore(cmd, f, p)
}

// run executes the plan, delivering Results to the sinks, the progress bar
// and the summary, and maps the outcome to an exit code. parent is the
// context without the signal handler: a write failure cancels the sweep
// through its own cancel, and is told apart from an interrupt.
func (p *plan) run(sigCtx, parent context.Context, f *sweepFlags, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	if c, ok := p.job.(io.Closer); ok {
		defer c.Close() // an ssh job's agent connection and bastions
	}

	var c engine.Counters
	sum := output.NewSummary()
	var notUp int64
	var writeErr error

	stopProgress := p.startProgress(&c)
	out := p.out()
	stopFlush := out.FlushEvery(flushEvery)
	began := time.Now()
	err := p.execute(ctx, p, &c, func(r job.Result) {
		sum.Add(r)
		if r.Status != job.Up {
			notUp++
		}
		// A sink that failed is skipped from then on; the others still get
		// every Result (a store keeps recording when stdout is gone).
		if werr := out.Write(r); werr != nil && writeErr == nil {
			writeErr = fmt.Errorf("write result: %w", werr)
			cancel() // results are no longer all kept: stop sending
		}
	})
	elapsed := time.Since(began)
	stopFlush()
	stopProgress()

	if cerr := p.closeSinks(); cerr != nil && writeErr == nil {
		writeErr = fmt.Errorf("write result: %w", cerr)
	}

	interrupted := sigCtx.Err() != nil && parent.Err() == nil
	if !f.quiet {
		_ = sum.Print(stderr, elapsed, interrupted, c.Interrupted.Load())
	}
	switch {
	case errors.Is(writeErr, syscall.EPIPE):
		return exitCode(ExitSomeNotUp) // the reader went away (| head): no news to the user
	case writeErr != nil:
		return &exitError{code: ExitSomeNotUp, err: writeErr}
	case interrupted:
		return exitCode(ExitInterrupted)
	case err != nil && !errors.Is(err, context.Canceled):
		return &exitError{code: ExitSomeNotUp, err: err}
	case notUp > 0:
		return exitCode(ExitSomeNotUp)
	}
	return nil
}

// flushEvery is how often buffered results are pushed out, so a slow sweep
// piped into another program (or watched in a file) still streams.
const flushEvery = 200 * time.Millisecond

// out is the Tee of the plan's sinks, made on first use: once every sink
// is open.
func (p *plan) out() *output.Tee {
	if p.tee == nil {
		p.tee = output.NewTee(p.sinks...)
	}
	return p.tee
}

// closeSinks flushes every sink, then closes the files under them, and
// returns the first error.
func (p *plan) closeSinks() error {
	first := p.out().Close()
	for _, c := range p.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	p.sinks, p.tee, p.closers = nil, nil, nil
	return first
}

// terminal decides whether the progress line is shown on stderr (per
// --progress), and if so sets p.term and returns stdout and stderr writing
// through it (stdout only when it is the same terminal), so that result
// lines and the progress line never tear each other.
func (p *plan) terminal(stdout, stderr io.Writer, mode string) (io.Writer, io.Writer) {
	file, ok := stderr.(*os.File)
	if !ok || mode == "never" || (mode == "auto" && !output.IsTerminal(file)) {
		return stdout, stderr
	}
	p.term = output.NewTerminal(file)
	if out, ok := stdout.(*os.File); ok && sameFile(out, file) {
		stdout = p.term.Writer(stdout)
	}
	return stdout, p.term.Writer(stderr)
}

// sameFile: a and b are the same file (stdout and stderr on one terminal).
func sameFile(a, b *os.File) bool {
	ia, erra := a.Stat()
	ib, errb := b.Stat()
	return erra == nil && errb == nil && os.SameFile(ia, ib)
}

// startProgress shows the progress line when p.term is set, and returns the
// function that removes it.
func (p *plan) startProgress(c *engine.Counters) (stop func()) {
	if p.term == nil {
		return func() {}
	}
	total := int64(p.order.Len())
	snap := func() output.Progress {
		t := c.Total.Load()
		if t <= 0 {
			t = total
		}
		return output.Progress{
			Done: c.Done.Load(), Total: t, Up: c.Up.Load(), Down: c.Down.Load(),
			Errors: c.Errors.Load(), InFlight: c.InFlight.Load(),
		}
	}
	var once sync.Once
	stopLine := output.StartProgress(p.term, snap)
	return func() { once.Do(stopLine) }
}

// inventoryHosts is the host lines of the hosts of an Ansible inventory
// that limit selects (all when empty).
func inventoryHosts(file, limit string) ([]string, error) {
	r, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--inventory: %w", err)
	}
	defer r.Close()
	inv, err := target.ReadInventory(r, file)
	if err != nil {
		return nil, fmt.Errorf("--inventory: %w", err)
	}
	hosts, err := inv.Hosts(limit)
	if err != nil {
		return nil, fmt.Errorf("--inventory %s: %w", file, err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("--inventory %s --limit %q: no hosts selected (groups: %s)", file, limit, strings.Join(inv.Groups(), ", "))
	}
	return hosts, nil
}

// inventoryTargets reports whether the targets may come from an
// inventory, whose hosts may carry ports: --inventory, or an @FILE (which
// Parse reads as an inventory when it is one).
func inventoryTargets(args []string, f *sweepFlags) bool {
	if f.inventory != "" {
		return true
	}
	for _, a := range args {
		if strings.HasPrefix(a, "@") {
			return true
		}
	}
	return false
}
