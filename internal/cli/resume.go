package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/target"
)

func init() { register(newResumeCmd) }

// fdsPerTarget is each job kind's open files per target in flight (as its
// command declares), so that resume fits -c under ulimit -n the same way.
var fdsPerTarget = map[string]int{"exec": 8, "tcp": 1, "ping": 0, "ssh": 2}

func newResumeCmd() *cobra.Command {
	var f *sweepFlags
	cmd := &cobra.Command{
		Use:   "resume FILE [SWEEP]",
		Short: "Continue an interrupted sweep recorded with --db",
		Long: `Continue a sweep recorded with --db FILE exactly where it stopped: the same
targets in the same order (same seed and shard), the same job and options,
skipping every target that already has a Result in FILE. New Results are
appended to the same sweep. Works after Ctrl-C, kill -9 or a power cut: a
Result is either in the database or is run again, never half there.

One process runs a sweep at a time: resuming a sweep that another process
is running exits 2 (sweep S is running (pid P)) before running anything.

SWEEP defaults to the last sweep in FILE that is not finished. Output flags
(-o, --alive, --dead, --output-file, --progress, -q) apply to the resumed part;
-c and --rate may be changed; the sweep's other options are its own.`,
		Example: `  fanout tcp -p 22 --db scan.db 10.0.0.0/16   # interrupted at 60%
  fanout resume scan.db
  fanout resume scan.db 3 -c 200`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			for _, name := range []string{"timeout", "retries", "shuffle", "seed", "shard", "exclude", "max-targets", "allow-huge", "db"} {
				if fl.Changed(name) {
					return usageErrorf("--%s: a resumed sweep keeps the options it was started with", name)
				}
			}
			st, err := openDB(args[0])
			if err != nil {
				return err
			}
			var sw store.Sweep
			if len(args) == 2 {
				sw, err = pickSweep(st, args[1])
			} else if sw, err = st.LastUnfinished(); err != nil {
				if all, _ := st.Sweeps(); len(all) > 0 && errors.Is(err, store.ErrNoSweep) {
					st.Close()
					fmt.Fprintf(cmd.ErrOrStderr(), "fanout: every sweep in %s is finished: nothing to resume\n", args[0])
					return nil
				}
				err = usageError(err)
			}
			st.Close()
			if err != nil {
				return err
			}
			if sw.State == store.Finished {
				fmt.Fprintf(cmd.ErrOrStderr(), "fanout: sweep %d in %s is finished: nothing to resume\n", sw.ID, args[0])
				return nil
			}
			spec := sw.Spec
			if !fl.Changed("concurrency") && spec.Concurrency > 0 {
				f.concurrency = spec.Concurrency
			}
			if !fl.Changed("rate") {
				f.rate = spec.Rate
			}
			f.timeout, f.retries = spec.Timeout, spec.Retries
			f.shuffle, f.seed = spec.Shuffle, spec.Seed
			f.shard = ""
			if spec.ShardN > 0 {
				f.shard = fmt.Sprintf("%d/%d", spec.ShardI, spec.ShardN)
			}
			f.excludes = nil // spec.Excludes are kept as they are
			f.maxTargets, f.allowHuge = spec.MaxTargets, spec.AllowHuge
			if f.maxTargets == 0 {
				f.maxTargets = target.DefaultMaxTargets
			}
			if n, ok := fdsPerTarget[spec.Job]; ok {
				f.fdsPerTarget = n
			}
			f.db, f.resumeSweep = args[0], sw.ID
			return runSweep(cmd, f, spec)
		},
	}
	f = addSweepFlags(cmd, sweepDefaults{FDsPerTarget: 2})
	return cmd
}
