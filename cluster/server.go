package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/fanout/fanout/internal/backoff"
)

// ServerOptions configure an embedded NATS server with JetStream.
type ServerOptions struct {
	Listen        string   // HOST:PORT for clients; default 127.0.0.1:4222
	StoreDir      string   // JetStream file storage; default DefaultStoreDir()
	Name          string   // server name, unique in a cluster; default host-port
	ClusterListen string   // HOST:PORT for routes from peers; empty: no cluster
	Routes        []string // peers' cluster addresses, nats://HOST:PORT
	// Creds say what clients present: a token or an nkey (both admin
	// credentials), and TLS. With Users, the token only authenticates
	// routes between servers and the nkey is one more admin.
	Creds Credentials
	// Users are role-separated users (see ReadUsers): each gets the NATS
	// permissions of its role.
	Users []User
	// LocalCreds: when neither Creds nor Users authenticate clients, make an
	// admin nkey and keep its seed in LocalSeedFile(port) under StateDir
	// (mode 0600), where clients of the same user on this machine find it.
	// Without it such a server accepts any local user as admin: tests and
	// embedders only; `fanout server` always sets it.
	LocalCreds bool
	StateDir   string // for LocalCreds; default DefaultStateDir()
	// Replicas is how many servers of the cluster keep a copy of each
	// stream and bucket (JetStream's Raft replicas), 1 to MaxReplicas; 0:
	// 3 when Routes name two peers or more, else 1. Every server of a
	// cluster must agree (each brings the streams to its value at start).
	Replicas int
	Logf     func(format string, args ...any) // server log lines; nil: silent
	Monitor  string                           // NATS's monitoring endpoint, PORT or HOST:PORT (metrics.go); "": off
}

// ErrNeedsAuth is returned when a server would listen beyond loopback
// without credentials.
var ErrNeedsAuth = errors.New("listening beyond loopback requires credentials")

// ErrServerOptions marks options StartServer refuses before it listens.
var ErrServerOptions = errors.New("bad server options")

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrServerOptions, fmt.Sprintf(format, args...))
}

// DefaultStateDir is where fanout keeps its server-side state: the default
// JetStream store and the local credentials.
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "fanout")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "fanout")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("fanout-%d", os.Getuid()))
}

// DefaultStoreDir is where JetStream keeps its files unless told otherwise.
func DefaultStoreDir() string { return filepath.Join(DefaultStateDir(), "nats") }

// LocalSeedFile is where a server on loopback port keeps the seed of the
// credentials it made itself (LocalCreds), and where clients of the same
// user dialing that port look for it.
func LocalSeedFile(stateDir string, port int) string {
	if stateDir == "" {
		stateDir = DefaultStateDir()
	}
	return filepath.Join(stateDir, fmt.Sprintf("server-%d.nk", port))
}

// Server is a running embedded NATS server.
type Server struct {
	ns      *server.Server
	URL     string        // what clients dial
	StartUp time.Duration // from New to ready for connections
	// SeedFile is the seed of the credentials the server made (LocalCreds);
	// SeedCreated says it was written now rather than found.
	SeedFile    string
	SeedCreated bool

	// Replicas is how many copies of each stream and bucket it keeps.
	Replicas int

	ctx       context.Context
	stop      context.CancelFunc
	bg        sync.WaitGroup
	setUpDone chan struct{}
	self      nkeys.KeyPair // the server's own admin (setUp, ServerMetrics); nil without auth
}

// StartServer starts an embedded server and returns once it accepts
// connections and (for a single server) holds the cluster's buckets and
// streams; a server with routes creates them (with o.Replicas copies) as
// soon as its cluster has a JetStream leader: SetUp tells when.
func StartServer(o ServerOptions) (*Server, error) {
	t0 := time.Now()
	p, err := planServer(o)
	if err != nil {
		return nil, err
	}
	opts, self, err := p.natsOptions()
	if err != nil {
		return nil, err
	}
	s, err := startNATS(o, opts, p.local)
	if err != nil {
		return nil, err
	}
	if err := s.startSetUp(o, self, p.replicas, p.clustered); err != nil {
		return nil, err
	}
	s.StartUp = time.Since(t0)
	return s, nil
}

// serverPlan is what StartServer checked and decided before it listens.
type serverPlan struct {
	o          ServerOptions
	host, name string
	port       int
	clientAuth bool // clients must authenticate
	clustered  bool
	tlsOn      bool
	local      *localSeed
	replicas   int
	dir        string
}

// planServer checks the options, refusing what would listen unprotected or
// be silently ignored, and settles the defaults.
func planServer(o ServerOptions) (*serverPlan, error) {
	host, port, err := splitListen(o.Listen, DefaultPort)
	if err != nil {
		return nil, err
	}
	if err := o.Creds.checkToken(); err != nil {
		return nil, optErr("%v", err)
	}
	if err := checkServerTLS(o.Creds); err != nil {
		return nil, err
	}
	if err := checkUsers(o.Users); err != nil {
		return nil, optErr("users: %v", err)
	}
	p := &serverPlan{o: o, host: host, port: port, tlsOn: o.Creds.TLSCert != ""}
	p.clientAuth = o.Creds.Authenticated() || len(o.Users) > 0
	if !IsLoopback(host) && !p.clientAuth {
		return nil, fmt.Errorf("%s: %w", net.JoinHostPort(host, strconv.Itoa(port)), ErrNeedsAuth)
	}
	if o.Creds.NkeySeed != "" && o.Creds.Token != "" && len(o.Users) == 0 {
		return nil, optErr("give a token or an nkey seed, not both")
	}
	p.clustered = o.ClusterListen != "" || len(o.Routes) > 0
	if p.replicas, err = replicasFor(o, p.clustered); err != nil {
		return nil, err
	}
	if o.LocalCreds && !p.clientAuth {
		if p.local, err = prepareLocalSeed(o.StateDir, port); err != nil {
			return nil, err
		}
		p.clientAuth = true
	}
	if p.clustered && p.clientAuth && o.Creds.Token == "" && !p.tlsOn {
		// A route is a peer server that sees every message: once clients
		// must authenticate, so must routes, on loopback too.
		return nil, optErr("routes between servers need a shared token (--token) or TLS (--tls-cert, --tls-key)")
	}
	p.dir = o.StoreDir
	if p.dir == "" {
		p.dir = DefaultStoreDir()
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, fmt.Errorf("store %q: %w", p.dir, err)
	}
	p.name = o.Name
	if p.name == "" {
		h, _ := os.Hostname()
		p.name = keySafe(fmt.Sprintf("%s-%d", h, port))
	}
	return p, nil
}

// MaxReplicas is the most copies JetStream keeps of a stream.
const MaxReplicas = 5

// replicasFor is how many copies of each stream and bucket the cluster
// keeps: o.Replicas, or by default 3 when the routes name two peers or more
// besides this server (a cluster of three or more, which outlives one of
// them), else 1.
func replicasFor(o ServerOptions, clustered bool) (int, error) {
	switch {
	case o.Replicas < 0 || o.Replicas > MaxReplicas:
		return 0, optErr("replicas %d: want 1 to %d (0: derived from the routes)", o.Replicas, MaxReplicas)
	case o.Replicas > 1 && !clustered:
		return 0, optErr("replicas %d without a cluster: a single server keeps one copy (give --routes to its peers)", o.Replicas)
	case o.Replicas > 0:
		return o.Replicas, nil
	}
	routes, err := parseRoutes(o.Routes)
	if err != nil {
		return 0, err
	}
	self := ""
	if o.ClusterListen != "" {
		if h, p, err := splitListen(o.ClusterListen, 6222); err == nil {
			self = net.JoinHostPort(h, strconv.Itoa(p))
		}
	}
	peers := map[string]bool{}
	for _, r := range routes {
		if r.Host != self { // a routes list shared by all servers names this one too
			peers[r.Host] = true
		}
	}
	if len(peers) >= 2 {
		return 3, nil
	}
	return 1, nil
}

// natsOptions are the NATS server's options: listeners, users and their
// permissions, TLS, routes. self is the admin the server sets itself up as
// (nil when clients need no credentials).
func (p *serverPlan) natsOptions() (*server.Options, nkeys.KeyPair, error) {
	port := p.port
	if port == 0 {
		port = server.RANDOM_PORT // NATS reads 0 as its default, 4222
	}
	opts := &server.Options{
		ServerName: p.name,
		// An embedded server listens on 0.0.0.0 unless Host is set.
		Host:      p.host,
		Port:      port,
		JetStream: true,
		StoreDir:  p.dir,
		NoSigs:    true,
		NoLog:     p.o.Logf == nil,
	}
	self, err := p.authOptions(opts)
	if err != nil {
		return nil, nil, err
	}
	if p.tlsOn {
		c := p.o.Creds
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: c.TLSCA != "",
		})
		if err != nil {
			return nil, nil, fmt.Errorf("tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	if p.clustered {
		if err := p.clusterOptions(opts); err != nil {
			return nil, nil, err
		}
	}
	if err := monitorOptions(opts, p.o.Monitor); err != nil {
		return nil, nil, err
	}
	return opts, self, nil
}

// authOptions sets who may connect: the token, nkeys, users with their
// roles' permissions, and the server's own in-process admin.
func (p *serverPlan) authOptions(opts *server.Options) (nkeys.KeyPair, error) {
	o := p.o
	if o.Creds.Token != "" && len(o.Users) == 0 {
		opts.Authorization = o.Creds.Token
	}
	if o.Creds.NkeySeed != "" {
		pub, err := nkeyPublic(o.Creds.NkeySeed)
		if err != nil {
			return nil, err
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub})
	}
	if p.local != nil {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: p.local.pub})
	}
	for _, u := range o.Users {
		perms := rolePermissions(u.Role)
		if u.Nkey != "" {
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Permissions: perms})
		} else {
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
		}
	}
	if !p.clientAuth {
		return nil, nil
	}
	// The server sets up the buckets and streams itself, as an admin only
	// this process can be: an nkey whose seed never leaves memory, allowed
	// on in-process connections only.
	self, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := self.PublicKey()
	opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub, AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}}})
	return self, nil
}

// clusterOptions sets the route listener (where told, loopback by default)
// and the routes to peers, authenticated with the token or TLS.
func (p *serverPlan) clusterOptions(opts *server.Options) error {
	o := p.o
	ch, cp, err := splitListen(o.ClusterListen, 6222)
	if err != nil {
		return err
	}
	if !IsLoopback(ch) && o.Creds.Token == "" && !p.tlsOn {
		return fmt.Errorf("cluster %s: %w (routes authenticate with --token, or TLS)", net.JoinHostPort(ch, strconv.Itoa(cp)), ErrNeedsAuth)
	}
	routes, err := parseRoutes(o.Routes)
	if err != nil {
		return err
	}
	opts.Cluster = server.ClusterOpts{Name: "fanout", Host: ch, Port: cp}
	if o.Creds.Token != "" {
		opts.Cluster.Username, opts.Cluster.Password = "fanout", o.Creds.Token
		for _, r := range routes {
			if r.User == nil {
				r.User = url.UserPassword("fanout", o.Creds.Token)
			}
		}
	}
	if p.tlsOn {
		// Routes carry every message and the route token: with client
		// TLS on they are encrypted too, each server proving itself with
		// the same certificate to its peers.
		if opts.Cluster.TLSConfig, err = routeTLS(o.Creds); err != nil {
			return err
		}
		opts.Cluster.TLSTimeout = 2
	}
	opts.Routes = routes
	return nil
}

// startNATS starts the NATS server of opts and waits until it accepts
// connections; a seed the server made is saved once its port is known.
func startNATS(o ServerOptions, opts *server.Options, local *localSeed) (*Server, error) {
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if o.Logf != nil {
		ns.SetLogger(logger(o.Logf), false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server on %s: not ready after 10s", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{ns: ns, URL: ns.ClientURL(), stop: stop, ctx: ctx, setUpDone: make(chan struct{})}
	if local != nil {
		actual := ns.Addr().(*net.TCPAddr).Port
		if err := local.save(o.StateDir, actual); err != nil {
			s.Shutdown()
			return nil, err
		}
		s.SeedFile, s.SeedCreated = local.path, local.created
	}
	return s, nil
}

// startSetUp creates the buckets and streams: at once on a single server;
// on a cluster in the background, until done, since it needs a JetStream
// meta leader and enough peers for the replicas, which may start later.
func (s *Server) startSetUp(o ServerOptions, self nkeys.KeyPair, replicas int, clustered bool) error {
	s.Replicas, s.self = replicas, self
	if !clustered {
		sctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		err := s.setUp(sctx, self, replicas)
		cancel()
		if err != nil {
			s.Shutdown()
			return fmt.Errorf("nats server on %s: setting up fanout's buckets and streams: %w", s.URL, err)
		}
		close(s.setUpDone)
		return nil
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		say := func(string, ...any) {}
		if o.Logf != nil {
			say = QuietRepeats(o.Logf, logEvery)
		}
		for fails := 1; s.ctx.Err() == nil; fails++ {
			err := s.setUp(s.ctx, self, replicas)
			if err == nil {
				close(s.setUpDone)
				return
			}
			if s.ctx.Err() == nil {
				// Another server's set-up racing ours, or too few peers
				// up yet for the replicas: try again.
				say("error: setting up fanout's buckets and streams (R%d): %v; retrying", replicas, err)
				backoff.Sleep(s.ctx, reconnectRetry.Delay(fails))
			}
		}
	}()
	return nil
}

// SetUp is closed once the server has set up (or brought up to date) the
// buckets and streams.
func (s *Server) SetUp() <-chan struct{} { return s.setUpDone }

// setUp creates (or brings up to date) the buckets and streams, over an
// in-process connection as the server's own admin.
func (s *Server) setUp(ctx context.Context, self nkeys.KeyPair, replicas int) error {
	opts := []nats.Option{nats.InProcessServer(s.ns), nats.Name("fanout server"), nats.MaxReconnects(-1)}
	if self != nil {
		pub, _ := self.PublicKey()
		opts = append(opts, nats.Nkey(pub, self.Sign))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = ensureMode(ctx, nc, true, replicas)
	return err
}

// checkServerTLS refuses TLS options that would be silently ignored.
func checkServerTLS(c Credentials) error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return optErr("TLS certificate %s without its key (--tls-key)", c.TLSCert)
	case c.TLSKey != "" && c.TLSCert == "":
		return optErr("TLS key %s without its certificate (--tls-cert)", c.TLSKey)
	case c.TLSCA != "" && c.TLSCert == "":
		return optErr("TLS CA %s: a server checks client certificates against it only with TLS on, which needs its own --tls-cert and --tls-key", c.TLSCA)
	}
	return nil
}

// routeTLS is the routes' TLS: the server's certificate both ways, peers
// verified against the CA (or, without one, the certificate file itself,
// for servers that share one certificate). The certificate must then be
// valid for client authentication too (extended key usage clientAuth, or
// none) and name the peers' route hosts.
func routeTLS(c Credentials) (*tls.Config, error) {
	ca := c.TLSCA
	if ca == "" {
		ca = c.TLSCert
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: ca, Verify: true})
	if err != nil {
		return nil, fmt.Errorf("route tls: %w", err)
	}
	tc.RootCAs = tc.ClientCAs // used as a client when dialing a peer
	// Present the certificate even when the peer asks for another issuer
	// (it lists the certificate itself when there is no CA file).
	cert := tc.Certificates[0]
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return tc, nil
}

// localSeed is the nkey a server on loopback made for itself.
type localSeed struct {
	kp      nkeys.KeyPair
	pub     string
	path    string
	created bool
}

// prepareLocalSeed reads the seed a previous run on port left (so clients
// and workers that hold it go on working across restarts) or makes one.
func prepareLocalSeed(stateDir string, port int) (*localSeed, error) {
	if port != 0 {
		p := LocalSeedFile(stateDir, port)
		if _, err := os.Lstat(p); err == nil {
			if err := checkPrivate(p); err != nil {
				return nil, err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("nkey seed %q: %w", p, err)
			}
			kp, err := nkeys.ParseDecoratedNKey(b)
			if err != nil {
				return nil, fmt.Errorf("nkey seed %q: %w (remove it and a new one is made)", p, err)
			}
			pub, err := kp.PublicKey()
			if err != nil || !nkeys.IsValidPublicUserKey(pub) {
				return nil, fmt.Errorf("nkey seed %q: not a user seed (remove it and a new one is made)", p)
			}
			return &localSeed{kp: kp, pub: pub, path: p}, nil
		}
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	return &localSeed{kp: kp, pub: pub, created: true}, nil
}

// save writes a new seed to its file once the port is known.
func (l *localSeed) save(stateDir string, port int) error {
	if !l.created {
		return nil
	}
	l.path = LocalSeedFile(stateDir, port)
	dir := filepath.Dir(l.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory %q: %w", dir, err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return err
	}
	seed, err := l.kp.Seed()
	if err != nil {
		return err
	}
	if err := writePrivate(l.path, append(seed, '\n')); err != nil {
		return fmt.Errorf("nkey seed %q: %w", l.path, err)
	}
	return nil
}

// checkPrivate refuses a credential file others could read or replace: it
// must be a regular file of ours, mode 0600 or stricter, in a directory only
// we can write.
func checkPrivate(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("credential file %s: not a regular file", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("credential file %s: owned by uid %d, not by this user (uid %d)", path, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("credential file %s: mode %#o lets other users read it: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return checkPrivateDir(filepath.Dir(path))
}

func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("directory %s: owned by uid %d, not by this user (uid %d)", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s: mode %#o lets other users replace its files: chmod go-w %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// Addr is the address the server listens on for clients.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// Shutdown stops the server and waits until it has.
func (s *Server) Shutdown() {
	s.stop()
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.bg.Wait()
}

// GenNkeySeed writes a fresh nkey user seed to path (mode 0600) and returns
// its public key.
func GenNkeySeed(path string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("nkey seed %q: %w", path, err)
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return "", fmt.Errorf("nkey seed %q: %w", path, err)
	}
	return pub, f.Close()
}

func nkeyPublic(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("nkey seed %q: %w", path, err)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", fmt.Errorf("nkey seed %q: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("nkey seed %q: %w", path, err)
	}
	return pub, nil
}

// logger adapts a printf to the server's Logger.
type logger func(string, ...any)

func (l logger) Noticef(f string, a ...any) { l(f, a...) }
func (l logger) Warnf(f string, a ...any)   { l("warning: "+f, a...) }
func (l logger) Fatalf(f string, a ...any)  { l("fatal: "+f, a...) }
func (l logger) Errorf(f string, a ...any)  { l("error: "+f, a...) }
func (l logger) Debugf(string, ...any)      {}
func (l logger) Tracef(string, ...any)      {}
