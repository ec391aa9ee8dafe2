package cli

import (
	"context"
	"encoding/json"
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
	jobssh "github.com/fanout/fanout/job/ssh"
)

func init() { register(newWorkerCmd) }

func newWorkerCmd() *cobra.Command {
	var (
		server  string
		o       cluster.WorkerOptions
		allow   string
		creds   cluster.Credentials
		ackWait time.Duration
		local   jobssh.Local // this worker's own ssh files and policy
		tags    string
		metrics string
	)
	var maxConns int // --max-connections: ssh connections kept for watches
	cmd := &cobra.Command{
		Use:   "worker [--server URL] [flags]",
		Short: "Run sweep tasks from a fanout cluster",
		Long: `Pull tasks (index ranges of submitted sweeps) from the cluster, run them with
the local engine and job kinds, and publish their results. Start any number of
workers on any machines, at any time; a worker that dies loses nothing (its
tasks go to the others after the ack wait).

-c bounds the targets in flight on this worker across all its tasks. --allow
lists the job kinds it runs: by default every kind but exec and ssh, because
exec runs arbitrary local commands here and ssh logs in elsewhere with this
worker's keys. Tasks of other kinds are left to other workers.

--tags KEY=VALUE,... (dc=paris,rack=3) are published with the worker's
heartbeat: a sweep or watch submitted with --on dc=paris runs only on the
workers that have every tag it names (a watch's chunks are shared out among
those alone); the others leave it.

An ssh sweep runs here with this worker's own OpenSSH setup, never the
submitter's: the ssh config (--ssh-config, default ~/.ssh/config then
/etc/ssh/ssh_config), keys (the agent unless --no-agent, --identity, the
config's IdentityFile, ~/.ssh/id_*), known_hosts (--known-hosts, default the
config's UserKnownHostsFile, else ~/.ssh/known_hosts) and bastion (--jump, or
the config's ProxyJump). --host-key is the widest host-key policy a sweep gets
(default: the config's StrictHostKeyChecking, else strict); a sweep may ask a
narrower one. A sweep that names files or a bastion of its own, or asks a
wider policy, is refused here (and logged).

Credentials: on this machine, a loopback server's own (found by themselves);
elsewhere a worker-role user of the server's users file (--nkey-seed FILE),
or the cluster's token. If the server goes away or refuses the credentials
for a while, the worker retries with backoff, says so once a minute, and
resumes when it is accepted again. See SECURITY.md.

--metrics ADDR serves Prometheus metrics of what this worker ran at
http://ADDR/metrics: per cluster watch, the rounds it saw tick, the chunks it
polled (late, failed and retried, taken over from a dead owner), their
targets by status and errors by class, the results and change events it
published, a histogram of chunk durations; and its sweep tasks (run, handed
back, targets by status, errors by class, results, durations). Each worker
serves its own: scrape them all, and the server's (fanout server --metrics)
for the cluster's view.`,
		Example: `  fanout worker
  fanout worker --server tls://nats.example:4222 --tls-ca ca.pem --nkey-seed rack1.nk -c 2000 --name rack1-a
  fanout worker --allow ping,tcp,exec
  fanout worker --metrics 127.0.0.1:9109
  fanout worker --allow ssh --ssh-config /etc/fanout/ssh_config --identity /etc/fanout/id_ed25519 --known-hosts /etc/fanout/known_hosts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			stderr := cmd.ErrOrStderr()
			if o.Concurrency < 1 {
				return usageErrorf("--concurrency %d: want 1 or more", o.Concurrency)
			}
			var err error
			if o.Tags, err = cluster.ParseTags(tags); err != nil {
				return usageErrorf("--tags: %v", err)
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
			switch local.HostKey {
			case "", jobssh.HostKeyStrict, jobssh.HostKeyAcceptNew, jobssh.HostKeyOff:
			default:
				return usageErrorf("--host-key %q: want strict, accept-new or off", local.HostKey)
			}
			env := jobssh.DefaultEnv()
			env.Prompt = nil // no terminal to ask a passphrase on mid-sweep: use the agent
			if slices.Contains(o.Allow, jobssh.Kind) {
				if err := local.Check(env); err != nil {
					return usageError(err)
				}
			}
			o.Confine = map[string]func(json.RawMessage) (json.RawMessage, error){
				jobssh.Kind: func(opts json.RawMessage) (json.RawMessage, error) { return jobssh.Confine(opts, local, env) },
			}
			o.AckWait = ackWait
			o.Concurrency = fitConcurrency(stderr, o.Concurrency, 2)
			// A cluster watch ssh keeps its hosts' connections between
			// rounds, as many as --max-connections, else -c.
			keep := maxConns
			if keep == 0 {
				keep = o.Concurrency
			}
			o.Rounds = map[string]func(json.RawMessage) (json.RawMessage, error){
				jobssh.Kind: func(opts json.RawMessage) (json.RawMessage, error) { return jobssh.KeepForRounds(opts, keep) },
			}
			creds, err := clusterCreds(creds)
			if err != nil {
				return err
			}
			if metrics != "" {
				// Listening first: an address in use is a usage error
				// before the worker connects.
				ms, err := cluster.ListenMetrics(metrics)
				if err != nil {
					return usageErrorf("--metrics: %w", err)
				}
				defer ms.Close()
				o.Metrics = cluster.NewWorkerMetrics(ms.Registry)
				fmt.Fprintf(stderr, "%s fanout: metrics on http://%s/metrics\n", time.Now().Format("15:04:05"), ms.Addr())
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
			if err := cluster.CheckServers(url); err != nil {
				return usageError(err)
			}
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
	fl.StringVar(&server, "server", "", serverFlagHelp)
	fl.IntVarP(&o.Concurrency, "concurrency", "c", engine.DefaultConcurrency, "targets in flight at most on this worker")
	fl.StringVar(&o.Name, "name", "", "worker name shown in status and results (default HOST-PID)")
	fl.StringVar(&allow, "allow", "", "job kinds this worker runs, comma-separated (default: all but exec and ssh)")
	fl.StringVar(&tags, "tags", "", "this worker's tags, KEY=VALUE,... (dc=paris,rack=3): sweeps and watches submitted with --on run only on the workers that have them")
	fl.StringVarP(&local.SSHConfig, "ssh-config", "F", "", `ssh sweeps: ssh config file, instead of ~/.ssh/config and /etc/ssh/ssh_config ("none" for none)`)
	fl.StringArrayVarP(&local.Identities, "identity", "i", nil, "ssh sweeps: identity file (repeatable), tried after the agent's keys")
	fl.BoolVar(&local.NoAgent, "no-agent", false, "ssh sweeps: do not use the ssh-agent")
	fl.StringArrayVar(&local.KnownHosts, "known-hosts", nil, "ssh sweeps: known_hosts file (repeatable; default: UserKnownHostsFile, else ~/.ssh/known_hosts)")
	fl.StringVar(&local.HostKey, "host-key", "", "ssh sweeps: the widest host key policy a sweep gets: strict, accept-new or off (default: StrictHostKeyChecking of the ssh config, else strict)")
	fl.StringVarP(&local.ProxyJump, "jump", "J", "", "ssh sweeps: reach every target through this bastion, [user@]host[:port]")
	fl.IntVar(&maxConns, "max-connections", 0, "watch ssh: connections kept between rounds at most, the least recently used closed first (default: as many as -c; give at least the hosts this worker polls, or they are redialled each round)")
	fl.DurationVar(&ackWait, "ack-wait", cluster.DefaultAckWait, "how long a task of a dead worker waits before redelivery (when this worker creates the shared consumer)")
	_ = fl.MarkHidden("ack-wait")
	fl.BoolVarP(&o.Verbose, "verbose", "v", false, "log each task: targets, run and publish times")
	fl.StringVar(&metrics, "metrics", "", "serve Prometheus metrics of what this worker runs at http://ADDR/metrics (HOST:PORT)")
	addCredFlags(fl, &creds)
	return cmd
}
