package cli

// Cluster mode of the job commands: --server URL submits the sweep to a
// fanout cluster (see cluster/) instead of running it here, and streams the
// results back into the same sinks, progress bar and summary.

import (
	"context"
	"encoding/json"
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
	server    string
	detach    bool
	retention time.Duration
	creds     cluster.Credentials
	pin       string // --on TAGS
}

func addClusterFlags(cmd *cobra.Command) *clusterFlags {
	cf := &clusterFlags{}
	fl := cmd.Flags()
	fl.StringVar(&cf.server, "server", "", "run the sweep on a fanout cluster at nats://HOST:PORT, or at any of its servers, comma-separated (see fanout server, fanout worker); -c and --rate then apply per worker")
	fl.BoolVar(&cf.detach, "detach", false, "with --server: submit, print the sweep id and return (fanout attach streams the results)")
	fl.DurationVar(&cf.retention, "retention", cluster.DefaultRetention, "with --server: how long the server keeps the sweep's spec, tasks and results (at most "+shortDuration(cluster.MaxRetention)+"); a task no worker ran by then is dropped")
	fl.StringVar(&cf.pin, "on", "", "with --server: run only on the workers tagged with all of these, as KEY=VALUE,... (fanout worker --tags)")
	addCredFlags(fl, &cf.creds)
	return cf
}

// tags reads --on: nil without it; a bad one (or one without --server) is a
// usage error.
func (cf *clusterFlags) tags() (map[string]string, error) {
	if cf == nil || cf.pin == "" {
		return nil, nil
	}
	if cf.server == "" {
		return nil, usageErrorf("--on %s needs --server URL: it picks the cluster's workers that run the job", cf.pin)
	}
	on, err := cluster.ParseTags(cf.pin)
	if err != nil {
		return nil, usageErrorf("--on: %v", err)
	}
	return on, nil
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
	if err := cluster.CheckServers(url); err != nil {
		return nil, nil, usageError(err)
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
// submits at once and reports detached: the command is then done. db is
// --db: the submitted sweep's digest is noted there, for attach.
func (cf *clusterFlags) apply(ctx context.Context, cmd *cobra.Command, p *plan, db string) (detached bool, err error) {
	if cf == nil {
		return false, nil
	}
	on, err := cf.tags()
	if err != nil {
		return false, err
	}
	if cf.server == "" {
		if cf.detach {
			return false, usageErrorf("--detach needs --server URL: a local sweep cannot outlive this command")
		}
		return false, nil
	}
	if cf.retention < time.Second || cf.retention > cluster.MaxRetention {
		return false, usageErrorf("--retention %v: want 1s to %v", cf.retention, shortDuration(cluster.MaxRetention))
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
		rec, err := client.Submit(ctx, p.spec, p.order.Len(), cluster.SubmitOptions{Retention: cf.retention, On: on})
		if err != nil {
			return rec, err
		}
		fmt.Fprintf(stderr, "fanout: sweep %s submitted to %s: %d targets in %d tasks of %d, kept %s; sha256 %s\n",
			rec.ID, cf.server, rec.Total, rec.Tasks, rec.TaskSize, shortDuration(rec.Retention), rec.Digest)
		p.reattach = attachCommand(cf.server, rec, db)
		if p.note != nil {
			b, _ := json.Marshal(clusterNote{Server: cf.server, Sweep: rec.ID, SHA256: rec.Digest})
			if err := p.note(clusterNoteKey, string(b)); err != nil {
				fmt.Fprintf(stderr, "fanout: warning: %v\n", err)
			}
		}
		warnNoWorker(ctx, client, rec, cf.server, stderr)
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
		fmt.Fprintf(stderr, "fanout: stream its results with: %s\n", attachCommand(cf.server, rec, ""))
		return true, nil
	}
	p.execute = func(ctx context.Context, p *plan, c *engine.Counters, emit func(job.Result)) error {
		defer closeConn()
		rec, err := submit(ctx)
		if err != nil {
			return err
		}
		return collect(ctx, client, cf.server, rec, p, c, emit, stderr)
	}
	return false, nil
}

// clusterNote is what --db keeps about a sweep submitted to a cluster: the
// record's digest is what attach --db checks the server's record against
// before it saves anything (or suggests a resume).
type clusterNote struct {
	Server string `json:"server"`
	Sweep  string `json:"sweep"`
	SHA256 string `json:"sha256"`
}

const clusterNoteKey = "cluster"

// attachCommand is the command that streams the rest of rec's results.
func attachCommand(url string, rec cluster.Record, db string) string {
	c := fmt.Sprintf("fanout attach --server %s %s --digest %s", url, rec.ID, rec.Digest)
	if db != "" {
		c += " --db " + db
	}
	return c
}

// collect streams a submitted sweep's results into emit; on interrupt it
// says how to pick them up again. Results that are not the sweep's are
// dropped, and counted on stderr.
func collect(ctx context.Context, client *cluster.Client, url string, rec cluster.Record, p *plan, c *engine.Counters, emit func(job.Result), stderr io.Writer) error {
	var drop cluster.Dropped
	err := client.Collect(ctx, rec.ID, cluster.CollectOptions{
		Digest: rec.Digest, MaxTargets: max(p.spec.MaxTargets, rec.Total),
		Have: p.opts.Skip, Counters: c, Dropped: &drop, Emit: emit,
	})
	if n, m := drop.Results(), drop.Malformed.Load(); n > 0 || m > 0 {
		fmt.Fprintf(stderr, "fanout: sweep %s: %d forged/invalid results dropped (%d forged, %d invalid), %d malformed messages skipped\n",
			rec.ID, n, drop.Forged.Load(), drop.Invalid.Load(), m)
		if why := drop.MalformedReason(); why != "" {
			fmt.Fprintf(stderr, "fanout: sweep %s: first malformed message: %s\n", rec.ID, why)
		}
	}
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(stderr, "fanout: sweep %s goes on in the cluster; stream the rest with: %s\n", rec.ID, attachCommand(url, rec, ""))
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

// warnNoWorker says so when no live worker would run a sweep of rec's kind:
// the sweep then waits, which is otherwise indistinguishable from slowness,
// and its tasks are dropped when its retention runs out.
func warnNoWorker(ctx context.Context, client *cluster.Client, rec cluster.Record, url string, stderr io.Writer) {
	kind := rec.Spec.Job
	ws, err := client.Workers(ctx)
	if err != nil {
		return
	}
	for _, w := range ws {
		if slices.Contains(w.Allow, kind) && cluster.TagsMatch(w.Tags, rec.On) {
			return
		}
	}
	how := "fanout worker --server " + url
	if !slices.Contains(cluster.DefaultAllow(), kind) {
		how += " --allow " + kind // exec and ssh are off unless a worker opts in
	}
	tagged := ""
	if len(rec.On) > 0 {
		tagged = " with tags " + cluster.FormatTags(rec.On)
		how += " --tags " + cluster.FormatTags(rec.On)
	}
	fmt.Fprintf(stderr, "fanout: warning: no live worker runs job kind %q%s (%d live workers); the sweep waits for one (its tasks are dropped after %s): %s\n",
		kind, tagged, len(ws), shortDuration(rec.Retention), how)
}

// shortDuration writes whole hours or minutes without the zeros of
// Duration.String: 24h, not 24h0m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d > 0 && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
