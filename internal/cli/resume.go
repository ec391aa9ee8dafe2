package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/target"
)

func init() { register(newResumeCmd) }

// resumeKeeps are the sweep flags a resumed sweep takes from its record, not
// from the command line: resume refuses them (and help does not list them).
var resumeKeeps = []string{"timeout", "retries", "shuffle", "seed", "shard", "exclude", "max-targets", "allow-huge", "all-addresses", "inventory", "limit"}

func newResumeCmd() *cobra.Command {
	var f *sweepFlags
	var stdinFile string
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
-c and --rate may be changed; the sweep's other options are its own. An ssh
sweep run with --stdin FILE needs it again: only its SHA-256 is stored, and
the bytes given must match it.`,
		Example: `  fanout tcp -p 22 --db scan.db 10.0.0.0/16   # interrupted at 60%
  fanout resume scan.db
  fanout resume scan.db 3 -c 200`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			st, err := openDB(args[0])
			if err != nil {
				return err
			}
			var sw store.Sweep
			if len(args) == 2 {
				sw, err = pickSweep(st, args[1])
			} else if all, serr := st.Sweeps(); serr != nil {
				err = serr
			} else if len(all) == 0 {
				err = usageErrorf("no sweep in %s: nothing to resume", args[0])
			} else if sw, err = st.LastUnfinished(); errors.Is(err, store.ErrNoSweep) {
				st.Close()
				fmt.Fprintf(cmd.ErrOrStderr(), "fanout: every sweep in %s is finished: nothing to resume\n", output.Safe(args[0]))
				return nil
			} else if err != nil {
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
			if stdinFile != "" {
				data, err := readStdinFile(cmd, stdinFile)
				if err == nil {
					spec, err = spec.JoinStdin(data)
				}
				if err != nil {
					return usageError(fmt.Errorf("--stdin: %w", err))
				}
			}
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
			f.hostsOnly, f.allAddrs = spec.SkipNetworkBroadcast, false
			if f.maxTargets == 0 {
				f.maxTargets = target.DefaultMaxTargets
			}
			f.db, f.resumeSweep = args[0], sw.ID
			return runSweep(cmd, f, spec)
		},
	}
	keeps := "a resumed sweep keeps the options it was started with"
	refuse := map[string]string{}
	for _, name := range resumeKeeps {
		refuse[name] = keeps
	}
	refuse["db"] = "resume FILE records into FILE"
	f = addSweepFlags(cmd, sweepDefaults{Refuse: refuse})
	cmd.Flags().StringVar(&stdinFile, "stdin", "", "an ssh sweep run with --stdin: the same FILE again (\"-\" for standard input); its SHA-256 is checked")
	return cmd
}
