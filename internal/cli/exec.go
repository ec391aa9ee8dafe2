package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	jobexec "github.com/fanout/fanout/job/exec"
)

func init() { register(newExecCmd) }

func newExecCmd() *cobra.Command {
	var maxOutput int
	var f *sweepFlags
	var out *cmdOutput
	cmd := &cobra.Command{
		Use:   "exec [flags] TARGETS... -- COMMAND [ARGS...]",
		Short: "Run a local command once per target",
		Long: `Run COMMAND once per target, with the target substituted into ARGS:

  {} or {host}  the target as given (name or address)
  {addr}        its address (a name is resolved first)
  {port}        its port (a target host:8080 has one), else empty
  {index}       its index in the sweep's canonical order

There is no shell: write sh -c '...' to get one. A target is up when the
command exits 0. Exit code, stdout and stderr are kept (each bounded by
--max-output). On timeout, on Ctrl-C and when the command exits, all it
started is killed, even what left its process group (setsid) or
daemonised: nothing a command starts outlives it.

Output, by default, is every line of each target's output prefixed with the
target, as it completes (stdout lines on stdout, stderr lines and the reason a
target failed on stderr), like pdsh and pssh -i; --gather prints each
distinct output once under its targets folded into node-set form, like
clubak -c / dshbak -c; --outdir writes DIR/HOST.stdout and DIR/HOST.stderr
like pssh -o/-e, with one line per target on stdout; -o jsonl and -o csv give
the full Result.`,
		Example: `  fanout exec 192.168.2.0/24 -- ping -c 3 -W 1 {}
  fanout exec --timeout 10s -o jsonl @hosts.txt -- ssh -o BatchMode=yes {} uptime
  fanout exec web[01-20].example.com -- sh -c 'curl -fsS http://{}/health'
  fanout exec --gather @hosts.txt -- ssh -o BatchMode=yes {} cat /etc/debian_version
  fanout exec --outdir out/ @hosts.txt -- ssh {} journalctl -n 50`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash < 0 || dash == len(args) {
				return usageErrorf("no command given: want exec TARGETS... -- COMMAND [ARGS...]")
			}
			targets, argv := args[:dash], args[dash:]
			out.apply(f)
			return runSweep(cmd, f, fanout.Spec{
				Job:        jobexec.Kind,
				JobOptions: jobOptions(jobexec.Config{Argv: argv, MaxOutput: maxOutput}),
				Targets:    targets,
			})
		},
	}
	// A command is a process plus three pipes (six descriptors until the
	// child has them), so budget generously.
	f = addSweepFlags(cmd, sweepDefaults{Timeout: 0 * time.Second, Refuse: map[string]string{
		"all-addresses": "exec keeps every address of a CIDR (its command decides what an address is for)",
	}})
	out = addCmdOutputFlags(cmd)
	cmd.Flags().IntVar(&maxOutput, "max-output", jobexec.DefaultMaxOutput, "bytes of stdout and of stderr kept per target (the rest is counted as truncated)")
	return cmd
}
