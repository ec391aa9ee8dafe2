package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/cluster"
)

func init() { register(newServerCmd) }

func newServerCmd() *cobra.Command {
	var o cluster.ServerOptions
	var genToken bool
	var genNkey string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "server [flags]",
		Short: "Run an embedded NATS JetStream server for distributed sweeps",
		Long: `Run the NATS server (with JetStream, file storage) that fanout workers pull
tasks from and submitters send sweeps to. It listens on 127.0.0.1:4222 unless
told otherwise; listening on any other address requires credentials (a token
or an nkey seed), which workers and submitters then present too.

Several servers form one NATS cluster with --cluster-listen and --routes.
Users who already run NATS with JetStream can skip this command and point
--server at their own cluster.`,
		Example: `  fanout server
  export FANOUT_TOKEN=$(fanout server --gen-token)
  fanout server --listen 0.0.0.0:4222 --store /var/lib/fanout/nats
  fanout server --listen 0.0.0.0:4222 --cluster-listen 0.0.0.0:6222 --routes nats://peer1:6222,nats://peer2:6222 --name a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if genToken {
				tok, err := cluster.GenToken()
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, tok)
				return nil
			}
			if genNkey != "" {
				pub, err := cluster.GenNkeySeed(genNkey)
				if err != nil {
					return usageError(err)
				}
				fmt.Fprintf(stderr, "fanout: wrote nkey seed %s (public key %s); give every server, worker and submitter --nkey-seed %s\n", genNkey, pub, genNkey)
				return nil
			}
			o.Creds = o.Creds.FromEnv()
			if verbose {
				o.Logf = func(f string, a ...any) { fmt.Fprintf(stderr, "fanout server: "+f+"\n", a...) }
			}
			s, err := cluster.StartServer(o)
			if errors.Is(err, cluster.ErrNeedsAuth) {
				return usageErrorf(`%v.
Create a token and give it to the server, the workers and the submitters:
  export FANOUT_TOKEN=$(fanout server --gen-token)
  fanout server --listen %s            (reads FANOUT_TOKEN; or --token TOKEN)
or an nkey seed file: fanout server --gen-nkey FILE, then --nkey-seed FILE everywhere.
Add --tls-cert FILE --tls-key FILE to encrypt the traffic`, err, o.Listen)
			}
			if err != nil {
				return err
			}
			dir := o.StoreDir
			if dir == "" {
				dir = cluster.DefaultStoreDir()
			}
			fmt.Fprintf(stderr, "fanout server: ready on %s in %.1f ms (JetStream file store %s)\n",
				s.URL, float64(s.StartUp.Microseconds())/1000, dir)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			fmt.Fprintln(stderr, "fanout server: shutting down")
			s.Shutdown()
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Listen, "listen", "127.0.0.1:4222", "client address HOST:PORT (beyond loopback needs --token or --nkey-seed)")
	fl.StringVar(&o.StoreDir, "store", "", "JetStream file storage directory (default "+cluster.DefaultStoreDir()+")")
	fl.StringVar(&o.Name, "name", "", "server name, unique within a cluster (default HOST-PORT)")
	fl.StringVar(&o.ClusterListen, "cluster-listen", "", "address HOST:PORT for routes from peer servers (default 127.0.0.1:6222 with --routes)")
	fl.StringSliceVar(&o.Routes, "routes", nil, "peer servers' cluster addresses: nats://HOST:PORT,...")
	fl.StringVar(&o.Creds.Token, "token", "", "token clients must present (or env FANOUT_TOKEN)")
	fl.StringVar(&o.Creds.NkeySeed, "nkey-seed", "", "nkey seed FILE whose public key clients must prove (or env FANOUT_NKEY_SEED)")
	fl.StringVar(&o.Creds.TLSCert, "tls-cert", "", "TLS certificate FILE (enables TLS)")
	fl.StringVar(&o.Creds.TLSKey, "tls-key", "", "TLS key FILE")
	fl.StringVar(&o.Creds.TLSCA, "tls-ca", "", "CA FILE: require client certificates signed by it")
	fl.BoolVar(&genToken, "gen-token", false, "print a new random token and exit")
	fl.StringVar(&genNkey, "gen-nkey", "", "write a new nkey seed to FILE (mode 0600) and exit")
	fl.BoolVarP(&verbose, "verbose", "v", false, "log the NATS server's notices")
	return cmd
}
