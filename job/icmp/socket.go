package icmp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Socket kinds a Config may ask for.
const (
	SocketAuto  = ""      // raw when permitted, else datagram
	SocketRaw   = "raw"   // SOCK_RAW: root or CAP_NET_RAW
	SocketDgram = "dgram" // SOCK_DGRAM ICMP ("ping socket"): net.ipv4.ping_group_range
)

// Socket buffer sizes: a /16 burst of replies must fit while the receiver
// catches up (a loopback reply costs about 1 KB of buffer).
const (
	rcvBuf = 64 << 20
	sndBuf = 4 << 20
)

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share: recvmmsg and
// sendmmsg on Linux.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
	Close() error
}

// conn is one ICMP socket of one address family.
type conn struct {
	v6  bool
	raw bool // raw sockets read IPv4 headers and keep our echo id
	pc  net.PacketConn
	b   batchConn
}

// SocketError says why no ICMP socket could be opened, and what would fix it.
type SocketError struct {
	Family   string // "IPv4" or "IPv6"
	Raw      error  // opening a raw socket (nil when not tried)
	Dgram    error  // opening a datagram socket (nil when not tried)
	GID      int    // our effective group
	PingLow  int    // net.ipv4.ping_group_range, -1 when unreadable
	PingHigh int
}

func (e *SocketError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cannot open an %s ICMP socket:", e.Family)
	if errors.Is(e, syscall.EAFNOSUPPORT) {
		// No permission would help: the kernel has no such family.
		fmt.Fprintf(&b, " this machine's kernel has no %s (%v)", e.Family, syscall.EAFNOSUPPORT)
		if e.Family == "IPv6" {
			b.WriteString("; booted with ipv6.disable=1?")
		}
		return b.String()
	}
	if e.Raw != nil {
		fmt.Fprintf(&b, " raw socket: %v (needs root or CAP_NET_RAW);", unwrapSys(e.Raw))
	}
	if e.Dgram != nil {
		fmt.Fprintf(&b, " ICMP datagram socket: %v", unwrapSys(e.Dgram))
		if e.PingLow >= 0 {
			fmt.Fprintf(&b, " (group %d is outside net.ipv4.ping_group_range = \"%d %d\")", e.GID, e.PingLow, e.PingHigh)
		}
		b.WriteString(";")
	}
	exe, err := os.Executable()
	if err != nil {
		exe = "fanout"
	}
	fmt.Fprintf(&b, " fix one of: run as root; sudo setcap cap_net_raw+ep %s; sudo sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"", exe)
	return b.String()
}

// Unwrap lets errors.Is see EPERM / EACCES.
func (e *SocketError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Raw, e.Dgram} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func unwrapSys(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// Check reports whether an IPv4 ICMP socket of the given kind (SocketAuto,
// SocketRaw, SocketDgram) can be opened, so a command line can say what is
// wrong before it sends anything. The error is a *SocketError.
func Check(kind string) error {
	c, err := listen(false, kind)
	if err != nil {
		return err
	}
	return c.close()
}

// listen opens an ICMP socket of family v6 (or v4) and kind.
func listen(v6 bool, kind string) (*conn, error) {
	fam := "IPv4"
	if v6 {
		fam = "IPv6"
	}
	serr := &SocketError{Family: fam, GID: os.Getegid(), PingLow: -1}
	switch kind {
	case SocketAuto, SocketRaw:
		c, err := listenRaw(v6)
		if err == nil {
			return c, nil
		}
		serr.Raw = err
		if kind == SocketRaw {
			return nil, serr
		}
		fallthrough
	case SocketDgram:
		c, err := listenDgram(v6)
		if err == nil {
			return c, nil
		}
		serr.Dgram = err
		serr.PingLow, serr.PingHigh = pingGroupRange()
		return nil, serr
	default:
		return nil, fmt.Errorf("socket %q: want %q, %q or empty (automatic)", kind, SocketRaw, SocketDgram)
	}
}

func listenRaw(v6 bool) (*conn, error) {
	network, addr := "ip4:icmp", "0.0.0.0"
	if v6 {
		network, addr = "ip6:ipv6-icmp", "::"
	}
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	c := wrap(pc, v6, true)
	if !v6 {
		// Go allows broadcast on every raw IPv4 socket; ping(8) and our
		// datagram sockets do not: a broadcast address in a sweep is
		// refused (EACCES) rather than pinging a whole subnet.
		noBroadcast(pc)
	}
	// Only the types we act on reach us: not our own echo requests looping
	// back on lo, nor the rest of the host's ICMP chatter.
	if v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		f.Accept(ipv6.ICMPTypeDestinationUnreachable)
		f.Accept(ipv6.ICMPTypeTimeExceeded)
		err = c.b.(*ipv6.PacketConn).SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		f.Accept(ipv4.ICMPTypeDestinationUnreachable)
		f.Accept(ipv4.ICMPTypeTimeExceeded)
		err = c.b.(*ipv4.PacketConn).SetICMPFilter(&f)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("set ICMP filter: %w", err)
	}
	return c, nil
}

// listenDgram opens an unprivileged ICMP socket. The kernel owns the echo id
// there (it is the socket's port) and delivers only replies to it.
func listenDgram(v6 bool) (*conn, error) {
	fam, proto := unix.AF_INET, unix.IPPROTO_ICMP
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if v6 {
		fam, proto, sa = unix.AF_INET6, unix.IPPROTO_ICMPV6, &unix.SockaddrInet6{}
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	f := os.NewFile(uintptr(fd), "icmp")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return wrap(pc, v6, false), nil
}

func wrap(pc net.PacketConn, v6, raw bool) *conn {
	c := &conn{v6: v6, raw: raw, pc: pc}
	if v6 {
		c.b = ipv6.NewPacketConn(pc)
	} else {
		c.b = ipv4.NewPacketConn(pc)
	}
	setBuffers(pc)
	setTimestamps(pc)
	return c
}

func noBroadcast(pc net.PacketConn) {
	if sc, ok := pc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 0)
			})
		}
	}
}

// setTimestamps asks the kernel to stamp each datagram's arrival.
func setTimestamps(pc net.PacketConn) {
	if sc, ok := pc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
			})
		}
	}
}

// setBuffers enlarges the socket buffers: past net.core.rmem_max with
// SO_RCVBUFFORCE when we may (root / CAP_NET_ADMIN), else as far as allowed.
func setBuffers(pc net.PacketConn) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sndBuf)
		}
	})
}

func (c *conn) close() error { return c.b.Close() }

// empty reports whether no datagram waits in c's receive queue: a peek
// that would block.
func (c *conn) empty() bool {
	sc, ok := c.pc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var perr error
	var one [1]byte
	if err := rc.Control(func(fd uintptr) {
		_, _, perr = unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	return errors.Is(perr, unix.EAGAIN)
}

// pingGroupRange reads net.ipv4.ping_group_range, (-1, -1) when unreadable.
func pingGroupRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		return -1, -1
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return -1, -1
	}
	return lo, hi
}
