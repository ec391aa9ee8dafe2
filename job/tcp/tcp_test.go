package tcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
	"github.com/fanout/fanout/job/tcp"
	"github.com/fanout/fanout/target"
)

func TestMain(m *testing.M) { lab.Main(m) }

var lo = netip.MustParseAddr("127.0.0.1")

// listen returns the port of a listener on 127.0.0.1 that accepts and closes.
func listen(t *testing.T) uint16 { return uint16(lab.ClosingPort(t)) }

// closedPort returns a port on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) uint16 { return uint16(lab.ClosedPort(t)) }

// blackhole returns a port on 127.0.0.1 whose SYNs go unanswered: a listener
// that never accepts, its accept queue filled, drops further SYNs (as a
// firewalled host does), so connects there time out without root.
func blackhole(t *testing.T) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	// Fill the queue: connects succeed until it is full, then hang. The
	// kernel says when it is full (TCP_INFO of a listener: unacked is the
	// queue's length, sacked its bound; full is past the bound), so no
	// dial has to time out to find out, which a loaded machine could make
	// happen early.
	addr := netip.AddrPortFrom(lo, port).String()
	for i := 0; i < 8; i++ {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatal(err)
		}
		if info.Unacked > info.Sacked {
			return port
		}
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatalf("filling the blackhole's queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		// The connection is queued once the server side has its ACK.
		testwait.For(t, "the connection to reach the accept queue", func() bool {
			next, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
			return err == nil && next.Unacked > info.Unacked
		})
	}
	t.Fatalf("blackhole on port %d still accepts connections", port)
	return 0
}

// "nosuch..invalid" (an empty label) fails inside the resolver without a
// DNS query: no lookup leaves the machine.
func TestConformance(t *testing.T) {
	j, err := tcp.New(tcp.Config{Ports: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	jobtest.Run(t, jobtest.Suite{
		Job:  j,
		Up:   target.Target{Index: 3, Addr: lo, Port: listen(t)},
		Slow: target.Target{Index: 4, Addr: lo, Port: blackhole(t)},
		Failures: []jobtest.Expect{
			{Name: "refused", Target: target.Target{Index: 5, Addr: lo, Port: closedPort(t)}, Status: job.Down, Class: job.ClassRefused},
			{Name: "resolve", Target: target.Target{Index: 6, Host: "nosuch..invalid", Port: 80}, Status: job.Error, Class: job.ClassResolve},
			{Name: "refused-v6", Target: target.Target{Index: 7, Addr: netip.MustParseAddr("::1"), Port: closedPort(t)}, Status: job.Down, Class: job.ClassRefused},
		},
	})
}

func TestUpAndRTT(t *testing.T) {
	t.Parallel()
	j, _ := tcp.New(tcp.Config{Ports: []int{1}})
	p := listen(t)
	for _, tg := range []target.Target{
		{Index: 1, Addr: lo, Port: p},
		{Index: 2, Host: "localhost", Port: p},
		{Index: 3, Addr: netip.MustParseAddr("127.0.0.1")}, // no port: the job's first
	} {
		if tg.Port == 0 {
			j, _ = tcp.New(tcp.Config{Ports: []int{int(p)}})
		}
		r := j.Run(context.Background(), tg)
		// The RTT is within the attempt; how long it is says how busy the
		// machine was, not whether the job is right.
		if r.Status != job.Up || r.RTT <= 0 || r.RTT > r.End.Sub(r.Start) || r.Port != int(p) {
			t.Errorf("Run(%+v) = %s/%s rtt %v port %d (%s)", tg, r.Status, r.Class, r.RTT, r.Port, r.Error)
		}
		if tg.Host == "localhost" && r.Addr != "127.0.0.1" && r.Addr != "::1" {
			t.Errorf("localhost probed at %q", r.Addr)
		}
	}
}

// TestUnreachable dials loopback from a fresh network namespace whose lo is
// down: the kernel answers ENETUNREACH without sending anything.
func TestUnreachable(t *testing.T) {
	if ok, why := lab.Available(); !ok {
		t.Skip("needs a network namespace: " + why)
	}
	j, _ := tcp.New(tcp.Config{Ports: []int{80}})
	done := make(chan job.Result)
	go func() {
		// The thread enters the namespace and dies with the goroutine, so no
		// other goroutine ever runs in it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- job.Result{Error: "unshare: " + err.Error()}
			return
		}
		done <- j.Run(context.Background(), target.Target{Addr: lo, Port: 80})
	}()
	r := <-done
	if strings.HasPrefix(r.Error, "unshare") {
		t.Skip(r.Error)
	}
	if r.Status != job.Down || r.Class != job.ClassUnreachable {
		t.Errorf("lo down: %s/%s (%s), want down/unreachable", r.Status, r.Class, r.Error)
	}
}

// TestLab checks the classes against the lab's live and dead ranges.
func TestLab(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	open := uint16(lab.Port(lab.ClosingListener(t, "0.0.0.0:0")))
	j, _ := tcp.New(tcp.Config{Ports: []int{int(open)}})
	tests := []struct {
		addr   string
		port   uint16
		status job.Status
		class  job.Class
	}{
		{"127.0.9.9", open, job.Up, job.ClassNone},
		{"127.0.9.9", 1, job.Down, job.ClassRefused},
		{"127.1.9.9", open, job.Down, job.ClassTimeout},
	}
	for _, tt := range tests {
		// A short deadline only where it must pass: an answer may be slow
		// to be read on a loaded machine, not wrong.
		d := testwait.Hang
		if tt.class == job.ClassTimeout {
			d = 300 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		r := j.Run(ctx, target.Target{Addr: netip.MustParseAddr(tt.addr), Port: tt.port})
		cancel()
		if r.Status != tt.status || r.Class != tt.class {
			t.Errorf("%s:%d = %s/%s (%s), want %s/%s", tt.addr, tt.port, r.Status, r.Class, r.Error, tt.status, tt.class)
		}
	}
}

// TestZonedLinkLocal dials a link-local address with its zone, as the
// parser gives it (fe80::1%lo, [fe80::1%lo]): a listener on fe80::1 of the
// lab namespace's lo accepts, a closed port there refuses. The kernel
// takes fe80::1/64 on lo with nodad (no duplicate detection to wait for).
func TestZonedLinkLocal(t *testing.T) {
	lab.Require(t)
	if out, err := exec.Command("ip", "-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad").CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "File exists") {
		t.Fatalf("ip -6 addr add fe80::1/64 dev lo nodad: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp6", "[fe80::1%lo]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// The address is usable for bind at once, but its local route may come
	// a moment later (connect says "network is unreachable" until then):
	// wait for the route itself.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		out, err := exec.Command("ip", "-6", "route", "show", "table", "local", "fe80::1").CombinedOutput()
		if err == nil && strings.Contains(string(out), "fe80::1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local route to fe80::1 a minute after adding it: %v: %s", err, out)
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := ln.Addr().(*net.TCPAddr).Port
	closed := closedPort(t) // free on 127.0.0.1; nothing listens on it at fe80::1 either
	set, err := target.Parse([]string{"fe80::1%lo", "[fe80::1%lo]"}, target.ParseOptions{Job: tcp.Kind})
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 || set.At(0).Addr.Zone() != "lo" {
		t.Fatalf("parsed %d targets, first %+v: want fe80::1 with zone lo, once", set.Len(), set.At(0))
	}
	j, _ := tcp.New(tcp.Config{Ports: []int{open, int(closed)}})
	e := j.Expand(set)
	want := []struct {
		status job.Status
		class  job.Class
	}{{job.Up, job.ClassNone}, {job.Down, job.ClassRefused}}
	for i := uint64(0); i < e.Len(); i++ {
		tg := e.At(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := j.Run(ctx, tg)
		cancel()
		if r.Status != want[i].status || r.Class != want[i].class || r.Addr != "fe80::1%lo" {
			t.Errorf("%s port %d = %s/%s at %q (%s), want %s/%s at fe80::1%%lo", tg.Name(), tg.Port, r.Status, r.Class, r.Addr, r.Error, want[i].status, want[i].class)
		}
	}
}

func TestParsePorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []uint16
		wantErr string
	}{
		{"22", []uint16{22}, ""},
		{"22,80,443,8000-8003", []uint16{22, 80, 443, 8000, 8001, 8002, 8003}, ""},
		{" 80 , 22,80", []uint16{80, 22}, ""},
		{"65535", []uint16{65535}, ""},
		{"65534-65535", []uint16{65534, 65535}, ""},
		{"70000", nil, `ports "70000": port 70000 out of range 1-65535`},
		{"22,0", nil, `ports "22,0": port 0 out of range 1-65535`},
		{"10-5", nil, `ports "10-5": range 10-5 is backwards`},
		{"ssh", nil, `ports "ssh": "ssh" is not a port number`},
		{"22,,80", nil, `ports "22,,80": empty item`},
		{"", nil, `ports "": empty item`},
		{"1-2-3", nil, `"2-3" is not a port number`},
		{"-5", nil, `"" is not a port number`},
	}
	for _, tt := range tests {
		got, err := tcp.ParsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePorts(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParsePorts(%q) = %v, want %v", tt.in, got, tt.want)
				break
			}
		}
	}
	if ps, err := tcp.ParsePorts("1-65535"); err != nil || len(ps) != 65535 {
		t.Errorf("ParsePorts(1-65535): %d ports, %v", len(ps), err)
	}
}

type hosts []target.Target

func (h hosts) Len() uint64               { return uint64(len(h)) }
func (h hosts) At(i uint64) target.Target { return h[i] }

func TestExpand(t *testing.T) {
	t.Parallel()
	set := hosts{
		{Index: 0, Addr: netip.MustParseAddr("127.0.0.1")},
		{Index: 1, Host: "localhost"},
		{Index: 2, Addr: netip.MustParseAddr("::1")},
	}
	ports := []uint16{22, 80}
	e := tcp.Expand(set, ports)
	if e.Len() != 6 {
		t.Fatalf("Len = %d, want 6", e.Len())
	}
	for i := uint64(0); i < e.Len(); i++ {
		got := e.At(i)
		h := set[i/2]
		if got.Index != i || got.Port != ports[i%2] || got.Host != h.Host || got.Addr != h.Addr {
			t.Errorf("At(%d) = %+v, want host %+v port %d", i, got, h, ports[i%2])
		}
	}
	if tcp.Expand(set, nil) == nil || tcp.Expand(set, nil).Len() != 3 {
		t.Error("Expand with no ports changed the set")
	}
}

func TestNewAndRegistry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		opts, wantErr string
	}{
		{`{"ports":[22,80]}`, ""},
		{`{"ports":[]}`, ""}, // the targets carry their ports (Check)
		{`{"ports":[70000]}`, "tcp: port 70000 out of range 1-65535"},
		{`{"ports":[22],"x":1}`, "unknown field"},
	} {
		j, err := job.New("tcp", json.RawMessage(tt.opts))
		if tt.wantErr == "" {
			if err != nil || j.Kind() != "tcp" {
				t.Errorf("job.New(tcp, %s) = %v, %v", tt.opts, j, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("job.New(tcp, %s) = %v, want %q", tt.opts, err, tt.wantErr)
		}
	}
}

// TestNoTimeWait: a sweep must not leave a TIME_WAIT socket per probe.
func TestNoTimeWait(t *testing.T) {
	t.Parallel()
	p := listen(t)
	j, _ := tcp.New(tcp.Config{Ports: []int{int(p)}})
	for i := 0; i < 50; i++ {
		if r := j.Run(context.Background(), target.Target{Addr: lo, Port: p}); r.Status != job.Up {
			t.Fatalf("attempt %d: %s/%s %s", i, r.Status, r.Class, r.Error)
		}
	}
	// ss is the honest witness; count sockets in TIME_WAIT towards our port.
	out, err := runSS(p)
	if err != nil {
		t.Skip("ss unavailable: ", err)
	}
	if n := strings.Count(out, "\n"); n > 5 {
		t.Errorf("%d TIME_WAIT sockets to port %d after 50 probes:\n%s", n, p, out)
	}
}

func runSS(port uint16) (string, error) {
	f := fmt.Sprintf("( sport = :%d or dport = :%d )", port, port)
	out, err := exec.Command("ss", "-Htan", "state", "time-wait", f).Output()
	return string(out), err
}

// TestCheckWithoutPorts: without -p, tcp connects to the port each target
// carries (an inventory's ansible_port); Check refuses a set with a target
// that carries none, and Run answers such a target with an error, never a
// panic.
func TestCheckWithoutPorts(t *testing.T) {
	t.Parallel()
	p := listen(t)
	j, err := tcp.New(tcp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	with, err := target.Parse([]string{"web1 ansible_host=127.0.0.1 ansible_port=" + strconv.Itoa(int(p))}, target.ParseOptions{Takes: tcp.Traits.Takes})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Check(j.Expand(with)); err != nil {
		t.Errorf("Check(a target with a port): %v", err)
	}
	if r := j.Run(context.Background(), with.At(0)); r.Status != job.Up || r.Host != "web1" || r.Port != int(p) || r.Addr != "127.0.0.1" {
		t.Errorf("Run(web1 at 127.0.0.1:%d) = %+v", p, r)
	}
	without, _ := target.Parse([]string{"web1 ansible_host=127.0.0.1 ansible_port=22", "127.0.0.2"}, target.ParseOptions{Takes: tcp.Traits.Takes})
	if err := j.Check(without); err == nil || !strings.Contains(err.Error(), "tcp: no port for 127.0.0.2: give -p PORTS") {
		t.Errorf("Check(a target without a port) = %v", err)
	}
	if r := j.Run(context.Background(), target.Target{Addr: lo}); r.Status != job.Error || r.Class != job.ClassLocal {
		t.Errorf("Run(no port) = %s/%s %q", r.Status, r.Class, r.Error)
	}
	// With ports, a host line's ansible_port gives way to -p.
	j2, _ := tcp.New(tcp.Config{Ports: []int{int(p)}})
	if got := j2.Expand(with).At(0).Port; got != p {
		t.Errorf("with -p %d: port %d", p, got)
	}
}
