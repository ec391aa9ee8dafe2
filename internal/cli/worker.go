package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
)

func init() { register(newWorkerCmd) }

func newWorkerCmd() *cobra.Command {
	var (
		server  string
		o       cluster.WorkerOptions
		allow   string
		creds   cluster.Credentials
		ackWait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker [--server URL] [flags]",
		Short: "Run sweep tasks from a fanout cluster",
		Long: `Pull tasks (index ranges of submitted sweeps) from the cluster, run them with
the local engine and job kinds, and publish their results. Start any number of
workers on any machines, at any time; a worker that dies loses nothing (its
tasks go to the others after the ack wait).

-c bounds the targets in flight on this worker across all its tasks. --allow
lists the job kinds it runs: by default every kind but exec, because exec runs
arbitrary local commands here. Tasks of other kinds are left to other workers.
ssh tasks use this machine's own ssh configuration, keys and known_hosts.

Credentials: on this machine, a loopback server's own (found by themselves);
elsewhere a worker-role user of the server's users file (--nkey-seed FILE),
or the cluster's token. If the server goes away or refuses the credentials
for a while, the worker retries with backoff, says so once a minute, and
resumes when it is accepted again. See SECURITY.md.`,
		Example: `  fanout worker
  fanout worker --server tls://nats.example:4222 --tls-ca ca.pem --nkey-seed rack1.nk -c 2000 --name rack1-a
  fanout worker --allow ping,tcp,ssh,exec`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			stderr := cmd.ErrOrStderr()
			if o.Concurrency < 1 {
				return usageErrorf("--concurrency %d: want 1 or more", o.Concurrency)
			}
			if allow != "" {
				o.Allow = nil
				for _, k := range strings.Split(allow, ",") {
					k = strings.TrimSpace(k)
					if k == "" {
						continue
					}
					if !slices.Contains(job.Kinds(), k) {
						return usageErrorf("--allow %q: unknown job kind %q (known: %s)", allow, k, strings.Join(job.Kinds(), ", "))
					}
					o.Allow = append(o.Allow, k)
				}
			}
			o.AckWait = ackWait
			o.Concurrency = fitConcurrency(stderr, o.Concurrency, 2)
			creds, err := clusterCreds(creds)
			if err != nil {
				return err
			}
			// A lasting trouble (server gone, credentials refused) repeats
			// the same line on every retry: it is logged once a minute.
			logf := cluster.QuietRepeats(func(f string, a ...any) {
				fmt.Fprintf(stderr, "%s fanout: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, a...))
			}, time.Minute)
			o.Logf = logf
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			url := serverURL(server)
			nc, err := cluster.Connect(ctx, url, creds, "fanout worker "+o.Name, logf)
			if err != nil {
				return err
			}
			defer nc.Close()
			sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			w, err := cluster.NewWorker(sctx, nc, o)
			cancel()
			if err != nil {
				return fmt.Errorf("cluster %s: %w", url, err)
			}
			if err := w.Run(ctx); err != nil {
				return err
			}
			logf("worker stopped; unfinished tasks were handed back")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "", "cluster URL nats://HOST:PORT (or env FANOUT_SERVER; default "+cluster.DefaultURL+")")
	fl.IntVarP(&o.Concurrency, "concurrency", "c", engine.DefaultConcurrency, "targets in flight at most on this worker")
	fl.StringVar(&o.Name, "name", "", "worker name shown in status and results (default HOST-PID)")
	fl.StringVar(&allow, "allow", "", "job kinds this worker runs, comma-separated (default: all but exec)")
	fl.DurationVar(&ackWait, "ack-wait", cluster.DefaultAckWait, "how long a task of a dead worker waits before redelivery (when this worker creates the shared consumer)")
	_ = fl.MarkHidden("ack-wait")
	fl.BoolVarP(&o.Verbose, "verbose", "v", false, "log each task: targets, run and publish times")
	addCredFlags(fl, &creds)
	return cmd
}
