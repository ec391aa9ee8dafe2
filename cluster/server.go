package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// ServerOptions configure an embedded NATS server with JetStream.
type ServerOptions struct {
	Listen        string   // HOST:PORT for clients; default 127.0.0.1:4222
	StoreDir      string   // JetStream file storage; default DefaultStoreDir()
	Name          string   // server name, unique in a cluster; default host-port
	ClusterListen string   // HOST:PORT for routes from peers; empty: no cluster
	Routes        []string // peers' cluster addresses, nats://HOST:PORT
	Creds         Credentials
	Logf          func(format string, args ...any) // server log lines; nil: silent
}

// ErrNeedsAuth is returned when a server would listen beyond loopback
// without credentials.
var ErrNeedsAuth = errors.New("listening beyond loopback requires credentials")

// DefaultStoreDir is where JetStream keeps its files unless told otherwise.
func DefaultStoreDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "fanout", "nats")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "fanout", "nats")
	}
	return filepath.Join(os.TempDir(), "fanout-nats")
}

// Server is a running embedded NATS server.
type Server struct {
	ns      *server.Server
	URL     string        // what clients dial
	StartUp time.Duration // from New to ready for connections
}

// StartServer starts an embedded server and returns once it accepts
// connections.
func StartServer(o ServerOptions) (*Server, error) {
	t0 := time.Now()
	host, port, err := splitListen(o.Listen, DefaultPort)
	if err != nil {
		return nil, err
	}
	if !IsLoopback(host) && !o.Creds.Authenticated() {
		return nil, fmt.Errorf("%s: %w", net.JoinHostPort(host, strconv.Itoa(port)), ErrNeedsAuth)
	}
	dir := o.StoreDir
	if dir == "" {
		dir = DefaultStoreDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store %q: %w", dir, err)
	}
	name := o.Name
	if name == "" {
		h, _ := os.Hostname()
		name = keySafe(fmt.Sprintf("%s-%d", h, port))
	}
	if port == 0 {
		port = server.RANDOM_PORT // NATS reads 0 as its default, 4222
	}
	opts := &server.Options{
		ServerName: name,
		// An embedded server listens on 0.0.0.0 unless Host is set.
		Host:      host,
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoSigs:    true,
		NoLog:     o.Logf == nil,
	}
	if o.Creds.Token != "" {
		opts.Authorization = o.Creds.Token
	}
	if o.Creds.NkeySeed != "" {
		pub, err := nkeyPublic(o.Creds.NkeySeed)
		if err != nil {
			return nil, err
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		if o.Creds.Token != "" {
			return nil, errors.New("give a token or an nkey seed, not both")
		}
	}
	if o.Creds.TLSCert != "" || o.Creds.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: o.Creds.TLSCert, KeyFile: o.Creds.TLSKey, CaFile: o.Creds.TLSCA,
			Verify: o.Creds.TLSCA != "",
		})
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	if o.ClusterListen != "" || len(o.Routes) > 0 {
		ch, cp, err := splitListen(o.ClusterListen, 6222)
		if err != nil {
			return nil, err
		}
		if !IsLoopback(ch) && o.Creds.Token == "" {
			return nil, fmt.Errorf("cluster %s: %w (routes authenticate with --token)", net.JoinHostPort(ch, strconv.Itoa(cp)), ErrNeedsAuth)
		}
		routes, err := parseRoutes(o.Routes)
		if err != nil {
			return nil, err
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
		opts.Routes = routes
	}
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
		return nil, fmt.Errorf("nats server on %s: not ready after 10s", net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return &Server{ns: ns, URL: ns.ClientURL(), StartUp: time.Since(t0)}, nil
}

// Addr is the address the server listens on for clients.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// Shutdown stops the server and waits until it has.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
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
