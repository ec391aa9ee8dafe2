package icmp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// fate is what a fake sendmmsg does with one message.
type fate struct {
	err       error // it cannot leave: this error
	transient int   // it is refused with ENOBUFS this many times first
}

// fakeMmsg plays Linux sendmmsg over messages whose N field holds their
// index: it sends in order, at most perCall per call, and stops at the first
// message that cannot leave, returning the count when some left before it
// (the error is lost) and -1 with the error when none did.
type fakeMmsg struct {
	fates   map[int]*fate
	perCall int
	calls   int
	sent    []int
}

func (f *fakeMmsg) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	f.calls++
	n := 0
	for _, m := range ms {
		if n == f.perCall {
			break
		}
		var err error
		if ft := f.fates[m.N]; ft != nil {
			if ft.transient > 0 {
				ft.transient--
				err = syscall.ENOBUFS
			} else {
				err = ft.err
			}
		}
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return -1, os.NewSyscallError("sendmmsg", err)
		}
		f.sent = append(f.sent, m.N)
		n++
	}
	return n, nil
}

func numbered(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].N = i
	}
	return ms
}

// The send loop's accounting of sendmmsg's partial results: each message
// that cannot leave is reported once, as its own, with its own error, the
// rest are sent, and the loop ends (sendmmsg's -1 used to index the batch at
// -1, blame the message before, or loop forever).
func TestWriteAll(t *testing.T) {
	t.Parallel()
	unreach, perm := syscall.EHOSTUNREACH, syscall.EPERM
	cases := []struct {
		name    string
		n       int
		perCall int
		fates   map[int]*fate
		failed  []int // indexes reported, in order
	}{
		{"all leave", 64, 64, nil, nil},
		{"the first fails (-1)", 8, 64, map[int]*fate{0: {err: unreach}}, []int{0}},
		{"the last fails", 8, 64, map[int]*fate{7: {err: perm}}, []int{7}},
		{"partial send, then the error", 10, 64, map[int]*fate{3: {err: perm}, 4: {err: unreach}, 9: {err: perm}}, []int{3, 4, 9}},
		{"every one fails", 16, 64, allFail(16, unreach), seq(16)},
		{"partial sends without errors", 64, 5, map[int]*fate{17: {err: perm}}, []int{17}},
		{"transient, then it leaves", 6, 64, map[int]*fate{2: {transient: 3}}, nil},
		{"transient for ever", 4, 64, map[int]*fate{1: {transient: 1 << 30}}, []int{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeMmsg{fates: c.fates, perCall: c.perCall}
			var failed []int
			var errs []error
			sent, open := writeAll(f, numbered(c.n), 0, func(k int, err error) {
				failed = append(failed, k)
				errs = append(errs, err)
			})
			if !open {
				t.Fatal("reported closed")
			}
			if !slices.Equal(failed, c.failed) {
				t.Fatalf("failed %v, want %v", failed, c.failed)
			}
			for i, k := range failed {
				want := c.fates[k].err
				if want == nil {
					want = syscall.ENOBUFS
				}
				if !errors.Is(errs[i], want) {
					t.Errorf("message %d failed with %v, want %v", k, errs[i], want)
				}
			}
			var want []int
			for i := range c.n {
				if !slices.Contains(c.failed, i) {
					want = append(want, i)
				}
			}
			if sent != len(want) || !slices.Equal(f.sent, want) {
				t.Errorf("sent %d %v, want %v", sent, f.sent, want)
			}
			// A call per run of good messages and per failure, plus the
			// transient refusals: never a spin.
			if limit := 2*c.n + maxStall + 2; f.calls > limit {
				t.Errorf("%d calls for %d messages", f.calls, c.n)
			}
		})
	}
}

func allFail(n int, err error) map[int]*fate {
	m := make(map[int]*fate, n)
	for i := range n {
		m[i] = &fate{err: err}
	}
	return m
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// result is what a WriteBatch call returns.
type result struct {
	n   int
	err error
}

// scripted returns its results in order, then ErrClosed.
type scripted struct {
	res   []result
	calls int
}

func (s *scripted) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	s.calls++
	if len(s.res) == 0 {
		return -1, net.ErrClosed
	}
	r := s.res[0]
	s.res = s.res[1:]
	return r.n, r.err
}

// What no kernel should say still ends: a closed socket, a count past the
// batch, a call that neither sends nor fails.
func TestWriteAllOddResults(t *testing.T) {
	t.Parallel()
	type res = result
	closed := &scripted{res: []res{{2, nil}}}
	sent, open := writeAll(closed, numbered(5), 0, func(k int, err error) { t.Errorf("closed: message %d failed: %v", k, err) })
	if open || sent != 2 {
		t.Errorf("closed after 2: sent %d open %v", sent, open)
	}
	over := &scripted{res: []res{{9, nil}}}
	if sent, open := writeAll(over, numbered(3), 0, func(int, error) {}); sent != 3 || !open || over.calls != 1 {
		t.Errorf("count past the batch: sent %d open %v calls %d", sent, open, over.calls)
	}
	stuck := &scripted{}
	for range maxStall + 1 {
		stuck.res = append(stuck.res, res{0, nil})
	}
	stuck.res = append(stuck.res, res{1, nil})
	var failed []int
	sent, open = writeAll(stuck, numbered(2), 0, func(k int, err error) {
		failed = append(failed, k)
		if !errors.Is(err, errNoProgress) {
			t.Errorf("no progress reported as %v", err)
		}
	})
	if sent != 1 || !open || !slices.Equal(failed, []int{0}) {
		t.Errorf("no progress: sent %d open %v failed %v", sent, open, failed)
	}
}

// Each errno a route or firewall gives a send becomes its target's class,
// and the message names the family.
func TestSendFailureClasses(t *testing.T) {
	t.Parallel()
	s := &sweep{hasAddr: [2]int8{1, 1}}
	none := &sweep{hasAddr: [2]int8{-1, -1}}
	v4, v6 := netip.MustParseAddr("127.3.1.1"), netip.MustParseAddr("fd00::1")
	ll := netip.MustParseAddr("fe80::1")
	cases := []struct {
		s      *sweep
		v6     bool
		dst    netip.Addr
		err    error
		status job.Status
		class  job.Class
		msg    string
	}{
		{s, false, v4, syscall.ENETUNREACH, job.Down, job.ClassUnreachable, "send IPv4 echo request: network is unreachable"},
		{s, true, v6, syscall.EHOSTUNREACH, job.Down, job.ClassUnreachable, "send IPv6 echo request: no route to host"},
		{s, false, v4, syscall.EPERM, job.Down, job.ClassRefused, "send IPv4 echo request: operation not permitted (a firewall rule"},
		{s, false, v4, syscall.EACCES, job.Down, job.ClassRefused, "send IPv4 echo request: permission denied (a prohibit route, or a broadcast address)"},
		{s, false, v4, syscall.EINVAL, job.Error, job.ClassLocal, "send IPv4 echo request: invalid argument (a blackhole route?)"},
		{s, true, ll, syscall.EINVAL, job.Error, job.ClassLocal, "needs a zone"},
		{s, false, v4, syscall.EMSGSIZE, job.Error, job.ClassLocal, "send IPv4 echo request: message too long"},
		{none, true, v6, syscall.EADDRNOTAVAIL, job.Error, job.ClassLocal, "send IPv6 echo request: cannot assign requested address (this machine has no IPv6 address"},
		{none, false, v4, syscall.ENETUNREACH, job.Error, job.ClassLocal, "(this machine has no IPv4 address)"},
	}
	for _, c := range cases {
		e := c.s.sendFailure(c.v6, c.dst, os.NewSyscallError("sendmmsg", c.err))
		if e.status != c.status || e.class != c.class || !strings.Contains(e.Error(), c.msg) || !errors.Is(e, c.err) {
			t.Errorf("%v to %s: %s/%s %q, want %s/%s %q", c.err, c.dst, e.status, e.class, e, c.status, c.class, c.msg)
		}
	}
}

// A kernel without the family: no advice about permissions that cannot help.
func TestSocketErrorNoFamily(t *testing.T) {
	t.Parallel()
	afn := os.NewSyscallError("socket", syscall.EAFNOSUPPORT)
	e := &SocketError{Family: "IPv6", Raw: afn, Dgram: afn, PingLow: 0, PingHigh: 2147483647}
	msg := e.Error()
	if !strings.Contains(msg, "cannot open an IPv6 ICMP socket: this machine's kernel has no IPv6") || strings.Contains(msg, "setcap") {
		t.Errorf("message %q", msg)
	}
}

// ip runs ip(8) with args (in this binary's lab namespace) and registers undo.
func ip(t *testing.T, undo []string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	if undo != nil {
		t.Cleanup(func() { _ = exec.Command("ip", undo...).Run() })
	}
}

// refusalRules reject and drop echo requests on the output hook: the send
// itself fails (EPERM); reject also answers with an ICMP error.
const refusalRules = `table inet fanouticmprefuse {
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr 127.3.5.0/24 icmp type echo-request reject with icmp type admin-prohibited
		ip daddr 127.3.6.0/24 icmp type echo-request drop
	}
}
`

// Routes and a firewall that refuse to send: each refused target is down
// (or an error) with its own errno's class, everything else in the same
// sweep answers as it would, and the sweep ends. Before, sendmmsg's -1
// panicked (index -1), blamed the target before, or spun forever.
func TestSendRefused(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	for _, r := range []struct{ kind, dst string }{
		{"unreachable", "127.3.1.0/24"}, {"prohibit", "127.3.2.0/24"}, {"blackhole", "127.3.3.0/24"},
	} {
		// 127/8 is one local route in the local table: override it there.
		ip(t, []string{"route", "del", r.kind, r.dst, "table", "local"}, "route", "add", r.kind, r.dst, "table", "local")
	}
	ip(t, []string{"-6", "route", "del", "unreachable", "fd00:3:1::/64"}, "-6", "route", "add", "unreachable", "fd00:3:1::/64")
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(refusalRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", "fanouticmprefuse").Run() })

	ts := cidr4(t, "127.3.0.0/21", 0)                  // a /24 each: live, unreachable, prohibit, blackhole, live, reject, drop, live
	ts = append(ts, cidr4(t, "127.1.3.0/28", 2048)...) // dead: timeouts
	n := uint64(len(ts))
	ts = append(ts,
		target.Target{Index: n, Addr: netip.MustParseAddr("::1")},
		target.Target{Index: n + 1, Addr: netip.MustParseAddr("fd00:3:1::5")},     // unreachable route
		target.Target{Index: n + 2, Addr: netip.MustParseAddr("fd00:3:2::5")},     // no route
		target.Target{Index: n + 3, Addr: netip.MustParseAddr("127.255.255.255")}, // lo's broadcast address
	)
	for _, sc := range []struct {
		socket string
		count  int
	}{{SocketRaw, 1}, {SocketDgram, 2}} {
		t.Run(sc.socket, func(t *testing.T) {
			t.Parallel()
			if err := Check(sc.socket); err != nil {
				t.Skipf("%s sockets: %v", sc.socket, err)
			}
			j := newJob(t, Config{Socket: sc.socket, Count: sc.count, Interval: 50 * time.Millisecond, Timeout: time.Second})
			res := runSweep(t, j, ts, 1000)
			check := func(r job.Result, st job.Status, cl job.Class, msg string) {
				t.Helper()
				if r.Status != st || r.Class != cl || !strings.Contains(r.Error, msg) || r.Sent != sc.count || r.Recv != 0 {
					t.Errorf("%s: %s/%s %q sent %d, want %s/%s %q", r.Addr, r.Status, r.Class, r.Error, r.Sent, st, cl, msg)
				}
			}
			for i, r := range res.byIndex {
				if r.Addr != ts[i].Addr.String() {
					t.Fatalf("index %d reported as %s, probed %s", i, r.Addr, ts[i].Addr)
				}
				if i >= 2048 {
					continue
				}
				switch i / 256 {
				case 0, 4, 7:
					if r.Status != job.Up || r.Recv != sc.count {
						t.Errorf("%s: %+v, want up", r.Addr, r)
					}
				case 1:
					check(r, job.Down, job.ClassUnreachable, "send IPv4 echo request: no route to host")
				case 2:
					check(r, job.Down, job.ClassRefused, "send IPv4 echo request: permission denied")
				case 3:
					check(r, job.Error, job.ClassLocal, "send IPv4 echo request: invalid argument")
				case 5:
					// A raw socket also reads the ICMP error the reject
					// sends back; whichever comes first classes the target.
					if sc.socket == SocketRaw && r.Class == job.ClassUnreachable {
						check(r, job.Down, job.ClassUnreachable, "administratively prohibited from "+r.Addr)
					} else {
						check(r, job.Down, job.ClassRefused, "send IPv4 echo request: operation not permitted")
					}
				case 6:
					check(r, job.Down, job.ClassRefused, "send IPv4 echo request: operation not permitted")
				}
			}
			for i := uint64(2048); i < 2048+16; i++ {
				if r := res.byIndex[i]; r.Status != job.Down || r.Class != job.ClassTimeout || r.Sent != sc.count {
					t.Errorf("dead %s: %+v", r.Addr, r)
				}
			}
			if r := res.byIndex[n]; r.Status != job.Up || r.Recv != sc.count {
				t.Errorf("::1: %+v", r)
			}
			check(res.byIndex[n+1], job.Down, job.ClassUnreachable, "send IPv6 echo request: no route to host")
			check(res.byIndex[n+2], job.Down, job.ClassUnreachable, "send IPv6 echo request: network is unreachable")
			// Not pinged as a broadcast: refused, as ping(8) without -b.
			check(res.byIndex[n+3], job.Down, job.ClassRefused, "send IPv4 echo request: permission denied")
			// Requests that left: 3 live /24s, the dead and ::1; the
			// rest failed, each once.
			left := uint64(3*256+16+1) * uint64(sc.count)
			failed := uint64(5*256+3) * uint64(sc.count)
			if st := j.Stats(); st.Sent != left || st.SendErrors != failed || st.Replies != uint64(3*256+1)*uint64(sc.count) {
				t.Errorf("stats %+v, want %d sent, %d send errors", st, left, failed)
			}
		})
	}
}

// familyEnv tells TestNoFamilyChild which family its namespace lacks.
const familyEnv = "FANOUT_ICMP_TEST_NOFAMILY"

// A machine without IPv6 (disable_ipv6) or without IPv4 (no address): the
// other family's targets answer, and this one's are errors that say which
// family is missing. Each runs this binary in a fresh namespace of its own.
func TestNoFamily(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	if os.Getenv(familyEnv) != "" {
		t.Skip("in the child")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not found")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	setup := map[string]string{
		"IPv6": "sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1",
		"IPv4": "ip addr del 127.0.0.1/8 dev lo",
	}
	for _, fam := range []string{"IPv6", "IPv4"} {
		t.Run("no "+fam, func(t *testing.T) {
			t.Parallel()
			script := "ip link set lo up && " + setup[fam] +
				" && echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && exec \"$0\" \"$@\""
			cmd := exec.Command("unshare", "--net", "--", "sh", "-c", script, self,
				"-test.run=^TestNoFamilyChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), familyEnv+"="+fam)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestNoFamilyChild") {
				t.Fatalf("child without %s: %v\n%s", fam, err, out)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "without "+fam+":") {
					t.Log(strings.TrimSpace(l))
				}
			}
		})
	}
}

func TestNoFamilyChild(t *testing.T) {
	missing := os.Getenv(familyEnv)
	if missing == "" {
		t.Skip("run by TestNoFamily in a namespace without a family")
	}
	ts := []target.Target{
		{Index: 0, Addr: netip.MustParseAddr("127.0.0.1")},
		{Index: 1, Addr: netip.MustParseAddr("127.0.0.5")},
		{Index: 2, Addr: netip.MustParseAddr("::1")},
		{Index: 3, Addr: netip.MustParseAddr("fd00::5")},
	}
	for _, socket := range []string{SocketRaw, SocketDgram} {
		t.Run(socket, func(t *testing.T) {
			j := newJob(t, Config{Socket: socket, Count: 2, Interval: 50 * time.Millisecond, Timeout: time.Second})
			res := runSweep(t, j, ts, 10)
			for i, r := range res.byIndex {
				fam := "IPv4"
				if ts[i].Addr.Is6() {
					fam = "IPv6"
				}
				switch {
				case fam == missing:
					want := fmt.Sprintf("send %s echo request: ", fam)
					if r.Status != job.Error || r.Class != job.ClassLocal || !strings.HasPrefix(r.Error, want) ||
						!strings.Contains(r.Error, "this machine has no "+fam+" address") {
						t.Errorf("%s: %s/%s %q, want an error naming %s", r.Addr, r.Status, r.Class, r.Error, fam)
					}
				case i == 3: // fd00::5: IPv6 works, but no route to it
					if r.Status != job.Down || r.Class != job.ClassUnreachable {
						t.Errorf("%s: %+v", r.Addr, r)
					}
				default:
					if r.Status != job.Up || r.Recv != 2 {
						t.Errorf("%s: %+v, want up", r.Addr, r)
					}
				}
			}
			t.Logf("without %s: %s", missing, res.byIndex[map[string]uint64{"IPv4": 0, "IPv6": 2}[missing]].Error)
		})
	}
}

// A link-local target with a zone, by name or index, is sent with that
// scope and its replies are matched; a zone naming no interface is an error
// naming it.
func TestZone(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	ip(t, []string{"-6", "addr", "del", "fe80::1/64", "dev", "lo"}, "-6", "addr", "add", "fe80::1/64", "dev", "lo")
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	ts := []target.Target{
		{Index: 0, Addr: netip.MustParseAddr("fe80::1%lo")},
		{Index: 1, Addr: netip.MustParseAddr(fmt.Sprintf("fe80::1%%%d", lo.Index))},
		{Index: 2, Addr: netip.MustParseAddr("fe80::1%nosuchif0")},
		{Index: 3, Addr: netip.MustParseAddr("fe80::2%lo")}, // not assigned: no answer
		{Index: 4, Addr: netip.MustParseAddr("::1")},
	}
	for _, socket := range []string{SocketRaw, SocketDgram} {
		t.Run(socket, func(t *testing.T) {
			t.Parallel()
			if err := Check(socket); err != nil {
				t.Skipf("%s sockets: %v", socket, err)
			}
			j := newJob(t, Config{Socket: socket, Count: 2, Interval: 50 * time.Millisecond, Timeout: time.Second})
			res := runSweep(t, j, ts, 10)
			for _, i := range []uint64{0, 1, 4} {
				if r := res.byIndex[i]; r.Status != job.Up || r.Recv != 2 || r.Addr != ts[i].Addr.String() {
					t.Errorf("%s: %+v, want up, 2 replies", ts[i].Addr, r)
				}
			}
			if r := res.byIndex[2]; r.Status != job.Error || r.Class != job.ClassLocal ||
				r.Error != `ping fe80::1%nosuchif0: zone "nosuchif0" names no network interface of this machine` {
				t.Errorf("unknown zone: %+v", r)
			}
			if r := res.byIndex[3]; r.Status != job.Down {
				t.Errorf("fe80::2%%lo: %+v, want down", r)
			}
			if st := j.Stats(); st.Late != 0 || st.WrongSource != 0 || st.Replies != 6 {
				t.Errorf("stats %+v: want the 6 replies counted", st)
			}
		})
	}
}

// An ICMP error whose quoted IPv4 header says it is longer (IHL) than what
// is quoted, or shorter than an IPv4 header, is foreign: anyone on the path
// can send one to a raw socket. Before, a quoted IHL past the end panicked
// the receiver (slice bounds out of range).
func TestQuotedHeaderLength(t *testing.T) {
	t.Parallel()
	probed := netip.MustParseAddr("127.0.0.5")
	router := netip.MustParseAddr("127.0.0.1")
	s, o, req := sentRequest(t, probed)
	ihls := []byte{15, 9, 6, 4, 0}
	for _, ihl := range ihls {
		quoted := ipv4Packet(router, probed, req[:icmpHeaderLen]) // 28 bytes: header and ICMP header
		quoted[0] = 0x40 | ihl
		quoted[8] = v4EchoRequest // the TTL, where an IHL of 2 would look for the type
		m := v4Unreach(router, quoted)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("quoted IHL %d: parse panicked: %v", ihl, p)
				}
			}()
			if _, ok := s.parse(&conn{raw: true}, &m, o.p.sent+2000); ok {
				t.Errorf("quoted IHL %d: recognized", ihl)
			}
		}()
	}
	if got := s.j.Stats().Foreign; got != uint64(len(ihls)) {
		t.Errorf("foreign %d, want %d", got, len(ihls))
	}
}
