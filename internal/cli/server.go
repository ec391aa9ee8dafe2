package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanout/fanout/cluster"
)

func init() { register(newServerCmd) }

// serverLongHead and serverLongTail frame the server's help around the local
// seed file's path, which depends on the machine.
const serverLongHead = `Run the NATS server (with JetStream, file storage) that fanout workers pull
tasks from and submitters send sweeps to. It listens on 127.0.0.1:4222 unless
told otherwise.

Clients always authenticate. Given no credentials, the server makes an nkey
for the user running it and keeps its seed in a file only that user can read
(`

const serverLongTail = ` for port 4222), where that
user's fanout commands on this machine find it: other local users cannot
connect. Listening on any other address requires credentials given here:
a token (every holder is an admin), an nkey seed, or a users file (--users)
that gives each user a role:

  worker     pulls tasks, reads their specs, publishes results and heartbeats
  submitter  creates sweeps (specs and tasks), reads results and status
  admin      all of it, and deletes

The NATS server enforces the roles (per-subject permissions). Add a user with
--add-user NAME --role ROLE --users FILE: it writes a new nkey seed to
NAME.nk (mode 0600; give it to that user, who runs with --nkey-seed NAME.nk)
and its public key to the users file; with --password-stdin it stores a
bcrypt hash of the password read from stdin instead.

With --tls-cert and --tls-key, clients and routes between servers use TLS.
Several servers form one NATS cluster with --cluster-listen and --routes;
routes authenticate with the token, or TLS, on loopback too. JetStream then
keeps every stream and bucket on --replicas servers (default 3 when --routes
names two peers or more, else 1; give every server the same), so the cluster
goes on when one of three servers dies: give clients all the servers,
--server nats://a:4222,nats://b:4222,nats://c:4222, and they move to another
when theirs fails. Users who already run NATS with JetStream can skip this
command and point --server at their own cluster. See SECURITY.md.

--metrics ADDR serves Prometheus metrics of the cluster as this server sees
it at http://ADDR/metrics, read when scraped (at most every 2 s): per watch
the newest round ticked and complete, late rounds among the last 10, up and
down in the newest complete round (from its chunks' done marks, as fanout
watch ls reads them), whether it is stopped; the live workers; each
JetStream stream's messages and bytes. Workers serve what they ran
(fanout worker --metrics).

--monitor ADDR turns on NATS's own monitoring endpoint (/varz, /connz,
/jsz, ...; PORT alone or an empty host: 127.0.0.1). NATS serves it
read-only, over plain HTTP and WITHOUT authentication: anyone who reaches
it sees the server's connections (client names and addresses), subjects and
streams. Keep it on loopback, or behind a firewall or proxy of your own.`

const serverExample = `  fanout server
  fanout server --add-user rack1 --role worker --users users.json
  fanout server --add-user alice --role submitter --users users.json
  fanout server --listen 0.0.0.0:4222 --users users.json --tls-cert cert.pem --tls-key key.pem
  export FANOUT_TOKEN=$(fanout server --gen-token)
  fanout server --metrics 127.0.0.1:9108 --monitor 8222
  fanout server --listen 0.0.0.0:4222 --cluster-listen 0.0.0.0:6222 --routes nats://peer1:6222,nats://peer2:6222 --name a
  fanout worker --server nats://a:4222,nats://peer1:4222,nats://peer2:4222`

// serverNeedsAuthHelp follows the error of a server told to listen beyond
// loopback without credentials (%v the error, %s the address).
const serverNeedsAuthHelp = `%v.
Create a token and give it to the server, the workers and the submitters:
  export FANOUT_TOKEN=$(fanout server --gen-token)
  fanout server --listen %s            (reads FANOUT_TOKEN; or --token TOKEN)
or users with roles: fanout server --add-user NAME --role worker|submitter|admin --users FILE,
then fanout server --users FILE, and each user --nkey-seed NAME.nk.
Add --tls-cert FILE --tls-key FILE to encrypt the traffic`

// serverFlags holds fanout server's command line: the server's options and
// what the command does besides running it.
type serverFlags struct {
	o                        cluster.ServerOptions
	genToken                 bool
	genNkey                  string
	usersFile, addUser, role string
	seedOut                  string
	passwordStdin, verbose   bool
	metrics                  string
}

func newServerCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:     "server [flags]",
		Short:   "Run an embedded NATS JetStream server for distributed sweeps",
		Long:    serverLongHead + cluster.LocalSeedFile("", cluster.DefaultPort) + serverLongTail,
		Example: serverExample,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return f.run(cmd) },
	}
	f.register(cmd.Flags())
	return cmd
}

func (f *serverFlags) register(fl *pflag.FlagSet) {
	o := &f.o
	fl.StringVar(&o.Listen, "listen", "127.0.0.1:4222", "client address HOST:PORT (beyond loopback needs --token, --nkey-seed or --users)")
	fl.StringVar(&o.StoreDir, "store", "", "JetStream file storage directory (default "+cluster.DefaultStoreDir()+")")
	fl.StringVar(&o.Name, "name", "", "server name, unique within a cluster (default HOST-PORT)")
	fl.StringVar(&o.ClusterListen, "cluster-listen", "", "address HOST:PORT for routes from peer servers (default 127.0.0.1:6222 with --routes)")
	fl.StringSliceVar(&o.Routes, "routes", nil, "peer servers' cluster addresses: nats://HOST:PORT,...")
	fl.IntVar(&o.Replicas, "replicas", 0, fmt.Sprintf("servers of the cluster that keep a copy of each stream and bucket, 1-%d; the same on every server (default 3 when --routes names two peers or more, else 1)", cluster.MaxReplicas))
	fl.StringVar(&o.Creds.Token, "token", "", fmt.Sprintf("token clients must present, at least %d characters; every holder is an admin (prefer env FANOUT_TOKEN: ps shows flags). With --users: only routes use it", cluster.MinTokenLen))
	fl.StringVar(&o.Creds.NkeySeed, "nkey-seed", "", "nkey seed FILE whose public key clients must prove, as admins (or env FANOUT_NKEY_SEED)")
	fl.StringVar(&f.usersFile, "users", "", "users FILE (JSON): each user's name, role (worker, submitter, admin) and nkey or bcrypt password hash")
	fl.StringVar(&f.addUser, "add-user", "", "add user NAME to the --users FILE (created if missing) and exit")
	fl.StringVar(&f.role, "role", "", "with --add-user: worker, submitter or admin")
	fl.StringVar(&f.seedOut, "seed-out", "", "with --add-user: write the new user's nkey seed to FILE (default NAME.nk; mode 0600)")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "with --add-user: store a bcrypt hash of the password read from stdin instead of making an nkey")
	fl.StringVar(&o.Creds.TLSCert, "tls-cert", "", "TLS certificate FILE (enables TLS for clients and routes)")
	fl.StringVar(&o.Creds.TLSKey, "tls-key", "", "TLS key FILE")
	fl.StringVar(&o.Creds.TLSCA, "tls-ca", "", "CA FILE: require client certificates signed by it (needs --tls-cert; routes verify peers with it)")
	fl.BoolVar(&f.genToken, "gen-token", false, "print a new random token and exit")
	fl.StringVar(&f.genNkey, "gen-nkey", "", "write a new nkey seed to FILE (mode 0600) and exit")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log the NATS server's notices")
	fl.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics of the cluster (watches' rounds, workers, streams) at http://ADDR/metrics (HOST:PORT)")
	fl.StringVar(&o.Monitor, "monitor", "", "turn on NATS's monitoring endpoint on PORT or HOST:PORT (default host 127.0.0.1); read-only and unauthenticated")
}

// run does what the flags ask: one of the commands that exit at once
// (--gen-token, --gen-nkey, --add-user), or a server until a signal.
func (f *serverFlags) run(cmd *cobra.Command) error {
	if done, err := f.runOnce(cmd); done {
		return err
	}
	if err := f.resolveAuth(); err != nil {
		return err
	}
	var ms *cluster.MetricsServer
	if f.metrics != "" {
		// Listening first: an address in use is a usage error before the
		// server starts.
		var err error
		if ms, err = cluster.ListenMetrics(f.metrics); err != nil {
			return usageErrorf("--metrics: %w", err)
		}
		defer ms.Close()
	}
	stderr := cmd.ErrOrStderr()
	if f.verbose {
		f.o.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, "fanout server: "+format+"\n", a...) }
	}
	s, err := cluster.StartServer(f.o)
	if errors.Is(err, cluster.ErrNeedsAuth) {
		return usageErrorf(serverNeedsAuthHelp, err, f.o.Listen)
	}
	if errors.Is(err, cluster.ErrServerOptions) || errors.Is(err, cluster.ErrMetricsAddr) {
		return usageError(err)
	}
	if err != nil {
		return err
	}
	if ms != nil {
		sm := cluster.NewServerMetrics(s)
		defer sm.Close()
		ms.Registry.MustRegister(sm)
	}
	announceServer(stderr, f.o, s, ms)
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.o.ClusterListen != "" || len(f.o.Routes) > 0 {
		fmt.Fprintf(stderr, "fanout server: cluster: streams and buckets on %d servers (--replicas %d), set up once enough peers have joined\n", s.Replicas, s.Replicas)
		go func() {
			select {
			case <-s.SetUp():
				fmt.Fprintf(stderr, "fanout server: cluster: streams and buckets set up, %d replicas\n", s.Replicas)
			case <-ctx.Done():
			}
		}()
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "fanout server: shutting down")
	s.Shutdown()
	return nil
}

// runOnce runs --gen-token, --gen-nkey or --add-user, the commands that do
// their one thing and exit; done is false when none was given.
func (f *serverFlags) runOnce(cmd *cobra.Command) (done bool, err error) {
	switch {
	case f.genToken:
		tok, err := cluster.GenToken()
		if err != nil {
			return true, err
		}
		fmt.Fprintln(cmd.OutOrStdout(), tok)
		return true, nil
	case f.genNkey != "":
		pub, err := cluster.GenNkeySeed(f.genNkey)
		if err != nil {
			return true, usageError(err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "fanout: wrote nkey seed %s (public key %s); give every server, worker and submitter --nkey-seed %s\n", f.genNkey, pub, f.genNkey)
		return true, nil
	case f.addUser != "":
		return true, addServerUser(cmd, f.usersFile, f.addUser, f.role, f.seedOut, f.passwordStdin)
	case f.role != "" || f.seedOut != "" || f.passwordStdin:
		return true, usageErrorf("--role, --seed-out and --password-stdin go with --add-user NAME")
	}
	return false, nil
}

// resolveAuth completes the server's credentials from the environment and
// the users file.
func (f *serverFlags) resolveAuth() error {
	f.o.Creds = f.o.Creds.FromEnv()
	f.o.Creds.User, f.o.Creds.Password = "", "" // client-side only
	if f.usersFile != "" {
		users, err := cluster.ReadUsers(f.usersFile)
		if err != nil {
			return usageError(err)
		}
		if len(users) == 0 {
			return usageErrorf("users file %s: no users", f.usersFile)
		}
		f.o.Users = users
	}
	f.o.LocalCreds = true
	return nil
}

// announceServer says on stderr where the server listens, who may connect,
// and where its metrics and NATS monitoring are.
func announceServer(stderr io.Writer, o cluster.ServerOptions, s *cluster.Server, ms *cluster.MetricsServer) {
	dir := o.StoreDir
	if dir == "" {
		dir = cluster.DefaultStoreDir()
	}
	fmt.Fprintf(stderr, "fanout server: ready on %s in %.1f ms (JetStream file store %s)\n",
		s.URL, float64(s.StartUp.Microseconds())/1000, dir)
	fmt.Fprintf(stderr, "fanout server: %s\n", authSummary(o, s))
	if ms != nil {
		fmt.Fprintf(stderr, "fanout server: metrics on http://%s/metrics\n", ms.Addr())
	}
	if a := s.MonitorAddr(); a != nil {
		fmt.Fprintf(stderr, "fanout server: NATS monitoring on http://%s/ (read-only, unauthenticated)\n", a)
		if h, _, _ := net.SplitHostPort(a.String()); !cluster.IsLoopback(h) {
			fmt.Fprintf(stderr, "fanout server: warning: the NATS monitoring endpoint listens beyond loopback on %s without authentication: anyone who reaches it sees this server's connections, subjects and streams\n", a)
		}
	}
}

// serverFlagHelp describes every cluster command's --server.
const serverFlagHelp = "cluster URL nats://HOST:PORT, or the servers of one cluster comma-separated (a client moves to another when its server fails) (or env FANOUT_SERVER; default " + cluster.DefaultURL + ")"

// authSummary says once, in plain words, who may connect and as what.
func authSummary(o cluster.ServerOptions, s *cluster.Server) string {
	switch {
	case s.SeedFile != "":
		how := "found"
		if s.SeedCreated {
			how = "made"
		}
		u := "this user"
		if cu, err := user.Current(); err == nil {
			u = "user " + cu.Username
		}
		return fmt.Sprintf("clients authenticate with the nkey whose seed is in %s (%s now, mode 0600): fanout commands run by %s on this machine use it by themselves; other local users cannot connect. Give it to other clients with --nkey-seed FILE, or use --users for roles", s.SeedFile, how, u)
	case len(o.Users) > 0:
		n := map[cluster.Role]int{}
		for _, u := range o.Users {
			n[u.Role]++
		}
		msg := fmt.Sprintf("%d users with roles (%d worker, %d submitter, %d admin)", len(o.Users), n[cluster.RoleWorker], n[cluster.RoleSubmitter], n[cluster.RoleAdmin])
		if o.Creds.NkeySeed != "" {
			msg += ", and the admin nkey of " + o.Creds.NkeySeed
		}
		if o.Creds.Token != "" {
			msg += "; the token only authenticates routes between servers"
		}
		return msg
	case o.Creds.Token != "":
		return "clients present the token; every holder may do everything (submit, run, read, delete): --users gives each user a role"
	default:
		return "clients prove the nkey of " + o.Creds.NkeySeed + "; every holder may do everything: --users gives each user a role"
	}
}

// addServerUser adds a user to a users file: a new nkey (its seed written
// to a 0600 file) or, with --password-stdin, a bcrypt hash.
func addServerUser(cmd *cobra.Command, usersFile, name, roleName, seedOut string, passwordStdin bool) error {
	stderr := cmd.ErrOrStderr()
	if usersFile == "" {
		return usageErrorf("--add-user %s: which users file? give --users FILE", name)
	}
	r, err := cluster.ParseRole(roleName)
	if err != nil {
		return usageErrorf("--role: %w", err)
	}
	u := cluster.User{Name: name, Role: r}
	if passwordStdin {
		if seedOut != "" {
			return usageErrorf("--seed-out goes with an nkey user, not --password-stdin")
		}
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && line == "" {
			return usageErrorf("--password-stdin: no password on stdin")
		}
		if u.Password, err = cluster.HashPassword([]byte(strings.TrimRight(line, "\r\n"))); err != nil {
			return usageError(err)
		}
		if err := cluster.AddUser(usersFile, u); err != nil {
			return usageError(err)
		}
		fmt.Fprintf(stderr, "fanout: added %s %s to %s (bcrypt hash of the password); it connects with --cluster-user %s and the password in FANOUT_PASSWORD, over TLS beyond loopback\n", r, name, usersFile, name)
		return nil
	}
	if seedOut == "" {
		seedOut = name + ".nk"
	}
	pub, err := cluster.GenNkeySeed(seedOut)
	if err != nil {
		return usageError(err)
	}
	u.Nkey = pub
	if err := cluster.AddUser(usersFile, u); err != nil {
		os.Remove(seedOut)
		return usageError(err)
	}
	fmt.Fprintf(stderr, "fanout: added %s %s to %s; its nkey seed is in %s (mode 0600): hand it over privately, and run there with --nkey-seed %s (or FANOUT_NKEY_SEED). Restart the server to take the new user in.\n", r, name, usersFile, seedOut, seedOut)
	return nil
}
