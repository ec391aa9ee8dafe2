// Package ssh is the "ssh" job kind: it runs one command on every target
// over SSH (golang.org/x/crypto/ssh) and reports its exit status, its output
// (bounded) and the connect and total times.
//
// Authentication follows OpenSSH: the agent (SSH_AUTH_SOCK), identity files
// (-i, the config's IdentityFile, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa),
// ~/.ssh/config then /etc/ssh/ssh_config (Host patterns, Match, Include,
// HostName, User, Port, IdentityFile, ProxyJump, ConnectTimeout).
//
// Host keys are checked as OpenSSH checks them: against the user's
// known_hosts (~/.ssh/known_hosts, UserKnownHostsFile, or Config.KnownHosts
// instead), then the global ones (GlobalKnownHostsFile, default
// /etc/ssh/ssh_known_hosts and ssh_known_hosts2), which are read only.
// accept-new appends to the user's first file, the host field hashed when
// HashKnownHosts is yes for that host.
//
// Keys, the agent's signers, the config and the known_hosts files are read
// once, when the job is built, never per host.
//
// Handshakes in flight are bounded across the whole job (MaxHandshakes),
// apart from the sessions in flight (the engine's concurrency): thousands of
// simultaneous dials overflow accept backlogs and sshd's MaxStartups.
package ssh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
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
	UID      string                                                            // the local user's uid (%i)
	AuthSock string                                                            // SSH_AUTH_SOCK; "" = no agent
	Prompt   func(file string) ([]byte, error)                                 // asks a key's passphrase; nil = no terminal
	Warn     io.Writer                                                         // warnings (host-key off, skipped keys); nil = discard
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error) // nil = net.Dialer
}

// DefaultEnv is the environment of this process: home and user from the
// passwd entry (as OpenSSH takes them, not $HOME or $USER), the
// passphrase asked on /dev/tty.
func DefaultEnv() Env {
	home, u, uid := passwdEnv()
	return Env{Home: home, User: u, UID: uid, AuthSock: os.Getenv("SSH_AUTH_SOCK"), Prompt: ttyPrompt, Warn: os.Stderr}
}

// Job runs a command over SSH. Build it with New (or job.New("ssh", ...)).
type Job struct {
	cfg     Config
	env     Env
	conf    *sshconfig.Config
	keys    *keyring
	hkMu    sync.Mutex
	dbs     map[string]*hostkeys.DB // by policy and files (hostKeysFor)
	warned  map[string]bool         // policy sources warned about
	idTried map[string]bool         // per-host identity files tried (under keys.mu)
	sem     chan struct{}           // handshakes in flight
	poll    poller                  // answers running sessions' requests
	execReq []byte                  // the exec request's payload, marshalled once

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
	j := &Job{cfg: c, env: env, bastions: map[string]*bastion{}, dbs: map[string]*hostkeys.DB{}, warned: map[string]bool{}}
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
	j.execReq = ssh.Marshal(struct{ Command string }{c.Command})
	var err error
	if j.conf, err = loadSSHConfig(&j.cfg, env); err != nil {
		return nil, err
	}
	if c.HostKey == HostKeyOff {
		j.warned["--host-key off"] = true
		fmt.Fprintln(env.Warn, "fanout: WARNING: host key checking is off for every host (--host-key off): any server, or anyone in between, is accepted")
	}
	// The known_hosts files of the hosts that match no block of their own
	// are read now, so that an unreadable one is an error before the
	// sweep; a host's own files are read when the first such host comes.
	if _, err := j.resolve(sshconfig.Query{Host: "*", Port: c.Port, User: c.User}); err != nil {
		var ke *knownHostsError
		if errors.As(err, &ke) {
			j.closeHostKeys()
			return nil, ke.err
		}
	}
	if j.keys, err = loadKeyring(&j.cfg, j.conf, env); err != nil {
		j.closeHostKeys()
		return nil, err
	}
	return j, nil
}

// defaultGlobalKnownHosts is OpenSSH's GlobalKnownHostsFile (tests point
// it away).
var defaultGlobalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}

// closeHostKeys closes every known_hosts checker the job opened.
func (j *Job) closeHostKeys() {
	j.hkMu.Lock()
	defer j.hkMu.Unlock()
	for k, db := range j.dbs {
		db.Close()
		delete(j.dbs, k)
	}
}

// Kind is "ssh".
func (j *Job) Kind() string { return Kind }

// Takes implements job.Taker: user@host:port, [fe80::1%eth0]:2222; a
// target's user and port win over -l and -p, as OpenSSH's do.
func (j *Job) Takes() target.Takes { return target.Takes{Port: true, User: true} }

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
	j.closeHostKeys()
	return nil
}

// Run connects to t, runs the command and returns its Result.
func (j *Job) Run(ctx context.Context, t target.Target) job.Result {
	r := new(job.Result)
	j.RunInto(ctx, t, r)
	return *r
}

// RunInto is Run into r (engine.InPlace): the Result stays on the heap
// while the goroutine is parked for the whole command, instead of in its
// frames, which would double its stack (4 KB -> 8 KB a session).
func (j *Job) RunInto(ctx context.Context, t target.Target, r *job.Result) {
	initResult(r, t)
	if s := j.begin(ctx, t, r); s != nil {
		j.follow(ctx, s, r)
	}
	r.End = time.Now()
}

// initResult is apart so that its Result temporary is not in RunInto's frame.
//
//go:noinline
func initResult(r *job.Result, t target.Target) {
	*r = job.For(t, Kind)
	r.Start = time.Now()
}

// begin connects and starts the command on a short-lived goroutine (setup)
// and waits for it; nil means r is filled. Settings, handshake and
// authentication grow a goroutine's stack to tens of KB (key exchange,
// signatures, known_hosts), and every packet written grows it by a few KB
// more (encryption, the socket write). On a short-lived goroutine, that
// stack returns to the runtime's cache for the next handshake; this one,
// parked while the command runs, stays at 4 KB: it only reads (follow).
//
//go:noinline
func (j *Job) begin(ctx context.Context, t target.Target, r *job.Result) *session {
	s := &session{}
	done := make(chan struct{})
	go j.setup(ctx, t, r, s, done)
	<-done
	if s.ch == nil {
		return nil
	}
	return s
}

// follow reads the command's output to its end, fills r and closes the
// connection.
func (j *Job) follow(ctx context.Context, s *session, r *job.Result) {
	err := s.err
	if err == nil {
		err = s.read(s.ch)
	}
	j.finish(ctx, s, s.ch, err, r)
	s.conn.Close()
}

// setup connects and starts the command: every write a session makes
// before its output comes back (channel open, exec request, EOF). A nil
// s.ch on return means r is filled.
func (j *Job) setup(ctx context.Context, t target.Target, r *job.Result, s *session, done chan<- struct{}) {
	defer close(done)
	hs, err := j.hostSettings(t, r)
	if err != nil {
		fail(r, err)
		return
	}
	// Most targets wait here for a handshake slot: a shallow frame, so that
	// the stacks of the goroutines waiting stay small.
	if err := j.acquire(ctx); err != nil {
		fail(r, err)
		return
	}
	l, err := j.open(ctx, hs, r)
	if err != nil {
		fail(r, err)
		return
	}
	r.RTT = time.Since(r.Start)
	if s.err = j.start(ctx, l, s, r); s.ch == nil {
		l.conn.Close()
	}
}

// hostSettings resolves t's settings, and the port and address r shows.
//
//go:noinline
func (j *Job) hostSettings(t target.Target, r *job.Result) (*hostSettings, error) {
	hs, err := j.settings(t)
	if err != nil {
		return nil, err
	}
	r.Port = hs.port
	if t.Addr.IsValid() && hs.hostname == t.Name() {
		r.Addr = t.Addr.String()
	}
	return &hs, nil
}

// connectRetry spaces open's retries. They stand in for the engine's
// retries (the CLI hands --retries to the job), so they follow its rule:
// 100ms doubling, capped at 30s.
var connectRetry = backoff.Policy{Base: backoff.DefaultBase, Max: backoff.DefaultMax}

// open connects to hs, retrying connection-level failures (refused,
// timeout) up to Config.Retries times. The caller holds a handshake slot
// for the first attempt (see acquire).
func (j *Job) open(ctx context.Context, hs *hostSettings, r *job.Result) (*link, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := j.acquire(ctx); err != nil {
				return nil, err
			}
		}
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
		if !backoff.Sleep(ctx, connectRetry.Delay(attempt+1)) {
			return nil, ctxErr(ctx, "connect")
		}
	}
}
