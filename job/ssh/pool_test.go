package ssh

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

func fleetKeyLine(f *lab.Fleet) []byte { return ssh.MarshalAuthorizedKey(f.HostKey) }

// rounds runs j over targets rounds times, as a watch does with the job it
// keeps, and checks that every host is up with its own hostname each round.
func rounds(t *testing.T, j *Job, targets []target.Target, n, conc int, after func(round int)) {
	t.Helper()
	for round := 1; round <= n; round++ {
		for i, r := range run(t, j, targets, conc) {
			if want := targets[i].Addr.String() + "\n"; r.Status != job.Up || string(r.Stdout) != want {
				t.Fatalf("round %d, %s: %s/%s %q stdout %q, want up %q", round, targets[i].Addr, r.Status, r.Class, r.Error, r.Stdout, want)
			}
		}
		if after != nil {
			after(round)
		}
	}
}

func fleetTargets(n, port int) []target.Target {
	ts := make([]target.Target, n)
	for i := range ts {
		ts[i] = at(i, port)
	}
	return ts
}

// Kept connections: after round 1, rounds open no new TCP connection nor
// handshake, only a session each; Close closes every kept connection.
func TestKeptConnectionsAcrossRounds(t *testing.T) {
	t.Parallel()
	const n = 20
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	j, err := New(Config{Command: "hostname", KeepConnections: true, ConnectTimeout: testwait.Hang}, home.env())
	if err != nil {
		t.Fatal(err)
	}
	rounds(t, j, fleetTargets(n, fleet.Port), 4, n, func(round int) {
		if a, h := fleet.Accepted.Load(), fleet.Handshakes.Load(); a != n || h != n {
			t.Fatalf("after round %d: %d connections and %d handshakes, want %d of each (round 1's)", round, a, h, n)
		}
		if s := fleet.Sessions.Load(); s != int64(round*n) {
			t.Fatalf("after round %d: %d sessions, want %d", round, s, round*n)
		}
	})
	if got := j.pool.idle(); got != n {
		t.Fatalf("%d connections kept, want %d", got, n)
	}
	j.Close()
	testwait.For(t, "Close to close the kept connections", func() bool { return fleet.Active() == 0 })
}

// Without KeepConnections (one-shot fanout ssh), nothing is kept: every
// Run connects, and no connection stays open after it.
func TestNoKeptConnectionsByDefault(t *testing.T) {
	t.Parallel()
	const n = 5
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	j := newJob(t, Config{Command: "hostname", ConnectTimeout: testwait.Hang}, home.env())
	rounds(t, j, fleetTargets(n, fleet.Port), 2, n, nil)
	if a := fleet.Accepted.Load(); a != 2*n {
		t.Fatalf("%d connections for 2 rounds of %d, want %d", a, n, 2*n)
	}
	testwait.For(t, "every connection to close", func() bool { return fleet.Active() == 0 })
}

// A server that drops the kept connections: the next round redials and
// every host's result is there. Twice: once the pool has seen the
// connections end (its janitor), once before it has (opening the session
// fails, and the host is dialled anew).
func TestDroppedConnectionRedialled(t *testing.T) {
	t.Parallel()
	const n = 10
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	proxy := lab.StartProxyT(t, func(local netip.Addr) string { return fleet.Addr(local.String()) })
	home := newHome(t, "[*]:"+strconv.Itoa(proxy.Port)+" "+string(fleetKeyLine(fleet)))
	for _, seen := range []bool{true, false} {
		j := newJob(t, Config{Command: "hostname", KeepConnections: true, ConnectTimeout: testwait.Hang}, home.env())
		if !seen {
			j.pool.tick = time.Hour // the janitor never looks
		} else {
			j.pool.tick = 10 * time.Millisecond
		}
		targets := fleetTargets(n, proxy.Port)
		before := proxy.Accepted.Load()
		rounds(t, j, targets, 1, n, nil)
		proxy.Drop()
		if seen {
			testwait.For(t, "the pool to see its connections end", func() bool { return j.pool.idle() == 0 })
		}
		rounds(t, j, targets, 1, n, nil) // every host up: checked there
		if a := proxy.Accepted.Load() - before; a != 2*n {
			t.Fatalf("janitor saw the drop %v: %d connections over the two rounds, want %d (one redial per host)", seen, a, 2*n)
		}
		rounds(t, j, targets, 1, n, nil)
		if a := proxy.Accepted.Load() - before; a != 2*n {
			t.Fatalf("janitor saw the drop %v: %d connections after a third round, want still %d", seen, a, 2*n)
		}
	}
}

// A kept connection whose peer went silent: the keepalive finds it (no
// answer in time: closed, out of the pool), and a session opened on one
// the keepalive has not found yet is cut by the connect timeout and the
// host redialled.
func TestSilentPeerFound(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	proxy := lab.StartProxyT(t, func(local netip.Addr) string { return fleet.Addr(local.String()) })
	home := newHome(t, "[*]:"+strconv.Itoa(proxy.Port)+" "+string(fleetKeyLine(fleet)))

	j := newJob(t, Config{Command: "hostname", KeepConnections: true, ConnectTimeout: testwait.Hang}, home.env())
	j.pool.tick, j.pool.keepalive, j.pool.wait = 10*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
	rounds(t, j, fleetTargets(3, proxy.Port), 1, 3, nil)
	proxy.Freeze()
	testwait.For(t, "keepalives to find the silent connections", func() bool { return j.pool.idle() == 0 })

	j2 := newJob(t, Config{Command: "hostname", KeepConnections: true, ConnectTimeout: 2 * time.Second}, home.env())
	j2.pool.tick = time.Hour
	tg := fleetTargets(1, proxy.Port)
	rounds(t, j2, tg, 1, 1, nil)
	before := proxy.Accepted.Load()
	proxy.Freeze()
	// The session's open gets no answer; the connect timeout cuts it, and
	// the redial's connection (not frozen) answers.
	r := j2.Run(context.Background(), tg[0])
	if r.Status != job.Up || proxy.Accepted.Load() != before+1 {
		t.Fatalf("silent kept connection: %s/%s %q after %d new connections, want up after one redial", r.Status, r.Class, r.Error, proxy.Accepted.Load()-before)
	}
}

// MaxConnections bounds the connections kept, the least recently used
// closed first; an idle one unused for IdleTimeout is closed.
func TestKeptConnectionsBounded(t *testing.T) {
	t.Parallel()
	const n, max = 12, 4
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	j := newJob(t, Config{Command: "hostname", KeepConnections: true, MaxConnections: max, ConnectTimeout: testwait.Hang}, home.env())
	targets := fleetTargets(n, fleet.Port)
	rounds(t, j, targets, 1, 1, nil) // one at a time: hosts 8-11 are the most recent
	if got := j.pool.idle(); got != max {
		t.Fatalf("%d kept, want %d", got, max)
	}
	testwait.For(t, "the fleet to see all but 4 closed", func() bool { return fleet.Active() == max })
	before := fleet.Accepted.Load()
	rounds(t, j, targets[n-max:], 1, 1, nil)
	if a := fleet.Accepted.Load() - before; a != 0 {
		t.Fatalf("the %d most recently used hosts: %d new connections, want none", max, a)
	}
	rounds(t, j, targets[:1], 1, 1, nil)
	if a := fleet.Accepted.Load() - before; a != 1 {
		t.Fatalf("a host closed for the bound: %d new connections, want 1", a)
	}

	idle := newJob(t, Config{Command: "hostname", KeepConnections: true, IdleTimeout: 50 * time.Millisecond, ConnectTimeout: testwait.Hang}, home.env())
	idle.pool.tick = 10 * time.Millisecond
	rounds(t, idle, targets[:3], 1, 3, nil)
	testwait.For(t, "idle connections to expire", func() bool { return idle.pool.idle() == 0 })
}

// A command that times out cuts its connection: it is not kept.
func TestCutConnectionNotKept(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	j := newJob(t, Config{Command: "sleep 3600", KeepConnections: true, CommandTimeout: 200 * time.Millisecond}, home.env())
	r := j.Run(context.Background(), at(1, fleet.Port))
	if r.Class != job.ClassTimeout {
		t.Fatalf("%s/%s %q, want timeout", r.Status, r.Class, r.Error)
	}
	if got := j.pool.idle(); got != 0 {
		t.Fatalf("%d kept after a cut, want 0", got)
	}
}
