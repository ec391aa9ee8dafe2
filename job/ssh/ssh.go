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
// Handshakes in flight are bounded across the whole job, apart from the
// sessions in flight (the engine's concurrency): thousands of simultaneous
// dials overflow accept backlogs and sshd's MaxStartups. The bound adapts to
// how fast the servers answer (limit.go), up to MaxHandshakes.
package ssh

import (
	"context"
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

// Traits are ssh's: 1 to 16 targets per cluster task (sessions are slow),
// one socket per target in flight, output printed, and it logs in with the
// keys of the machine that runs it, which a cluster worker lends only when
// its operator allows it, with its own files (Confine). A target may carry
// a user and a port (user@host:port, [fe80::1%eth0]:2222), which win over
// -l and -p as OpenSSH's do.
var Traits = job.Traits{
	TaskSize: [2]uint64{1, 16}, FDsPerTarget: 1, PrintsOutput: true, LendsIdentity: true,
	Takes: target.Takes{Port: true, User: true},
}

func init() {
	job.Register(Kind, Traits, job.Decoded(Kind, func(c Config) (*Job, error) { return New(c, DefaultEnv()) }))
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
	slots   *handshakeSlots         // handshakes in flight, adaptive (limit.go)
	poll    poller                  // answers running sessions' requests
	execReq []byte                  // the exec request's payload, marshalled once

	bastionMu sync.Mutex
	bastions  map[string]*bastion

	pool *pool // kept connections (Config.KeepConnections); nil = none

	// afterHandshake, set by tests, runs as a handshake succeeds, before
	// the context's hold on the connection is released.
	afterHandshake func(ctx context.Context)
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
	j.slots = newHandshakeSlots(j.cfg.MaxHandshakes)
	if c.MaxConnections < 0 {
		return nil, fmt.Errorf("ssh: max connections %d: want 0 (no bound) or more", c.MaxConnections)
	}
	if c.KeepConnections {
		j.pool = newPool(c.MaxConnections, c.IdleTimeout)
	}
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

// Config is the job's configuration, with defaults filled in.
func (j *Job) Config() Config { return j.cfg }

// Close releases what the job holds for the sweep: the connections it
// kept (KeepConnections), the agent connection, bastion connections, the
// known_hosts file. Run must not be called after.
func (j *Job) Close() error {
	if j.pool != nil {
		j.pool.close()
	}
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
// connection, or gives it back to the pool when the session ended cleanly.
func (j *Job) follow(ctx context.Context, s *session, r *job.Result) {
	err := s.err
	if err == nil {
		err = s.read(s.ch)
	}
	j.finish(ctx, s, s.ch, err, r)
	switch {
	case j.pool == nil:
		s.conn.Close()
	case r.Class == job.ClassNone || r.Class == job.ClassExit:
		j.pool.put(s.key, s.link)
	default: // cut by a timeout or the context, or broken
		j.pool.drop(s.link)
	}
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
	if j.pool != nil {
		s.key = hs.poolKey()
		if j.reuse(ctx, hs, r, s) {
			return
		}
	}
	// Most targets wait here for a handshake slot: a shallow frame, so that
	// the stacks of the goroutines waiting stay small.
	seq, err := j.acquire(ctx)
	if err != nil {
		fail(r, err)
		return
	}
	l, err := j.open(ctx, hs, r, seq)
	if err != nil {
		fail(r, err)
		return
	}
	if s.err = j.start(ctx, l, s, r); s.ch == nil {
		l.conn.Close()
	}
}

// reuse opens the session on the connection the pool kept for s.key, if
// any, and reports whether it did (then s is started, or r filled). A kept
// connection that fails to open a session (the server dropped it, or does
// not answer within the connect timeout) is closed, and the caller dials
// anew: the command never ran, and the host's result comes from the new
// connection.
func (j *Job) reuse(ctx context.Context, hs *hostSettings, r *job.Result, s *session) bool {
	l := j.pool.get(s.key)
	if l == nil {
		return false
	}
	begin := time.Now()
	// A peer gone silent (host down, cable cut) would hold OpenChannel
	// until TCP gives up, minutes later: the connect timeout cuts it.
	// So does the context, as it cuts a handshake.
	cut := time.AfterFunc(hs.connect, func() { l.conn.Close() })
	stop := context.AfterFunc(ctx, func() { l.conn.Close() })
	ch, creqs, err := l.conn.OpenChannel("session", nil)
	if cutOff := !cut.Stop(); (!stop() || cutOff) && err == nil {
		ch.Close()
		err = os.ErrDeadlineExceeded
	}
	if err != nil {
		j.pool.drop(l)
		return false
	}
	r.RTT = time.Since(begin) // the session's open: the connection's own round trip
	r.Attempts = 1
	if ra, ok := l.raw.RemoteAddr().(*net.TCPAddr); ok {
		r.Addr = ra.IP.String()
	}
	s.err = j.exec(ctx, l, s, ch, creqs)
	return true
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
	if t.Addr.IsValid() && (hs.hostname == t.Name() || hs.hostname == t.Addr.String()) {
		r.Addr = t.Addr.String()
	}
	return &hs, nil
}

// connectRetry spaces open's retries. They stand in for the engine's
// retries (the CLI hands --retries to the job), so they follow its rule:
// 100ms doubling, capped at 30s.
var connectRetry = backoff.Policy{Base: backoff.DefaultBase, Max: backoff.DefaultMax}

// open connects to hs, retrying connection-level failures (refused,
// timeout) up to Config.Retries times, and sets r's Addr, RTT (the
// successful attempt's connect, handshake and authentication) and
// Attempts. The caller holds a handshake slot for the first attempt
// (acquire: ticket seq).
func (j *Job) open(ctx context.Context, hs *hostSettings, r *job.Result, seq uint64) (*link, error) {
	for attempt := 0; ; attempt++ {
		r.Attempts = attempt + 1
		if attempt > 0 {
			var err error
			if seq, err = j.acquire(ctx); err != nil {
				return nil, err
			}
		}
		l, rtt, err := j.connect(ctx, hs, seq)
		if err == nil {
			if ra, ok := l.raw.RemoteAddr().(*net.TCPAddr); ok {
				r.Addr = ra.IP.String()
			}
			r.RTT = rtt
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
