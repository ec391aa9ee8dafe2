package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
)

// clientVersion is what fanout says it is in the SSH banner.
const clientVersion = "SSH-2.0-fanout"

// ciphers puts chacha20-poly1305 first, as OpenSSH does: its per-connection
// state is two keys, where AES-GCM keeps expanded keys and tables for each
// direction (about 2.5 KB a connection, held while a command runs).
var ciphers = []string{
	"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}

// acquire takes one of the job's handshake slots, which connect gives back
// with what its handshake said about the server's load (see limit.go).
func (j *Job) acquire(ctx context.Context) (uint64, error) {
	return j.slots.acquire(ctx)
}

// bannerRetry spaces connect's retries of a connection lost before the
// banner: from 50ms, quicker than connectRetry, as a server shedding load
// (MaxStartups) drops connections at once; capped at the shared 30s, which
// the default 3 retries (50, 100, 200ms) never reach.
var bannerRetry = backoff.Policy{Base: 50 * time.Millisecond, Max: backoff.DefaultMax}

// connect dials hs and completes the SSH handshake and authentication,
// holding one of the job's handshake slots, which the caller took
// (acquire: ticket seq), and gives it back with the handshake's timing.
// A connection reset or closed before the server's banner (sshd's
// MaxStartups, a full accept queue) is retried after a short, jittered
// pause. rtt is the successful attempt's time, TCP connect to
// authenticated: neither the wait for the slot nor earlier attempts.
func (j *Job) connect(ctx context.Context, hs *hostSettings, seq uint64) (l *link, rtt time.Duration, err error) {
	var last *sample
	defer func() { j.slots.release(last) }()

	cc := &ssh.ClientConfig{
		User:              hs.user,
		Auth:              j.keys.authFor(hs),
		HostKeyCallback:   hs.hostKeyCallback(),
		HostKeyAlgorithms: hs.hostKeyAlgorithms(),
		ClientVersion:     clientVersion,
	}
	cc.KeyExchanges = hs.kex
	cc.Ciphers = ciphers
	for attempt := 0; ; attempt++ {
		s := sample{seq: seq, timeout: hs.connect}
		l, err := j.handshake(ctx, hs, cc, &s)
		if s.dial > 0 {
			last = &s // it connected: its handshake tells about the server
		}
		if err == nil {
			return l, s.dial + s.took, nil
		}
		err = j.keys.explain(hs, err)
		var be *bannerError
		if !errors.As(err, &be) || attempt >= j.cfg.HandshakeRetries || ctx.Err() != nil {
			return nil, 0, err
		}
		if !backoff.Sleep(ctx, bannerRetry.Delay(attempt+1)) {
			return nil, 0, err
		}
	}
}

// link is an authenticated SSH connection, before any channel.
type link struct {
	conn  ssh.Conn
	chans <-chan ssh.NewChannel
	reqs  <-chan *ssh.Request
	raw   net.Conn
	wire  *countingConn // raw, counting the bytes read
	// pooled: lent by the job's pool (under the pool's lock).
	pooled bool
}

// bannerError is a connection lost before the server said anything: a
// server shedding load, worth another try.
type bannerError struct{ err error }

func (e *bannerError) Error() string {
	return "connection lost before the SSH banner: " + e.err.Error()
}
func (e *bannerError) Unwrap() error { return e.err }

// handshake makes one attempt: TCP connect (direct or through the bastion),
// SSH handshake, authentication, all within hs.connect. Once connected, it
// notes in s how long the connect and the rest took, and whether the server
// dropped or stalled the connection (a sign of its load).
func (j *Job) handshake(ctx context.Context, hs *hostSettings, cc *ssh.ClientConfig, s *sample) (*link, error) {
	hctx, cancel := context.WithTimeout(ctx, hs.connect)
	defer cancel()
	addr := hs.addr()
	begin := time.Now()
	conn, err := j.dial(hctx, hs, addr)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, ctxErr(ctx, "connect")
		case hctx.Err() != nil:
			return nil, &timeoutError{what: "connect", after: hs.connect}
		case errors.Is(err, syscall.ECONNRESET):
			// Reset as it was accepted: shed by a loaded server.
			s.dial, s.congests = max(time.Since(begin), time.Nanosecond), true
			return nil, &bannerError{err}
		}
		return nil, err
	}
	connected := time.Now()
	s.dial = max(connected.Sub(begin), time.Nanosecond) // non-zero: it connected
	cr := &countingConn{Conn: conn}
	deadline, _ := hctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// The context also cuts the handshake: Ctrl-C must not wait for it.
	stop := context.AfterFunc(hctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(cr, addr, cc)
	if err == nil {
		if j.afterHandshake != nil {
			j.afterHandshake(hctx)
		}
		_ = conn.SetDeadline(time.Time{})
	}
	stopped := stop()
	s.took = time.Since(connected)
	if err == nil && (!stopped || !time.Now().Before(deadline)) {
		// The handshake ended as its time ran out: the context closed the
		// connection, or the deadline cut the reads of x/crypto's reader
		// before it was lifted (it is lifted before this check, so a
		// connection that passes it was never cut). No use either way.
		c.Close()
		err = os.ErrDeadlineExceeded
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctxErr(ctx, "handshake")
		}
		if isTimeout(err) || (!stopped && hctx.Err() != nil) {
			s.congests = true
			if cr.read.Load() == 0 {
				// Said nothing in the whole connect timeout: waiting
				// another is no cure (a tarpit, a hung sshd).
				return nil, &timeoutError{what: "SSH banner", after: hs.connect}
			}
			return nil, &timeoutError{what: "handshake", after: hs.connect}
		}
		if cr.read.Load() == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			s.congests = true
			return nil, &bannerError{err}
		}
		return nil, err
	}
	return &link{conn: c, chans: chans, reqs: reqs, raw: conn, wire: cr}, nil
}

// dial opens the TCP connection, through the ProxyJump bastion if any.
func (j *Job) dial(ctx context.Context, hs *hostSettings, addr string) (net.Conn, error) {
	if len(hs.jumps) > 0 {
		spec := jumpSpec(hs.jumps)
		b, err := j.bastion(ctx, hs.jumps, hs.via)
		if err != nil {
			return nil, &jumpError{spec, err}
		}
		conn, err := b.client.DialContext(ctx, "tcp", addr)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
				j.dropBastion(spec, b)
			}
			return nil, fmt.Errorf("through %s: %w", spec, err)
		}
		return conn, nil
	}
	if j.env.Dial != nil {
		return j.env.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// jumpError is a failure to reach or log into the bastion.
type jumpError struct {
	jump string
	err  error
}

func (e *jumpError) Error() string { return "ProxyJump " + e.jump + ": " + e.err.Error() }
func (e *jumpError) Unwrap() error { return e.err }

// bastion is one SSH connection to a ProxyJump host, shared by every target
// behind it: its direct-tcpip channels multiplex on one connection, so the
// bastion does one handshake per sweep instead of one per target.
type bastion struct {
	once   sync.Once
	client *ssh.Client
	err    error
}

func (b *bastion) close() {
	if b.client != nil {
		b.client.Close()
	}
}

// maxJumpDepth bounds a ProxyJump chain, hops of hops included (a config
// may make a loop).
const maxJumpDepth = 8

// bastion is the connection to the last of hops, reached hop by hop as
// ssh -J reaches it: the last hop through the ones before it, the first
// hop as its own config says (its own ProxyJump included).
// via is the bastions being opened on the way to this one: a config that
// loops (Host * / ProxyJump b, b included) is an error, not a wait on
// itself.
func (j *Job) bastion(ctx context.Context, hops []sshconfig.Jump, via []string) (*bastion, error) {
	spec := jumpSpec(hops)
	if slices.Contains(via, spec) {
		return nil, fmt.Errorf("jump host loop via %s (%s)", spec, strings.Join(append(via, spec), " -> "))
	}
	if len(via) >= maxJumpDepth {
		return nil, fmt.Errorf("ProxyJump chain deeper than %d hops (%s)", maxJumpDepth, strings.Join(append(via, spec), " -> "))
	}
	j.bastionMu.Lock()
	b, ok := j.bastions[spec]
	if !ok {
		b = &bastion{}
		j.bastions[spec] = b
	}
	j.bastionMu.Unlock()
	b.once.Do(func() {
		last := hops[len(hops)-1]
		hs, err := j.resolve(sshconfig.Query{Host: last.Host, Port: last.Port, User: last.User})
		if err != nil {
			b.err = err
			return
		}
		if len(hops) > 1 {
			hs.jumps = hops[:len(hops)-1]
		} else if j.cfg.ProxyJump != "" {
			hs.jumps = nil // --jump's hop is reached directly, as ssh -J's first hop
		}
		hs.via = append(slices.Clone(via), spec)
		cc := &ssh.ClientConfig{
			User: hs.user, Auth: j.keys.authFor(&hs), HostKeyCallback: hs.hostKeyCallback(),
			HostKeyAlgorithms: hs.hostKeyAlgorithms(), ClientVersion: clientVersion,
		}
		cc.KeyExchanges = hs.kex
		cc.Ciphers = ciphers
		// Not under ctx: the bastion serves the whole sweep, not this target.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hs.connect)
		defer cancel()
		var l *link
		if l, b.err = j.handshake(bctx, &hs, cc, &sample{}); b.err == nil {
			b.client = ssh.NewClient(l.conn, l.chans, l.reqs)
		}
	})
	if b.err != nil {
		j.dropBastion(spec, b)
	}
	return b, b.err
}

// dropBastion forgets a failed or closed bastion so the next target redials.
func (j *Job) dropBastion(spec string, b *bastion) {
	j.bastionMu.Lock()
	if j.bastions[spec] == b {
		delete(j.bastions, spec)
	}
	j.bastionMu.Unlock()
}

// countingConn counts the bytes read, to tell a connection dropped before
// the banner (load shedding) from one dropped later, and to see a
// session's stderr pile up (session.watchStderr).
//
// It also reads ahead for small reads. x/crypto/ssh reads the server's
// version line one byte at a time, straight from the connection: against
// OpenSSH, 40 of the 63 read system calls a host made (strace -c). A read
// of fewer than smallRead bytes fills a pooled buffer
// instead, and the bytes left over go to the next reads; once they are
// gone the buffer goes back to the pool, so a held session keeps none.
type countingConn struct {
	net.Conn
	read  atomic.Int64
	ahead *[readAhead]byte // nil but while bytes read ahead are pending
	pend  []byte           // those bytes, within ahead
	// nudge, when set, is called by the reader every nudgeEvery bytes
	// (session.nudge); nextNudge is the reader's own.
	nudge     atomic.Pointer[func()]
	nextNudge int64
}

const (
	smallRead  = 16
	readAhead  = 512
	nudgeEvery = 32 << 10
)

var aheadPool = sync.Pool{New: func() any { return new([readAhead]byte) }}

func (c *countingConn) Read(p []byte) (int, error) {
	if len(c.pend) == 0 && len(p) < smallRead && len(p) > 0 {
		c.ahead = aheadPool.Get().(*[readAhead]byte)
		n, err := c.Conn.Read(c.ahead[:])
		c.read.Add(int64(n))
		c.pend = c.ahead[:n]
		if n == 0 {
			c.release()
			return 0, err
		}
		// An error with bytes is for the next read to see again.
	}
	if len(c.pend) > 0 {
		n := copy(p, c.pend)
		c.pend = c.pend[n:]
		if len(c.pend) == 0 {
			c.release()
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if r := c.read.Add(int64(n)); r >= c.nextNudge {
		if f := c.nudge.Load(); f != nil {
			c.nextNudge = r + nudgeEvery
			(*f)()
		}
	}
	return n, err
}

func (c *countingConn) release() {
	aheadPool.Put(c.ahead)
	c.ahead, c.pend = nil, nil
}

// timeoutError is a phase that did not finish in time.
type timeoutError struct {
	what  string
	after time.Duration
}

func (e *timeoutError) Error() string {
	if e.after <= 0 { // a deadline that is not ours to name: never "after 0s"
		return e.what + " timed out (the sweep's deadline passed)"
	}
	return fmt.Sprintf("%s timed out after %v", e.what, e.after.Round(time.Millisecond))
}

// ctxErr is the error of what, stopped by ctx: a timeout names the engine's
// per-attempt timeout that fired.
func ctxErr(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &timeoutError{what: what, after: job.AttemptTimeout(ctx)}
	}
	return fmt.Errorf("%s: %w", what, ctx.Err())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// fail fills r from a failure.
func fail(r *job.Result, err error) {
	r.Class = classify(err)
	r.Error = err.Error()
	switch r.Class {
	case job.ClassTimeout, job.ClassRefused, job.ClassUnreachable, job.ClassExit:
		r.Status = job.Down
	case job.ClassCanceled:
		r.Status = job.Error
	default:
		r.Status = job.Error
	}
}

// classify maps an error to the Result's class.
func classify(err error) job.Class {
	var hk *hostkeys.Error
	var ce *configError
	var ke *knownHostsError
	var te *timeoutError
	var dns *net.DNSError
	var be *bannerError
	switch {
	case errors.As(err, &hk):
		return job.ClassHostKey
	case errors.As(err, &ce), errors.As(err, &ke):
		return job.ClassLocal // the host's ssh config or known_hosts: fanout's side
	case errors.Is(err, context.Canceled):
		return job.ClassCanceled
	case errors.As(err, &dns):
		return job.ClassResolve
	case errors.As(err, &te), isTimeout(err):
		return job.ClassTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return job.ClassRefused
	case errors.As(err, &be), errors.Is(err, syscall.ECONNRESET):
		return job.ClassRefused // shed by the server: a connection-level failure, retryable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return job.ClassUnreachable
	case strings.Contains(err.Error(), "unable to authenticate"):
		return job.ClassAuth
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return job.ClassLocal
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return job.ClassUnreachable
	}
	return job.ClassProto
}
