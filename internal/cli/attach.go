package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

func init() { register(newAttachCmd) }

// attachLong is fanout attach's help.
const attachLong = `Re-attach to a sweep submitted with --server (and --detach, or whose submitter
stopped): stream its results, each target once, with the same outputs,
progress bar, summary and exit status as the job command would have had.
Results already delivered before are delivered again, except with --db: the
submitter's record of the sweep in that file is continued and what it holds is
skipped.

The sweep's spec is read from the server, where anyone who may submit could
have replaced it: --digest (printed at submission) checks it is the one
submitted. With --db the check is required, against --digest or the digest
the submitter noted in that file, before anything is saved there. Results are
checked against the target at their index; the others are dropped and
counted.

The server is --server, as for every cluster command; the older form
'fanout attach URL SWEEP' still works, with a warning.

A watch (fanout watch JOB --server) is followed from its next round on: its
changes as the workers publish them (as fanout watch events prints them),
--all every result too. With --confirm N/M, --flap K/M, --alive, --dead or
--db FILE, this command reads every result of every round and reckons the
changes itself by the rules of a local watch (fanout watch --help); --db
keeps the rounds in FILE as a local watch's --db does (--keep,
--keep-rounds; fanout history, results --watch and diff read them). The
first round followed reports the targets down then, as a watch's first
round does.`

const attachExample = `  id=$(fanout ping 10.0.0.0/16 --server nats://127.0.0.1:4222 --detach)
  fanout attach --server nats://127.0.0.1:4222 "$id" --digest SHA256 -o jsonl --output-file results.jsonl
  fanout attach --server nats://127.0.0.1:4222 "$id" --db sweeps.db   # submitted with --db sweeps.db
  fanout attach --server nats://127.0.0.1:4222 "$watch" --confirm 2/3 --db fleet.db --keep 7d`

// attachFlags holds fanout attach's command line: the output flags shared
// with the job commands, the server and what is checked of the sweep, and
// how a watch is followed.
type attachFlags struct {
	f              sweepFlags
	creds          cluster.Credentials
	dbSweep        int64
	digest, server string
	af             attachWatchFlags
}

func newAttachCmd() *cobra.Command {
	a := &attachFlags{}
	cmd := &cobra.Command{
		Use:     "attach [--server URL] SWEEP|WATCH [flags]",
		Short:   "Stream the results of a sweep submitted to a cluster, or follow a cluster watch",
		Long:    attachLong,
		Example: attachExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || len(args) > 2 {
				return usageErrorf("attach: want one sweep id (fanout attach [--server URL] SWEEP), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.run(cmd, args) },
	}
	a.register(cmd)
	return cmd
}

func (a *attachFlags) register(cmd *cobra.Command) {
	f, af := &a.f, &a.af
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&a.server, "server", "", serverFlagHelp)
	fl.StringVarP(&f.output, "output", "o", "text", "result format: text, jsonl or csv")
	fl.StringVar(&f.outputFile, "output-file", "", "write results to FILE instead of stdout")
	fl.BoolVar(&f.alive, "alive", false, "show only targets that are up (a watch: each round's, instead of the changes)")
	fl.BoolVar(&f.dead, "dead", false, "show only targets that are not up (a watch: each round's, instead of the changes)")
	fl.StringVar(&f.progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), always, never")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no summary on stderr")
	fl.StringVar(&a.digest, "digest", "", "the sweep's SHA-256 as printed when it was submitted: refuse a spec on the server that differs")
	fl.StringVar(&f.db, "db", "", "record the results in this SQLite file; a sweep: continues the submitter's record of it there, skipping what it holds (needs the digest: noted there by the submitter, or --digest); a watch: keeps its rounds as a local watch's --db does")
	fl.Int64Var(&a.dbSweep, "db-sweep", 0, "with --db: the sweep id in the file to continue (default: the one noted for this cluster sweep, else the newest unfinished one with the same targets and job)")
	fl.BoolVar(&af.all, "all", false, "a watch: print every result of every round too")
	fl.StringVar(&af.confirm, "confirm", "1/1", "a watch: report a change once the new state held in N of the last M rounds, as N/M (reckoned here from every result)")
	fl.StringVar(&af.flap, "flap", fmt.Sprintf("%d/%d", watch.DefaultFlapChanges, watch.DefaultFlapRounds), "a watch: flapping is more than K changes in the last M rounds, as K/M, or off (with --confirm, --alive, --dead or --db)")
	addWatchStoreFlags(fl, &af.store)
	addCredFlags(fl, &a.creds)
	exclusive(cmd, "all", "alive")
	exclusive(cmd, "all", "dead")
	// Only the output flags are bound; the others keep values fill accepts.
	f.concurrency, f.maxTargets = 1, 1
}

// run follows the sweep or watch named in args, after checking the flags
// and what --db noted of it.
func (a *attachFlags) run(cmd *cobra.Command, args []string) error {
	stderr := cmd.ErrOrStderr()
	url, id, err := a.check(args, stderr)
	if err != nil {
		return err
	}
	// What --db says of this sweep: the store sweep that recorded it
	// and the digest its submitter noted (id may be a watch: then
	// --db keeps its rounds, below).
	var noted int64
	var notedDigest string
	if a.f.db != "" {
		var err error
		if noted, notedDigest, err = notedSweep(a.f.db, id, a.dbSweep); err != nil {
			return usageError(err)
		}
		if a.digest != "" && notedDigest != "" && notedDigest != a.digest {
			return usageErrorf("--digest %s: %s noted sweep %s with digest %s", a.digest, a.f.db, id, notedDigest)
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	client, closeConn, err := dialCluster(ctx, url, a.creds, stderr)
	if err != nil {
		return err
	}
	defer closeConn()
	rec, err := client.Lookup(ctx, id)
	if errors.Is(err, cluster.ErrNoSweep) && noted == 0 {
		if wrec, werr := client.LookupWatch(ctx, id); werr == nil {
			switch {
			case a.digest != "" && wrec.Digest != a.digest:
				return fmt.Errorf("watch %s: %w: its SHA-256 is %s, the one submitted %s; nothing followed", id, cluster.ErrSpecChanged, wrec.Digest, a.digest)
			case cmd.Flags().Changed("db-sweep"):
				return usageErrorf("--db-sweep: %s is a watch: --db keeps its rounds as a watch of the file", id)
			}
			return attachWatch(ctx, cmd, client, wrec, &a.f, &a.af) // cwatch.go
		}
	}
	if err != nil {
		return usageError(err)
	}
	return a.runSweep(ctx, cmd, client, url, id, rec, noted, notedDigest)
}

// check reads the server and the id from args and checks the flags, before
// anything is sent.
func (a *attachFlags) check(args []string, stderr io.Writer) (url, id string, err error) {
	url, id, err = attachArgs(args, a.server, stderr)
	if err != nil {
		return "", "", err
	}
	if err := a.f.fill(new(fanout.Spec)); err != nil { // checks -o and --progress
		return "", "", err
	}
	if !cluster.ValidSweepID(id) {
		return "", "", usageErrorf("sweep id %q: want letters, digits, - and _ (as printed by --detach)", id)
	}
	if a.digest != "" && !isDigest(a.digest) {
		return "", "", usageErrorf("--digest %q: want the 64 hex digits printed at submission (sha256 ...)", a.digest)
	}
	if err := a.af.check(); err != nil {
		return "", "", err
	}
	return url, id, nil
}

// runSweep streams the results of sweep rec, once its spec is checked
// against the digest submitted (or noted in --db, as noted).
func (a *attachFlags) runSweep(ctx context.Context, cmd *cobra.Command, client *cluster.Client, url, id string, rec cluster.Record, noted int64, notedDigest string) error {
	f, stderr := &a.f, cmd.ErrOrStderr()
	for _, name := range watchOnly {
		if cmd.Flags().Changed(name) {
			return usageErrorf("--%s: for a cluster watch; %s is a sweep", name, id)
		}
	}
	if f.db != "" {
		if a.digest == "" {
			a.digest = notedDigest
		}
		if a.digest == "" {
			return usageErrorf("--db %s: the file notes no digest for sweep %s: give --digest SHA256 (printed when it was submitted), so that what is saved there is the spec that was submitted", f.db, id)
		}
	}
	limit := uint64(target.DefaultMaxTargets)
	switch {
	case a.digest != "" && rec.Digest != a.digest:
		return fmt.Errorf("sweep %s: %w: its SHA-256 is %s, the one submitted %s; nothing saved", id, cluster.ErrSpecChanged, rec.Digest, a.digest)
	case a.digest != "":
		limit = max(limit, rec.Spec.MaxTargets) // the submitter's own
	default:
		fmt.Fprintf(stderr, "fanout: warning: sweep %s's spec (sha256 %s) is not checked against the one submitted (give --digest)\n", id, rec.Digest)
	}
	if rec.Total > limit {
		return fmt.Errorf("sweep %s: %d targets, over the %d this command takes from an unchecked spec (give --digest)", id, rec.Total, limit)
	}
	p, err := newClusterPlan(rec.Spec)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", id, err)
	}
	if f.db != "" {
		// Continue the store's record of this sweep (the submitter's
		// --db), skipping what it already holds.
		if f.resumeSweep = noted; f.resumeSweep == 0 {
			f.resumeSweep = storeSweepOf(f.db, rec)
		}
		if f.resumeSweep != 0 {
			fmt.Fprintf(stderr, "fanout: continuing sweep %d of %s\n", f.resumeSweep, f.db)
		}
	}
	if err := openSinks(cmd, f, p); err != nil {
		return err
	}
	if p.note != nil {
		b, _ := json.Marshal(clusterNote{Server: url, Sweep: id, SHA256: rec.Digest})
		if err := p.note(clusterNoteKey, string(b)); err != nil {
			fmt.Fprintf(stderr, "fanout: warning: %v\n", err)
		}
	}
	p.reattach = attachCommand(url, rec, f.db)
	p.execute = func(ctx context.Context, p *plan, c *engine.Counters, emit func(job.Result)) error {
		return collect(ctx, client, url, rec, p, c, emit, stderr)
	}
	return p.run(ctx, cmd.Context(), f, stderr)
}

// attachArgs reads the server and the sweep id from attach's arguments: SWEEP
// with --server (or FANOUT_SERVER, or the default), or the older URL SWEEP,
// which says it is deprecated.
func attachArgs(args []string, server string, stderr io.Writer) (url, id string, err error) {
	if len(args) == 1 {
		id = args[0]
		if strings.Contains(id, "://") {
			return "", "", usageErrorf("attach %s: that is a server URL: give the sweep id too (fanout attach --server URL SWEEP)", id)
		}
		return serverURL(server), id, nil
	}
	if server != "" {
		return "", "", usageErrorf("attach %s %s --server %s: two servers: give only --server URL SWEEP", args[0], args[1], server)
	}
	fmt.Fprintf(stderr, "fanout: warning: 'fanout attach URL SWEEP' is deprecated: use 'fanout attach --server %s %s'\n", args[0], args[1])
	return args[0], args[1], nil
}

// isDigest reports whether s is a SHA-256 in hex.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// newClusterPlan is the plan of a sweep read from a cluster: its targets
// and order, from the spec alone. Nothing is read from this machine (a spec
// naming "@FILE" or "-" is refused) and no job is built: it runs elsewhere.
func newClusterPlan(spec fanout.Spec) (*plan, error) {
	set, order, err := spec.Visit()
	if err != nil {
		return nil, err
	}
	return &plan{spec: spec, set: set, order: order, opts: spec.EngineOptions()}, nil
}

// notedSweep finds what the fanout database at path noted about cluster
// sweep id when it was submitted (or attached) with --db: the store sweep
// and the digest. With dbSweep, that sweep's note must be about id (or
// absent). A missing file holds nothing.
func notedSweep(path, id string, dbSweep int64) (int64, string, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, "", nil
	}
	st, err := store.OpenExisting(path)
	if err != nil {
		return 0, "", err
	}
	defer st.Close()
	read := func(sw int64) (clusterNote, error) {
		var n clusterNote
		v, err := st.Note(sw, clusterNoteKey)
		if err != nil || v == "" {
			return n, err
		}
		if err := json.Unmarshal([]byte(v), &n); err != nil {
			return n, fmt.Errorf("%s: sweep %d: bad note %q: %w", path, sw, v, err)
		}
		return n, nil
	}
	if dbSweep != 0 {
		if _, err := st.Sweep(dbSweep); err != nil {
			return 0, "", err
		}
		n, err := read(dbSweep)
		if err != nil {
			return 0, "", err
		}
		if n.Sweep != "" && n.Sweep != id {
			return 0, "", fmt.Errorf("--db-sweep %d: sweep %d of %s was cluster sweep %s, not %s", dbSweep, dbSweep, path, n.Sweep, id)
		}
		return dbSweep, n.SHA256, nil
	}
	sws, err := st.Sweeps()
	if err != nil {
		return 0, "", err
	}
	for i := len(sws) - 1; i >= 0; i-- {
		n, err := read(sws[i].ID)
		if err != nil {
			return 0, "", err
		}
		if n.Sweep == id {
			return sws[i].ID, n.SHA256, nil
		}
	}
	return 0, "", nil
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
