package ssh

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// silentListener accepts connections and never says a word (a tarpit, an
// sshd hung before its banner), counting what it accepts.
func silentListener(t *testing.T) (port int, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	done := make(chan struct{})
	var held []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			accepted.Add(1)
			held = append(held, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

// A banner that never comes is cut once by the connect timeout: the host
// is down/timeout after one connection, not four (it was retried as if the
// server had dropped it, each retry waiting the whole timeout again, and
// the result said 1 attempt). --retries still retries it, and counts.
func TestBannerNeverComes(t *testing.T) {
	t.Parallel()
	port, accepted := silentListener(t)
	home := newHome(t, "")
	tg := target.Target{Addr: netip.MustParseAddr("127.0.0.1"), Port: uint16(port)}
	for _, tc := range []struct {
		retries  int
		attempts int
	}{{0, 1}, {2, 3}} {
		before := accepted.Load()
		j := newJob(t, Config{Command: "true", ConnectTimeout: 300 * time.Millisecond, Retries: tc.retries}, home.env())
		r := j.Run(context.Background(), tg)
		if r.Status != job.Down || r.Class != job.ClassTimeout || !strings.Contains(r.Error, "SSH banner timed out after 300ms") {
			t.Errorf("retries %d: %s/%s %q, want down/timeout \"SSH banner timed out after 300ms\"", tc.retries, r.Status, r.Class, r.Error)
		}
		if n := accepted.Load() - before; n != int64(tc.attempts) {
			t.Errorf("retries %d: %d connections, want %d", tc.retries, n, tc.attempts)
		}
		if r.Attempts != tc.attempts {
			t.Errorf("retries %d: attempts %d, want %d", tc.retries, r.Attempts, tc.attempts)
		}
	}
}

// A handshake that succeeds just as the connect timeout closes its
// connection is a timeout, not a proto error "use of closed network
// connection" from the session that follows on the closed connection.
// The test hook holds the successful handshake until its deadline has
// passed, which puts the close between the two.
func TestHandshakeDoneAsDeadlineCloses(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	j := newJob(t, Config{Command: "echo hi", ConnectTimeout: time.Second}, home.env())
	var held atomic.Int64
	j.afterHandshake = func(ctx context.Context) {
		held.Add(1)
		<-ctx.Done()
	}
	r := j.Run(context.Background(), at(1, fleet.Port))
	if r.Status != job.Down || r.Class != job.ClassTimeout {
		t.Fatalf("%s/%s %q, want down/timeout", r.Status, r.Class, r.Error)
	}
	if strings.Contains(r.Error, "closed network connection") {
		t.Fatalf("error %q: the connection closed by the deadline was used", r.Error)
	}
	if held.Load() != 1 {
		t.Fatalf("the hook ran %d times, want 1 (the handshake must succeed first)", held.Load())
	}
}

// Waiting for a handshake slot counts neither in the connect timeout nor
// in the RTT: a target that waits several connect timeouts for its slot
// still connects, and its RTT is its own connection's, after the wait.
func TestSlotWaitOutsideTimeoutAndRTT(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	// The handshake gets five seconds (a loaded machine needs some); the
	// wait for the slot outlasts that.
	const timeout = 5 * time.Second
	j := newJob(t, Config{Command: "echo hi", MaxHandshakes: 1, ConnectTimeout: timeout}, home.env())
	if _, err := j.acquire(context.Background()); err != nil { // the only slot
		t.Fatal(err)
	}
	done := make(chan job.Result, 1)
	go func() { done <- j.Run(context.Background(), at(1, fleet.Port)) }()
	testwait.For(t, "the target to wait for a slot", func() bool {
		j.slots.mu.Lock()
		defer j.slots.mu.Unlock()
		return len(j.slots.waiting) == 1
	})
	waitFrom := time.Now()
	time.Sleep(timeout + time.Second) // not an order of events: a wait longer than the timeout
	released := time.Now()
	j.slots.release(nil)
	r, _ := testwait.Recv(t, "the waiting target's result", done)
	if r.Status != job.Up {
		t.Fatalf("after waiting %v for its slot: %s/%s %q, want up", released.Sub(waitFrom), r.Status, r.Class, r.Error)
	}
	if r.RTT <= 0 || r.RTT > r.End.Sub(released) {
		t.Fatalf("RTT %v, want within the %v from the slot's release to the end (the wait was %v)", r.RTT, r.End.Sub(released), released.Sub(r.Start))
	}
}

// IdentitiesOnly yes with an IdentityFile that does not exist: the host
// fails with class auth, and the message names the missing file, as
// OpenSSH's "Identity file ... not accessible" does.
func TestIdentitiesOnlyMissingFileNamed(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	missing := filepath.Join(home.dir, ".ssh", "id_gone")
	cfg := filepath.Join(home.dir, "config")
	if err := os.WriteFile(cfg, []byte("Host *\n  IdentitiesOnly yes\n  IdentityFile "+missing+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j := newJob(t, Config{Command: "echo hi", SSHConfig: cfg}, home.env())
	r := j.Run(context.Background(), at(1, fleet.Port))
	if r.Class != job.ClassAuth || !strings.Contains(r.Error, "identity file "+missing+" not accessible: no such file or directory") ||
		!strings.Contains(r.Error, "IdentitiesOnly yes") {
		t.Fatalf("%s/%s %q, want auth naming %s as not accessible under IdentitiesOnly yes", r.Status, r.Class, r.Error, missing)
	}
}
