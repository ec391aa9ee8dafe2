// The receivers' reads: recvmmsg(2) into the receiver's reusable messages,
// as x/net's ReadBatch does, except that a datagram's source is decoded
// into a netip.Addr in place, where ReadBatch allocates a net.IPAddr and its
// IP for every datagram (two allocations a reply: most of what a watch's
// round still allocated once its tables were reused).

package icmp

import (
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsg is what recvmmsg fills for a receiver's messages; its headers
// point into them (buffers, control space) and into names.
type mmsg struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family's address
	from  []netip.Addr            // per message read: its source, no zone
}

func newMmsg(ms []ipv4.Message) *mmsg {
	m := &mmsg{hdrs: make([]unix.Mmsghdr, len(ms)), iovs: make([]unix.Iovec, len(ms)),
		names: make([]unix.RawSockaddrInet6, len(ms)), from: make([]netip.Addr, len(ms))}
	for i := range ms {
		b := ms[i].Buffers[0]
		m.iovs[i].Base = &b[0]
		m.iovs[i].SetLen(len(b))
		h := &m.hdrs[i].Hdr
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Control = &ms[i].OOB[0]
	}
	return m
}

// read reads up to len(ms) datagrams of rc into ms (N, NN, Flags; Addr is
// left nil: the source is m.from[i]). Errors are ReadBatch's: net.ErrClosed
// once the socket is closed, os.ErrDeadlineExceeded at the read deadline.
func (m *mmsg) read(rc syscall.RawConn, ms []ipv4.Message) (int, error) {
	for i := range m.hdrs {
		h := &m.hdrs[i].Hdr
		h.Namelen = uint32(unsafe.Sizeof(m.names[i]))
		h.SetControllen(len(ms[i].OOB))
		h.Flags = 0
		m.hdrs[i].Len = 0
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := rc.Read(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)), 0, 0, 0)
		if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
			return false // wait until readable, or the deadline
		}
		n, errno = int(r), e
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	n = min(max(n, 0), len(ms))
	for i := range n {
		h := &m.hdrs[i]
		ms[i].N = min(int(h.Len), len(ms[i].Buffers[0]))
		ms[i].NN = min(int(h.Hdr.Controllen), len(ms[i].OOB))
		ms[i].Flags = int(h.Hdr.Flags)
		ms[i].Addr = nil
		m.from[i] = sockaddrAddr(&m.names[i], h.Hdr.Namelen)
	}
	return n, nil
}

// sockaddrAddr is the address of a sockaddr_in or sockaddr_in6 the kernel
// wrote (namelen bytes of it), without zone; the zero Addr for anything else.
func sockaddrAddr(sa *unix.RawSockaddrInet6, namelen uint32) netip.Addr {
	switch {
	case sa.Family == unix.AF_INET && namelen >= unix.SizeofSockaddrInet4:
		v4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(v4.Addr)
	case sa.Family == unix.AF_INET6 && namelen >= unix.SizeofSockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// rawConn is c's socket for recvmmsg, nil when it has none (then the
// receiver reads through x/net's ReadBatch).
func (c *conn) rawConn() syscall.RawConn {
	sc, ok := c.pc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
