package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
	"github.com/fanout/fanout/target"
)

// host is 127.2.x.y for i = x*256+y: distinct loopback "hosts" that are live
// in and out of the lab namespace.
func host(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 2, byte(i >> 8), byte(i)}) }

// testHome is a HOME with a fresh ed25519 key in ~/.ssh/id_ed25519 and, when
// knownHosts is set, that text in ~/.ssh/known_hosts.
type testHome struct {
	dir string
	pub ssh.PublicKey
	key ed25519.PrivateKey
}

func newHome(t testing.TB, knownHosts string) *testHome {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, ".ssh", "id_ed25519"), priv, "")
	sp, _ := ssh.NewPublicKey(pub)
	if knownHosts != "" {
		if err := os.WriteFile(filepath.Join(dir, ".ssh", "known_hosts"), []byte(knownHosts), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &testHome{dir: dir, pub: sp, key: priv}
}

// writeKey writes priv in OpenSSH format, encrypted when pass is set.
func writeKey(t testing.TB, path string, priv ed25519.PrivateKey, pass string) {
	t.Helper()
	var blk *pem.Block
	var err error
	if pass == "" {
		blk, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(pass))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *testHome) env() Env { return Env{Home: h.dir, User: "tester"} }

func newJob(t testing.TB, c Config, env Env) *Job {
	t.Helper()
	j, err := New(c, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func at(i int, port int) target.Target {
	return target.Target{Index: uint64(i), Addr: host(i), Port: uint16(port)}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t testing.TB) int { return lab.ClosedPort(t) }

func TestConformance(t *testing.T) {
	const (
		slow    = 10
		noisy   = 11
		authBad = 12
		keyBad  = 13
		exit3   = 14
	)
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		AuthFail:     func(h netip.Addr) bool { return h == host(authBad) },
		WrongHostKey: func(h netip.Addr) bool { return h == host(keyBad) },
		Rewrite: func(h netip.Addr, cmd string) string {
			switch h {
			case host(noisy):
				return "noise 5000"
			case host(slow):
				return "sleep 3600"
			case host(exit3):
				return "exit 3"
			}
			return cmd
		},
	})
	home := newHome(t, fleet.KnownHostsLine())
	j := newJob(t, Config{Command: "hostname", MaxOutput: 1000}, home.env())
	jobtest.Run(t, jobtest.Suite{
		Job:       j,
		Up:        at(1, fleet.Port),
		Slow:      at(slow, fleet.Port),
		Noisy:     at(noisy, fleet.Port),
		MaxOutput: 1000,
		Failures: []jobtest.Expect{
			{Name: "refused", Target: target.Target{Addr: host(2), Port: uint16(closedPort(t))}, Status: job.Down, Class: job.ClassRefused},
			{Name: "auth", Target: at(authBad, fleet.Port), Status: job.Error, Class: job.ClassAuth},
			{Name: "hostkey", Target: at(keyBad, fleet.Port), Status: job.Error, Class: job.ClassHostKey},
			{Name: "exit", Target: at(exit3, fleet.Port), Status: job.Down, Class: job.ClassExit},
			{Name: "resolve", Target: target.Target{Host: "no-such-host.invalid", Port: uint16(fleet.Port)}, Status: job.Error, Class: job.ClassResolve},
		},
	})
}

// run runs j over targets with n at a time and returns the Results by
// index. Its deadline is testwait.Hang: it only catches a hang.
func run(t testing.TB, j job.Job, targets []target.Target, n int) []job.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	out := make([]job.Result, len(targets))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, tg := range targets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = j.Run(ctx, tg)
		}()
	}
	wg.Wait()
	return out
}

func TestFleetThousandsOfHosts(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	// Thousands of handshakes share two cores with -race (and whatever else
	// runs there): no host may time out for want of CPU. How fast a fleet
	// goes is bench/ssh.sh's business, not this test's.
	j := newJob(t, Config{Command: "hostname", ConnectTimeout: testwait.Hang}, home.env())
	targets := make([]target.Target, n)
	for i := range targets {
		targets[i] = at(i, fleet.Port)
	}
	begin := time.Now()
	// No deadline on the sweep either: its time grows with the machine's
	// load, and go test's -timeout is what catches a hang here.
	rs := make([]job.Result, n)
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i] = j.Run(context.Background(), tg)
		}()
	}
	wg.Wait()
	bad := 0
	for i, r := range rs {
		if r.Status != job.Up || string(r.Stdout) != host(i).String()+"\n" {
			if bad++; bad <= 5 {
				t.Errorf("host %s: %s/%s %q stdout %q", host(i), r.Status, r.Class, r.Error, r.Stdout)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d hosts failed", bad, n)
	}
	if got := fleet.Sessions.Load(); got != int64(n) {
		t.Errorf("fleet ran %d commands, want %d", got, n)
	}
	t.Logf("%d hosts in %v", n, time.Since(begin))
}

func TestFleetFaultsClassified(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		HandshakeDelay: func(h netip.Addr) time.Duration {
			if h == host(1) {
				return 2 * testwait.Hang // until the fleet closes
			}
			return 0
		},
		AuthFail:     func(h netip.Addr) bool { return h == host(2) },
		WrongHostKey: func(h netip.Addr) bool { return h == host(3) },
		Rewrite: func(h netip.Addr, cmd string) string {
			if h == host(4) {
				return "exit 42"
			}
			return cmd
		},
	})
	home := newHome(t, fleet.KnownHostsLine())
	// Only host 1's banner never comes: it alone gets the short connect
	// timeout, which must fire; the others get one that only a hang reaches.
	j := newJob(t, Config{Command: "echo ok", ConnectTimeout: testwait.Hang}, home.env())
	others := run(t, j, []target.Target{at(0, fleet.Port), at(2, fleet.Port), at(3, fleet.Port), at(4, fleet.Port)}, 4)
	short := newJob(t, Config{Command: "echo ok", ConnectTimeout: 500 * time.Millisecond}, home.env())
	rs := []job.Result{others[0], short.Run(context.Background(), at(1, fleet.Port)), others[1], others[2], others[3]}
	want := []struct {
		status job.Status
		class  job.Class
		msg    string
	}{
		{job.Up, job.ClassNone, ""},
		{job.Down, job.ClassTimeout, "banner timed out"},
		{job.Error, job.ClassAuth, "unable to authenticate"},
		{job.Error, job.ClassHostKey, "CHANGED"},
		{job.Down, job.ClassExit, "exit status 42"},
	}
	for i, w := range want {
		r := rs[i]
		if r.Status != w.status || r.Class != w.class || !strings.Contains(r.Error, w.msg) {
			t.Errorf("host %s: %s/%s %q, want %s/%s containing %q", host(i), r.Status, r.Class, r.Error, w.status, w.class, w.msg)
		}
	}
	if rs[4].ExitCode == nil || *rs[4].ExitCode != 42 {
		t.Errorf("exit code %v, want 42", rs[4].ExitCode)
	}
	if rs[0].RTT <= 0 || rs[0].RTT > rs[0].End.Sub(rs[0].Start) {
		t.Errorf("connect time %v not within the total %v", rs[0].RTT, rs[0].End.Sub(rs[0].Start))
	}
	if string(rs[0].Stdout) != "ok\n" {
		t.Errorf("stdout %q, want %q", rs[0].Stdout, "ok\n")
	}
}

func TestCommandTimeoutCutsSession(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	// The command outlasts testwait.Hang: only the cut ends it.
	j := newJob(t, Config{Command: "sleep 3600", CommandTimeout: 300 * time.Millisecond}, home.env())
	var r job.Result
	testwait.Returns(t, "Run of a command past its timeout", func() { r = j.Run(context.Background(), at(1, fleet.Port)) })
	if r.Status != job.Down || r.Class != job.ClassTimeout || !strings.Contains(r.Error, "command timed out") {
		t.Errorf("got %s/%s %q, want down/timeout", r.Status, r.Class, r.Error)
	}
	// The fleet's session ends with the connection, long before the hour.
	testwait.For(t, "the fleet's connection to close after the timeout", func() bool { return fleet.Active() == 0 })
}

// Stderr is read after stdout, unless it piles up while stdout is open:
// megabytes of stderr (more than the channel's 2 MB window) before a line
// on stdout must not stall the command.
func TestStderrBeforeStdout(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	for _, tc := range []struct {
		cmd       string
		stderr    int
		truncated bool
	}{
		{"errbytes 100", 100, false},
		{"errbytes 5000000", 64 << 10, true},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			t.Parallel()
			// A stalled command never finishes: its timeout (one that only
			// a hang reaches) makes it down/timeout, not up.
			j := newJob(t, Config{Command: tc.cmd, MaxOutput: 64 << 10, CommandTimeout: testwait.Hang}, home.env())
			r := j.Run(context.Background(), at(1, fleet.Port))
			if r.Status != job.Up || string(r.Stdout) != "done\n" || len(r.Stderr) != tc.stderr || r.Truncated != tc.truncated {
				t.Errorf("%s/%s %q: stdout %q, %d bytes of stderr, truncated %v; want up, \"done\\n\", %d, %v",
					r.Status, r.Class, r.Error, r.Stdout, len(r.Stderr), r.Truncated, tc.stderr, tc.truncated)
			}
		})
	}
}

func TestStdinSentToEveryHost(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	j := newJob(t, Config{Command: "cat", Stdin: []byte("same bytes\n")}, home.env())
	rs := run(t, j, []target.Target{at(1, fleet.Port), at(2, fleet.Port), at(3, fleet.Port)}, 3)
	for _, r := range rs {
		if r.Status != job.Up || string(r.Stdout) != "same bytes\n" {
			t.Errorf("%s: %s/%s %q stdout %q", r.Host, r.Status, r.Class, r.Error, r.Stdout)
		}
	}
}

func TestMaxHandshakesBoundsHandshakes(t *testing.T) {
	t.Parallel()
	const n, max = 24, 4
	var inHandshake, peak, arrived atomic.Int64
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		HandshakeDelay: func(netip.Addr) time.Duration {
			a := arrived.Add(1)
			k := inHandshake.Add(1)
			for {
				p := peak.Load()
				if k <= p || peak.CompareAndSwap(p, k) {
					break
				}
			}
			// Hold the banner until the bound is reached (or every host
			// has come): more than max would show; exactly max must.
			if a < n {
				testwait.Until(testwait.Hang, func() bool { return inHandshake.Load() >= max || arrived.Load() >= n })
			}
			inHandshake.Add(-1)
			return 0
		},
	})
	home := newHome(t, fleet.KnownHostsLine())
	// Banners wait on each other: no connect timeout but a hang's.
	j := newJob(t, Config{Command: "echo hi", MaxHandshakes: max, ConnectTimeout: testwait.Hang}, home.env())
	targets := make([]target.Target, n)
	for i := range targets {
		targets[i] = at(i, fleet.Port)
	}
	for _, r := range run(t, j, targets, n) {
		if r.Status != job.Up {
			t.Errorf("%s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
	if p := peak.Load(); p != max {
		t.Errorf("peak handshakes in flight %d, want %d (MaxHandshakes %d)", p, max, max)
	}
}

// flakyListener resets the first drops connections to each host before the
// banner, then forwards to the fleet: sshd shedding load under MaxStartups.
// It counts the connections it reset.
func flakyListener(t testing.TB, fleetPort, drops int) (port int, resets *atomic.Int64) {
	t.Helper()
	resets = new(atomic.Int64)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	seen := map[string]int{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			local := c.LocalAddr().(*net.TCPAddr).IP.String()
			mu.Lock()
			seen[local]++
			n := seen[local]
			mu.Unlock()
			if n <= drops {
				resets.Add(1)
				c.(*net.TCPConn).SetLinger(0) // RST, as an overloaded sshd does
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", net.JoinHostPort(local, fmt.Sprint(fleetPort)))
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, resets
}

func TestHandshakeResetIsRetried(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	port, _ := flakyListener(t, fleet.Port, 2)
	known := fmt.Sprintf("[*]:%d %s", port, ssh.MarshalAuthorizedKey(fleet.HostKey))
	home := newHome(t, known)
	j := newJob(t, Config{Command: "hostname"}, home.env())
	r := j.Run(context.Background(), at(7, port))
	if r.Status != job.Up || string(r.Stdout) != host(7).String()+"\n" {
		t.Fatalf("after two resets: %s/%s %q stdout %q, want up", r.Status, r.Class, r.Error, r.Stdout)
	}
	j2 := newJob(t, Config{Command: "hostname", HandshakeRetries: -1}, home.env())
	r = j2.Run(context.Background(), at(8, port))
	if r.Status != job.Down || r.Class != job.ClassRefused {
		t.Fatalf("without retries: %s/%s %q, want down/refused", r.Status, r.Class, r.Error)
	}
}

func TestAcceptNewAddsUnknownNeverReplacesChanged(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		WrongHostKey: func(h netip.Addr) bool { return h == host(3) },
	})
	home := newHome(t, "")
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	targets := []target.Target{at(1, fleet.Port), at(2, fleet.Port)}

	// Strict (default): unknown hosts fail, nothing is written.
	strict := newJob(t, Config{Command: "echo hi"}, home.env())
	for _, r := range run(t, strict, targets, 2) {
		if r.Class != job.ClassHostKey || !strings.Contains(r.Error, "unknown") {
			t.Errorf("strict, unknown host: %s/%s %q", r.Status, r.Class, r.Error)
		}
	}
	if _, err := os.Stat(kh); !os.IsNotExist(err) {
		t.Errorf("strict mode created %s", kh)
	}

	accept := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew}, home.env())
	for _, r := range run(t, accept, targets, 2) {
		if r.Status != job.Up {
			t.Errorf("accept-new: %s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
	data, _ := os.ReadFile(kh)
	if got := strings.Count(string(data), "\n"); got != 2 {
		t.Fatalf("known_hosts has %d lines after accept-new, want 2:\n%s", got, data)
	}
	// The keys written are accepted strictly, by a later sweep.
	strict2 := newJob(t, Config{Command: "echo hi"}, home.env())
	for _, r := range run(t, strict2, targets, 2) {
		if r.Status != job.Up {
			t.Errorf("strict after accept-new: %s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
	// A changed key stays an error with accept-new, and the file is untouched.
	line := fmt.Sprintf("[%s]:%d %s", host(3), fleet.Port, ssh.MarshalAuthorizedKey(fleet.HostKey))
	if err := os.WriteFile(kh, append(data, line...), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(kh)
	accept2 := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew}, home.env())
	r := accept2.Run(context.Background(), at(3, fleet.Port))
	if r.Class != job.ClassHostKey || !strings.Contains(r.Error, "CHANGED") || !strings.Contains(r.Error, "known_hosts:3") {
		t.Errorf("changed key with accept-new: %s/%s %q, want hostkey CHANGED naming known_hosts:3", r.Status, r.Class, r.Error)
	}
	after, _ := os.ReadFile(kh)
	if string(after) != string(before) {
		t.Errorf("accept-new rewrote known_hosts on a changed key")
	}
}

func TestHashedKnownHosts(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	addr := fmt.Sprintf("[%s]:%d", host(5), fleet.Port)
	home := newHome(t, fmt.Sprintf("%s %s", hashHost(addr), ssh.MarshalAuthorizedKey(fleet.HostKey)))
	j := newJob(t, Config{Command: "echo hi"}, home.env())
	if r := j.Run(context.Background(), at(5, fleet.Port)); r.Status != job.Up {
		t.Errorf("hashed entry: %s/%s %q, want up", r.Status, r.Class, r.Error)
	}
	if r := j.Run(context.Background(), at(6, fleet.Port)); r.Class != job.ClassHostKey {
		t.Errorf("host without entry: %s/%s %q, want hostkey", r.Status, r.Class, r.Error)
	}
}

func hashHost(h string) string { return knownhosts.HashHostname(h) }

func TestRetriesOnlyConnectionFailures(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, fleet.KnownHostsLine())
	// A port that refuses for a moment, then answers: retried until it does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	go func() {
		time.Sleep(300 * time.Millisecond)
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return
		}
		t.Cleanup(func() { l2.Close() })
		for {
			c, err := l2.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", fleet.Addr("127.0.0.1"))
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	known := fmt.Sprintf("[*]:%d %s", port, ssh.MarshalAuthorizedKey(fleet.HostKey))
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(known), 0o600)
	// The port listens after 300ms; retries back off 100ms doubling, so
	// ten of them wait a minute and more in all: the listener comes in
	// time however late its goroutine runs, and a quick one ends the wait.
	j := newJob(t, Config{Command: "echo up", Retries: 10}, home.env())
	if r := j.Run(context.Background(), target.Target{Addr: netip.MustParseAddr("127.0.0.1"), Port: uint16(port)}); r.Status != job.Up {
		t.Fatalf("refused, then listening: %s/%s %q, want up after retries", r.Status, r.Class, r.Error)
	}
	// A command that times out runs once, whatever Retries says.
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(fleet.KnownHostsLine()), 0o600)
	before := fleet.Sessions.Load()
	j2 := newJob(t, Config{Command: "sleep 5", Retries: 3, CommandTimeout: 200 * time.Millisecond}, home.env())
	if r := j2.Run(context.Background(), at(3, fleet.Port)); r.Class != job.ClassTimeout {
		t.Errorf("command timeout: %s/%s %q", r.Status, r.Class, r.Error)
	}
	if n := fleet.Sessions.Load() - before; n != 1 {
		t.Errorf("the timed-out command ran %d times, want once", n)
	}
}
