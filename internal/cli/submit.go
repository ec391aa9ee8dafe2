package cli

// Cluster mode of the job commands: --server URL submits the sweep to a
// fanout cluster (see cluster/) instead of running it here, and streams the
// results back into the same sinks, progress bar and summary.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
)

// clusterFlags are the job commands' cluster flags.
type clusterFlags struct {
	server string
	detach bool
	creds  cluster.Credentials
}

func addClusterFlags(cmd *cobra.Command) *clusterFlags {
	cf := &clusterFlags{}
	fl := cmd.Flags()
	fl.StringVar(&cf.server, "server", "", "run the sweep on a fanout cluster at nats://HOST:PORT (see fanout server, fanout worker); -c and --rate then apply per worker")
	fl.BoolVar(&cf.detach, "detach", false, "with --server: submit, print the sweep id and return (fanout attach streams the results)")
	addCredFlags(fl, &cf.creds)
	return cf
}

// addCredFlags binds the cluster credential flags; empty ones are read from
// the environment when used. A password has no flag: ps shows flags.
func addCredFlags(fl *pflag.FlagSet, c *cluster.Credentials) {
	fl.StringVar(&c.Token, "token", "", "cluster auth token (or env FANOUT_TOKEN, better: ps shows flags; create one with fanout server --gen-token)")
	fl.StringVar(&c.NkeySeed, "nkey-seed", "", "cluster auth: nkey seed FILE (or env FANOUT_NKEY_SEED; default for a loopback server of this user: the seed it made)")
	fl.StringVar(&c.User, "cluster-user", "", "cluster auth: user NAME of the server's users file, password in env FANOUT_PASSWORD (or env FANOUT_USER)")
	fl.StringVar(&c.TLSCA, "tls-ca", "", "cluster TLS: CA certificate FILE to verify the peer (env FANOUT_TLS_CA)")
	fl.StringVar(&c.TLSCert, "tls-cert", "", "cluster TLS: certificate FILE (env FANOUT_TLS_CERT)")
	fl.StringVar(&c.TLSKey, "tls-key", "", "cluster TLS: key FILE of --tls-cert (env FANOUT_TLS_KEY)")
}

// clusterCreds are the credentials given by flags and environment, checked
// before any connection: a bad one is a usage error.
func clusterCreds(c cluster.Credentials) (cluster.Credentials, error) {
	c = c.FromEnv()
	if err := c.Check(); err != nil {
		return c, usageError(err)
	}
	return c, nil
}

// dialCluster connects to the cluster at url and prepares a client.
func dialCluster(ctx context.Context, url string, creds cluster.Credentials, stderr io.Writer) (*cluster.Client, func(), error) {
	creds, err := clusterCreds(creds)
	if err != nil {
		return nil, nil, err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(stderr, "fanout: "+f+"\n", a...) }
	nc, err := cluster.Connect(ctx, url, creds, "fanout "+commandName(), logf)
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := cluster.NewClient(sctx, nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("cluster %s: %w", url, err)
	}
	return c, nc.Close, nil
}

func commandName() string {
	if len(os.Args) > 1 {
		return os.Args[1]
	}
	return "client"
}

// apply makes p run on the cluster when --server is given. With --detach it
// submits at once and reports detached: the command is then done.
func (cf *clusterFlags) apply(ctx context.Context, cmd *cobra.Command, p *plan) (detached bool, err error) {
	if cf == nil {
		return false, nil
	}
	if cf.server == "" {
		if cf.detach {
			return false, usageErrorf("--detach needs --server URL: a local sweep cannot outlive this command")
		}
		return false, nil
	}
	stderr := cmd.ErrOrStderr()
	client, closeConn, err := dialCluster(ctx, cf.server, cf.creds, stderr)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return false, err
		}
		return false, &exitError{code: ExitSomeNotUp, err: err}
	}
	submit := func(ctx context.Context) (cluster.Record, error) {
		rec, err := client.Submit(ctx, p.spec, cluster.SubmitOptions{})
		if err != nil {
			return rec, err
		}
		fmt.Fprintf(stderr, "fanout: sweep %s submitted to %s: %d targets in %d tasks of %d\n",
			rec.ID, cf.server, rec.Total, rec.Tasks, rec.TaskSize)
		warnNoWorker(ctx, client, rec.Spec.Job, cf.server, stderr)
		return rec, nil
	}
	if cf.detach {
		defer closeConn()
		rec, err := submit(ctx)
		_ = p.closeSinks() // nothing will be written here
		if err != nil {
			return true, &exitError{code: ExitSomeNotUp, err: err}
		}
		fmt.Fprintln(cmd.OutOrStdout(), rec.ID)
		fmt.Fprintf(stderr, "fanout: stream its results with: fanout attach %s %s\n", cf.server, rec.ID)
		return true, nil
	}
	p.execute = func(ctx context.Context, p *plan, c *engine.Counters, emit func(job.Result)) error {
		defer closeConn()
		rec, err := submit(ctx)
		if err != nil {
			return err
		}
		return collect(ctx, client, cf.server, rec.ID, p, c, emit, stderr)
	}
	return false, nil
}

// collect streams a submitted sweep's results into emit; on interrupt it
// says how to pick them up again.
func collect(ctx context.Context, client *cluster.Client, url, id string, p *plan, c *engine.Counters, emit func(job.Result), stderr io.Writer) error {
	err := client.Collect(ctx, id, cluster.CollectOptions{Have: p.opts.Skip, Counters: c, Emit: emit})
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(stderr, "fanout: sweep %s goes on in the cluster; stream the rest with: fanout attach %s %s\n", id, url, id)
	}
	return err
}

// serverURL is --server, else FANOUT_SERVER, else the local default.
func serverURL(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("FANOUT_SERVER"); env != "" {
		return env
	}
	return cluster.DefaultURL
}

// warnNoWorker says so when no live worker would run a sweep of kind: the
// sweep then waits, which is otherwise indistinguishable from slowness.
func warnNoWorker(ctx context.Context, client *cluster.Client, kind, url string, stderr io.Writer) {
	ws, err := client.Workers(ctx)
	if err != nil {
		return
	}
	for _, w := range ws {
		if slices.Contains(w.Allow, kind) {
			return
		}
	}
	how := "fanout worker --server " + url
	if kind == "exec" {
		how += " --allow exec" // exec is off unless a worker opts in
	}
	fmt.Fprintf(stderr, "fanout: warning: no live worker runs job kind %q (%d live workers); the sweep waits for one: %s\n", kind, len(ws), how)
}
