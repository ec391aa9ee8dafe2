package ssh

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Kept connections against the real OpenSSH sshd: a TCP proxy in front of
// it counts the connections sshd is asked to accept. After round 1, rounds
// open none (one session per host on the kept connection); when the
// connections are dropped, the next round redials each host once and every
// host's result is there; Close leaves none open.
func TestOpenSSHKeptConnections(t *testing.T) {
	t.Parallel()
	const hosts, rounds = 8, 4
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	up := fmt.Sprintf("127.0.0.1:%d", d.port)
	proxy := lab.StartProxyT(t, func(netip.Addr) string { return up })
	known := fmt.Sprintf("[*]:%d %s", proxy.Port, ssh.MarshalAuthorizedKey(d.hostKey))
	if err := os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(known), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := New(Config{Command: "echo hello world", KeepConnections: true, ConnectTimeout: testwait.Hang}, rootEnv(home))
	if err != nil {
		t.Fatal(err)
	}
	targets := make([]target.Target, hosts)
	for i := range targets {
		targets[i] = target.Target{Index: uint64(i), Addr: host(i), Port: uint16(proxy.Port)}
	}
	round := func(n int) {
		t.Helper()
		for i, r := range run(t, j, targets, hosts) {
			if r.Status != job.Up || string(r.Stdout) != "hello world\n" {
				t.Fatalf("round %d, %s: %s/%s %q stdout %q, want up", n, targets[i].Addr, r.Status, r.Class, r.Error, r.Stdout)
			}
		}
	}
	for n := 1; n <= rounds; n++ {
		round(n)
		if a := proxy.Accepted.Load(); a != hosts {
			t.Fatalf("after round %d: sshd was asked %d connections, want %d (round 1's)", n, a, hosts)
		}
	}
	proxy.Drop() // sshd's connections dropped, as a restart or a timeout would
	round(rounds + 1)
	if a := proxy.Accepted.Load(); a != 2*hosts {
		t.Fatalf("after the drop: %d connections in all, want %d (one redial per host)", a, 2*hosts)
	}
	round(rounds + 2)
	if a := proxy.Accepted.Load(); a != 2*hosts {
		t.Fatalf("a round after the redials: %d connections in all, want still %d", a, 2*hosts)
	}
	j.Close()
	testwait.For(t, "Close to close every kept connection", func() bool {
		return proxy.Open() == 0
	})
}

// An idle kept connection answers the server's own keepalives: sshd with
// ClientAliveInterval 1 and ClientAliveCountMax 1 drops a client that
// leaves its probes unanswered, as a connection nobody reads between
// rounds would (x/crypto queues them unanswered): sshd 9.2 sent two in
// 5 s here.
func TestOpenSSHKeptConnectionAnswersClientAlive(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub}, "ClientAliveInterval 1", "ClientAliveCountMax 1")
	up := fmt.Sprintf("127.0.0.1:%d", d.port)
	proxy := lab.StartProxyT(t, func(netip.Addr) string { return up })
	known := fmt.Sprintf("[*]:%d %s", proxy.Port, ssh.MarshalAuthorizedKey(d.hostKey))
	if err := os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(known), 0o600); err != nil {
		t.Fatal(err)
	}
	j := newJob(t, Config{Command: "echo hello world", KeepConnections: true, ConnectTimeout: testwait.Hang}, rootEnv(home))
	j.pool.tick = 100 * time.Millisecond
	tg := []target.Target{{Addr: host(1), Port: uint16(proxy.Port)}}
	for round := 1; round <= 2; round++ {
		if r := run(t, j, tg, 1)[0]; r.Status != job.Up {
			t.Fatalf("round %d: %s/%s %q", round, r.Status, r.Class, r.Error)
		}
		if round == 1 {
			time.Sleep(6 * time.Second) // not an order of events: time for sshd's probes
		}
	}
	if a := proxy.Accepted.Load(); a != 1 {
		t.Fatalf("%d connections over two rounds 6 s apart, want 1: sshd dropped the idle one", a)
	}
}
