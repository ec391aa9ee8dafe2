package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/testwait"
)

// SSHFleetOptions shape an SSH fleet. Every field is optional.
type SSHFleetOptions struct {
	// Listen is the address to listen on; default "0.0.0.0:0", so that every
	// 127.x.y.z reaches the fleet and is a distinct host. Connections to a
	// non-loopback address are closed unanswered.
	Listen string
	// AuthorizedKeys are the client keys accepted; nil accepts any key.
	AuthorizedKeys []ssh.PublicKey
	// HandshakeDelay, when set, delays the banner of connections to a host.
	HandshakeDelay func(host netip.Addr) time.Duration
	// AuthFail, when set and true for a host, rejects every key there.
	AuthFail func(host netip.Addr) bool
	// WrongHostKey, when set and true for a host, makes it present
	// Fleet.WrongKey instead of Fleet.HostKey.
	WrongHostKey func(host netip.Addr) bool
	// Rewrite, when set, replaces the command a host runs (so that one
	// command line gives each test host its own behaviour).
	Rewrite func(host netip.Addr, cmd string) string
	// HandshakeTimeout bounds a connection's handshake on the fleet's side
	// (a client that stalls is dropped); default 30s, and testwait.Hang
	// from StartSSHFleetT: thousands of handshakes at once on a loaded
	// machine take longer than 30s, and a test's fleet must not be the
	// one to give up.
	HandshakeTimeout time.Duration
}

// Fleet is an in-process SSH server that plays one host per loopback
// address it is dialled on. It answers these commands, as exec requests:
//
//	echo ARGS...   prints ARGS joined by spaces and a newline
//	hostname       prints the address it was dialled on
//	exit N         exits with status N
//	sleep S        sleeps S seconds (fractions allowed), then exits 0
//	bytes N        prints N bytes ('x', a newline every 64)
//	noise N        prints N bytes on stdout and N on stderr
//	errbytes N     prints N bytes on stderr, then "done" on stdout
//	stderr ARGS... prints ARGS to stderr
//	cat            copies stdin to stdout
//
// Anything else prints an error on stderr and exits 127.
type Fleet struct {
	Port     int
	HostKey  ssh.PublicKey // what the hosts present
	WrongKey ssh.PublicKey // what WrongHostKey hosts present

	// Counters, for tests and benches.
	Accepted   atomic.Int64
	Handshakes atomic.Int64 // completed (authenticated)
	Sessions   atomic.Int64 // commands run
	PeakActive atomic.Int64 // most connections open at once

	opts           SSHFleetOptions
	ln             net.Listener
	good, wrong    *ssh.ServerConfig
	goodNA, wrong2 *ssh.ServerConfig // auth-failing variants
	done           chan struct{}
	wg             sync.WaitGroup
	mu             sync.Mutex
	conns          map[net.Conn]struct{}
	closeOnce      sync.Once
}

// StartSSHFleet starts a fleet; Close stops it. The fleet also stops when
// ctx is done.
func StartSSHFleet(ctx context.Context, opts SSHFleetOptions) (*Fleet, error) {
	f := &Fleet{opts: opts, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	goodSigner, err := newHostSigner()
	if err != nil {
		return nil, err
	}
	wrongSigner, err := newHostSigner()
	if err != nil {
		return nil, err
	}
	f.HostKey, f.WrongKey = goodSigner.PublicKey(), wrongSigner.PublicKey()
	f.good = f.serverConfig(goodSigner, false)
	f.wrong = f.serverConfig(wrongSigner, false)
	f.goodNA = f.serverConfig(goodSigner, true)
	f.wrong2 = f.serverConfig(wrongSigner, true)
	listen := opts.Listen
	if listen == "" {
		listen = "0.0.0.0:0"
	}
	lc := net.ListenConfig{}
	f.ln, err = lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("ssh fleet: listen %s: %w", listen, err)
	}
	f.Port = f.ln.Addr().(*net.TCPAddr).Port
	f.wg.Add(1)
	go f.accept()
	go func() {
		select {
		case <-ctx.Done():
			f.Close()
		case <-f.done:
		}
	}()
	return f, nil
}

// StartSSHFleetT starts a fleet stopped at the end of t.
func StartSSHFleetT(t testing.TB, opts SSHFleetOptions) *Fleet {
	t.Helper()
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = testwait.Hang
	}
	f, err := StartSSHFleet(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func newHostSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

func (f *Fleet) serverConfig(hostKey ssh.Signer, failAuth bool) *ssh.ServerConfig {
	c := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-fanout-lab",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if failAuth {
				return nil, errors.New("lab: auth refused for this host")
			}
			if f.opts.AuthorizedKeys == nil {
				return nil, nil
			}
			for _, k := range f.opts.AuthorizedKeys {
				if string(k.Marshal()) == string(key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("lab: key not authorized")
		},
	}
	c.AddHostKey(hostKey)
	return c
}

// KnownHostsLine is a known_hosts line that trusts the fleet's honest host
// key on every address at its port.
func (f *Fleet) KnownHostsLine() string {
	return fmt.Sprintf("[*]:%d %s", f.Port, ssh.MarshalAuthorizedKey(f.HostKey))
}

// Addr is host:port of the fleet host at address host.
func (f *Fleet) Addr(host string) string { return net.JoinHostPort(host, strconv.Itoa(f.Port)) }

// Close stops the fleet: the listener and every connection.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		close(f.done)
		f.ln.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	f.wg.Wait()
	return nil
}

func (f *Fleet) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			select {
			case <-f.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		f.Accepted.Add(1)
		f.mu.Lock()
		select {
		case <-f.done:
			f.mu.Unlock()
			c.Close()
			return
		default:
		}
		f.conns[c] = struct{}{}
		if n := int64(len(f.conns)); n > f.PeakActive.Load() {
			f.PeakActive.Store(n) // under f.mu: no lost update
		}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.serve(c)
	}
}

func (f *Fleet) forget(c net.Conn) {
	c.Close()
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	f.wg.Done()
}

func (f *Fleet) serve(c net.Conn) {
	defer f.forget(c)
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	host := la.AddrPort().Addr().Unmap()
	if !host.IsLoopback() {
		return // a lab server answers loopback only
	}
	if f.opts.HandshakeDelay != nil {
		if d := f.opts.HandshakeDelay(host); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-f.done:
				t.Stop()
				return
			}
		}
	}
	wrong := f.opts.WrongHostKey != nil && f.opts.WrongHostKey(host)
	noAuth := f.opts.AuthFail != nil && f.opts.AuthFail(host)
	cfg := f.good
	switch {
	case wrong && noAuth:
		cfg = f.wrong2
	case wrong:
		cfg = f.wrong
	case noAuth:
		cfg = f.goodNA
	}
	hs := f.opts.HandshakeTimeout
	if hs <= 0 {
		hs = 30 * time.Second
	}
	_ = c.SetDeadline(time.Now().Add(hs))
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	f.Handshakes.Add(1)
	go ssh.DiscardRequests(reqs)
	connDone := make(chan struct{})
	defer close(connDone)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions here")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go f.session(ch, creqs, host, connDone)
	}
}

// session answers one session channel: the first exec request runs.
func (f *Fleet) session(ch ssh.Channel, reqs <-chan *ssh.Request, host netip.Addr, connDone <-chan struct{}) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				_ = req.Reply(req.Type == "env", nil)
			}
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		f.Sessions.Add(1)
		status := f.run(ch, payload.Command, host, connDone)
		if status >= 0 {
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		}
		go ssh.DiscardRequests(reqs)
		return
	}
}

// run executes one lab command; -1 means the session was cut.
func (f *Fleet) run(ch ssh.Channel, cmd string, host netip.Addr, connDone <-chan struct{}) int {
	if f.opts.Rewrite != nil {
		cmd = f.opts.Rewrite(host, cmd)
	}
	fields := strings.Fields(cmd)
	if len(fields) == 0 {
		fmt.Fprintln(ch.Stderr(), "lab: empty command")
		return 127
	}
	arg := func() string { return unquote(strings.Join(fields[1:], " ")) }
	switch fields[0] {
	case "echo":
		_, _ = io.WriteString(ch, arg()+"\n")
	case "hostname":
		_, _ = io.WriteString(ch, host.String()+"\n")
	case "stderr":
		_, _ = io.WriteString(ch.Stderr(), arg()+"\n")
	case "exit":
		n, err := strconv.Atoi(arg())
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "lab: exit %q: not a number\n", arg())
			return 2
		}
		return n
	case "sleep":
		s, err := strconv.ParseFloat(arg(), 64)
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "lab: sleep %q: not a number\n", arg())
			return 2
		}
		t := time.NewTimer(time.Duration(s * float64(time.Second)))
		defer t.Stop()
		select {
		case <-t.C:
		case <-connDone: // the client went away
			return -1
		case <-f.done:
			return -1
		}
	case "bytes", "noise":
		n, err := strconv.Atoi(arg())
		if err != nil || n < 0 {
			fmt.Fprintf(ch.Stderr(), "lab: %s %q: not a count\n", fields[0], arg())
			return 2
		}
		if writeN(ch, n) != nil {
			return -1
		}
		if fields[0] == "noise" && writeN(ch.Stderr(), n) != nil {
			return -1
		}
	case "errbytes":
		n, err := strconv.Atoi(arg())
		if err != nil || n < 0 {
			fmt.Fprintf(ch.Stderr(), "lab: errbytes %q: not a count\n", arg())
			return 2
		}
		if writeN(ch.Stderr(), n) != nil {
			return -1
		}
		_, _ = io.WriteString(ch, "done\n")
	case "cat":
		if _, err := io.Copy(ch, ch); err != nil {
			return -1
		}
	default:
		fmt.Fprintf(ch.Stderr(), "lab: %s: command not found\n", fields[0])
		return 127
	}
	return 0
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// writeN writes n bytes of 'x', a newline every 64.
func writeN(w io.Writer, n int) error {
	line := []byte(strings.Repeat("x", 63) + "\n")
	for n > 0 {
		k := min(n, len(line))
		if _, err := w.Write(line[len(line)-k:]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Active is the number of connections open now.
func (f *Fleet) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}
