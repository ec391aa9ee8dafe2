// Package ssh is the "ssh" job kind: it runs one command on every target
// over SSH (golang.org/x/crypto/ssh) and reports its exit status, its output
// (bounded) and the connect and total times.
//
// Authentication follows OpenSSH: the agent (SSH_AUTH_SOCK), identity files
// (-i, the config's IdentityFile, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa),
// ~/.ssh/config (Host patterns, HostName, User, Port, IdentityFile,
// ProxyJump, ConnectTimeout). Keys, the agent's signers, the config and the
// known_hosts files are read once, when the job is built, never per host.
//
// Handshakes in flight are bounded across the whole job (MaxHandshakes),
// apart from the sessions in flight (the engine's concurrency): thousands of
// simultaneous dials overflow accept backlogs and sshd's MaxStartups.
package ssh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Kind is the registered name of the job.
const Kind = "ssh"

func init() {
	job.Register(Kind, func(options json.RawMessage) (job.Job, error) {
		var c Config
		if err := job.DecodeOptions(Kind, options, &c); err != nil {
			return nil, err
		}
		return New(c, DefaultEnv())
	})
}

// Env is what the job takes from the process that builds it, apart from its
// Config: tests give their own.
type Env struct {
	Home     string                                                            // for ~ and the default files
	User     string                                                            // the local user (default remote user)
	AuthSock string                                                            // SSH_AUTH_SOCK; "" = no agent
	Prompt   func(file string) ([]byte, error)                                 // asks a key's passphrase; nil = no terminal
	Warn     io.Writer                                                         // warnings (host-key off, skipped keys); nil = discard
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error) // nil = net.Dialer
}

// DefaultEnv is the environment of this process, with the passphrase asked
// on /dev/tty.
func DefaultEnv() Env {
	home, _ := os.UserHomeDir()
	u := os.Getenv("USER")
	if u == "" {
		u = os.Getenv("LOGNAME")
	}
	if u == "" {
		u = "root"
	}
	return Env{Home: home, User: u, AuthSock: os.Getenv("SSH_AUTH_SOCK"), Prompt: ttyPrompt, Warn: os.Stderr}
}

// Job runs a command over SSH. Build it with New (or job.New("ssh", ...)).
type Job struct {
	cfg      Config
	env      Env
	conf     *sshConfig
	keys     *keyring
	hostKeys *hostKeys
	sem      chan struct{} // handshakes in flight
	poll     poller        // answers running sessions' requests
	kex      []string

	bastionMu sync.Mutex
	bastions  map[string]*bastion
}

var _ job.Job = (*Job)(nil)

// New checks c and reads everything the sweep needs once: the ssh config,
// keys (asking passphrases through env.Prompt), the agent's keys and the
// known_hosts files. Bad input is an error naming the file and line.
func New(c Config, env Env) (*Job, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if env.Warn == nil {
		env.Warn = io.Discard
	}
	j := &Job{cfg: c, env: env, bastions: map[string]*bastion{}}
	if j.cfg.MaxHandshakes <= 0 {
		j.cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if j.cfg.MaxOutput <= 0 {
		j.cfg.MaxOutput = DefaultMaxOutput
	}
	if j.cfg.HandshakeRetries == 0 {
		j.cfg.HandshakeRetries = DefaultHandshakeRetries
	} else if j.cfg.HandshakeRetries < 0 {
		j.cfg.HandshakeRetries = 0
	}
	j.sem = make(chan struct{}, j.cfg.MaxHandshakes)
	var err error
	if j.conf, err = loadSSHConfig(&j.cfg, env); err != nil {
		return nil, err
	}
	j.kex = DefaultKex
	// These apply to the whole sweep: the Config, else -o, else the
	// config file's "Host *" value.
	if len(c.Kex) > 0 {
		j.kex = c.Kex
	} else if v := j.conf.global("KexAlgorithms"); v != "" {
		if j.kex, err = kexList(v); err != nil {
			return nil, err
		}
	}
	policy := c.HostKey
	if v := j.conf.global("StrictHostKeyChecking"); v != "" && policy == "" {
		if policy, err = policyFromOpenSSH(v); err != nil {
			return nil, fmt.Errorf("%v (%s)", err, j.conf.path)
		}
	}
	if policy == "" {
		policy = HostKeyStrict
	}
	files := c.KnownHosts
	if v := j.conf.global("UserKnownHostsFile"); v != "" && len(files) == 0 {
		files = splitList(v)
	}
	if len(files) == 0 {
		files = []string{env.Home + "/.ssh/known_hosts"}
	}
	for i := range files {
		files[i] = expandTilde(files[i], env.Home)
	}
	if j.hostKeys, err = newHostKeys(policy, files, env.Warn); err != nil {
		return nil, err
	}
	if j.keys, err = loadKeyring(&j.cfg, j.conf, env); err != nil {
		j.hostKeys.close()
		return nil, err
	}
	return j, nil
}

// Kind is "ssh".
func (j *Job) Kind() string { return Kind }

// Config is the job's configuration, with defaults filled in.
func (j *Job) Config() Config { return j.cfg }

// Close releases what the job holds for the sweep: the agent connection,
// bastion connections, the known_hosts file. Run must not be called after.
func (j *Job) Close() error {
	j.bastionMu.Lock()
	for k, b := range j.bastions {
		b.close()
		delete(j.bastions, k)
	}
	j.bastionMu.Unlock()
	j.keys.close()
	j.hostKeys.close()
	return nil
}

// Run connects to t, runs the command and returns its Result.
func (j *Job) Run(ctx context.Context, t target.Target) job.Result {
	// The Result lives on the heap, filled through a pointer: the calls
	// below stay parked for the whole command, and Result copies in their
	// frames would double this goroutine's stack (8 KB -> 16 KB a session).
	r := newResult(t)
	j.run(ctx, t, r)
	r.End = time.Now()
	return *r
}

// newResult is apart so that its Result temporary is not in Run's frame.
//
//go:noinline
func newResult(t target.Target) *job.Result {
	r := job.For(t, Kind)
	r.Start = time.Now()
	return &r
}

func (j *Job) run(ctx context.Context, t target.Target, r *job.Result) {
	// Settings, handshake and authentication grow a goroutine's stack to
	// tens of KB (key exchange, signatures, known_hosts). On a short-lived
	// goroutine, that stack returns to the runtime's cache for the next
	// handshake instead of staying with this session while its command runs.
	var l *link
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, err = j.open(ctx, t, r)
	}()
	<-done
	if err != nil {
		fail(r, err)
		return
	}
	defer l.conn.Close()
	r.RTT = time.Since(r.Start)
	j.exec(ctx, l, r)
}

// open resolves t's settings and connects, retrying connection-level
// failures (refused, timeout) up to Config.Retries times.
func (j *Job) open(ctx context.Context, t target.Target, r *job.Result) (*link, error) {
	hs := j.settings(t)
	r.Port = hs.port
	if t.Addr.IsValid() && hs.hostname == t.Name() {
		r.Addr = t.Addr.String()
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		l, err := j.connect(ctx, hs)
		if err == nil {
			if ra, ok := l.raw.RemoteAddr().(*net.TCPAddr); ok {
				r.Addr = ra.IP.String()
			}
			return l, nil
		}
		c := classify(err)
		if attempt >= j.cfg.Retries || ctx.Err() != nil || (c != job.ClassRefused && c != job.ClassTimeout) {
			return nil, err
		}
		tm := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return nil, ctxErr(ctx, "connect")
		}
		backoff *= 2
	}
}

// targetNamed is a target for a host given as text (the bastion).
func targetNamed(host string) target.Target {
	if a, err := netip.ParseAddr(host); err == nil {
		return target.Target{Addr: a}
	}
	return target.Target{Host: host}
}
