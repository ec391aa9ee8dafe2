// The receivers: one goroutine per socket, started by the sender when it
// opens the socket. Each reads its socket in recvmmsg batches, verifies what
// came (echo replies, and ICMP errors quoting our requests), and applies it
// to its target's slot under mu; it also tells the reaper when its socket
// was found empty (sweep.drained).

package icmp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/job"
)

// event is a received ICMP message that verified, ready to apply under mu.
type event struct {
	e       echo
	src     netip.Addr
	unreach string // empty for an echo reply
	wrong   bool   // verified only against the slot's address, not the source
	at      int64  // arrival on the sweep's clock
}

// receiver reads c in batches until c is closed.
func (s *sweep) receiver(c *conn) {
	defer s.wg.Done()
	fam := family(c.v6)
	rb := s.spare.recv[fam]
	if rb == nil {
		rb = newRecvBufs(s.payload)
	}
	defer func() { s.spare.recv[fam] = rb }()
	ms := rb.msgs
	rc := c.rawConn()
	for {
		// The deadline wakes an idle receiver every reapTick to say the
		// socket was empty: the reaper waits for that before timing out.
		t0 := s.now()
		_ = c.pc.SetReadDeadline(s.epoch.Add(time.Duration(t0) + reapTick))
		var (
			n   int
			err error
		)
		if rc != nil {
			n, err = rb.mm.read(rc, ms)
		} else {
			n, err = c.b.ReadBatch(ms, 0)
			for i := range ms[:n] {
				rb.mm.from[i] = addrOf(ms[i].Addr)
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				// The deadline may have passed before the read even began
				// (a busy machine): ask the socket whether it is empty.
				t1 := s.now()
				if c.empty() {
					s.mu.Lock()
					s.drained[fam] = t1
					s.mu.Unlock()
				}
			default:
				time.Sleep(time.Millisecond) // a transient error must not spin
			}
			continue
		}
		wall, mono := time.Now().UnixNano(), s.now()
		rb.evs = rb.evs[:0]
		for i := range ms[:n] {
			if ev, ok := s.parseFrom(c, &ms[i], rb.mm.from[i], arrival(&ms[i], wall, mono)); ok {
				rb.evs = append(rb.evs, ev)
			}
		}
		s.mu.Lock()
		for _, ev := range rb.evs {
			rb.out = s.apply(ev, rb.out)
		}
		if n < len(ms) {
			// The read took all there was: every reply that arrived
			// before t0 has been applied.
			s.drained[fam] = t0
		}
		s.mu.Unlock()
		rb.out = s.deliver(rb.out)
	}
}

// recvBufs are a receiver's messages and what it collects from them.
type recvBufs struct {
	msgs []ipv4.Message
	mm   *mmsg
	evs  []event
	out  []job.Result
}

func newRecvBufs(payload int) *recvBufs {
	bufSize := max(512, icmpHeaderLen+payload+128)
	ms := make([]ipv4.Message, batchMax)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, bufSize)}
		ms[i].OOB = make([]byte, oobSize)
	}
	return &recvBufs{msgs: ms, mm: newMmsg(ms)}
}

// oobSize holds one SCM_TIMESTAMPNS control message.
var oobSize = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// arrival is when the kernel received m (SO_TIMESTAMPNS), on the sweep's
// clock; mono (read at wall) when the kernel gave no timestamp. RTTs and
// timeouts are judged by arrival, not by when a busy receiver got to it.
func arrival(m *ipv4.Message, wall, mono int64) int64 {
	oob := m.OOB[:m.NN]
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			if age := wall - ts.Nano(); age >= 0 && age < int64(time.Minute) {
				return mono - age
			}
			break
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
	return mono
}

// parse reads one message: an echo reply or an ICMP error quoting one of
// our requests. Anything else is counted as foreign and dropped.
func (s *sweep) parse(c *conn, m *ipv4.Message, at int64) (event, bool) {
	return s.parseFrom(c, m, addrOf(m.Addr), at)
}

// parseFrom is parse of a message whose sender's address is from (what
// the socket said; a raw IPv4 socket's is read from the IP header).
func (s *sweep) parseFrom(c *conn, m *ipv4.Message, from netip.Addr, at int64) (event, bool) {
	b := m.Buffers[0][:m.N]
	src := from
	if c.raw && !c.v6 {
		if len(b) < 20 || b[0]>>4 != 4 {
			s.stats.foreign.Add(1)
			return event{}, false
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		b = b[int(b[0]&0x0f)*4:]
	}
	if len(b) < icmpHeaderLen {
		s.stats.foreign.Add(1)
		return event{}, false
	}
	typ := b[0]
	switch {
	case (!c.v6 && typ == v4EchoReply) || (c.v6 && typ == v6EchoReply):
		if c.raw && binary.BigEndian.Uint16(b[4:]) != s.id {
			s.stats.foreign.Add(1)
			return event{}, false
		}
		e, ok := parseEcho(b)
		if !ok {
			break
		}
		ev := event{e: e, src: src, at: at}
		// When it does not verify against its source it may still be ours,
		// answered from another address: apply decides, knowing what we probed.
		ev.wrong = !s.key.valid(e, src)
		return ev, true
	case !c.v6 && (typ == v4Unreachable || typ == v4TimeExceed),
		c.v6 && (typ == v6Unreachable || typ == v6TimeExceed):
		dst, q, ok := quotedRequest(c.v6, b[icmpHeaderLen:])
		if !ok {
			break
		}
		if e, ok := parseEcho(q); ok && s.key.valid(e, dst) {
			return event{e: e, src: dst, unreach: icmpError(c.v6, typ, b[1], src)}, true
		}
	}
	s.stats.foreign.Add(1)
	return event{}, false
}

// quotedRequest is the echo request an ICMP error quotes and the address it
// was sent to; q is the error's body, the request's IP header and the start
// of its ICMP message. ok is false when q quotes anything else.
func quotedRequest(v6 bool, q []byte) (dst netip.Addr, req []byte, ok bool) {
	want := byte(v4EchoRequest)
	if v6 {
		if len(q) < 40 || q[0]>>4 != 6 || q[6] != 58 {
			return dst, nil, false
		}
		dst = netip.AddrFrom16([16]byte(q[24:40]))
		q, want = q[40:], v6EchoRequest
	} else {
		if len(q) < 20 || q[0]>>4 != 4 || q[9] != 1 {
			return dst, nil, false
		}
		// The quoted header is the sender's word, not the kernel's: its
		// length must fit what is quoted.
		n := int(q[0]&0x0f) * 4
		if n < 20 || n > len(q) {
			return dst, nil, false
		}
		dst = netip.AddrFrom4([4]byte(q[16:20]))
		q = q[n:]
	}
	if len(q) < icmpHeaderLen || q[0] != want {
		return dst, nil, false
	}
	return dst, q, true
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	v, _ := netip.AddrFromSlice(ip)
	return v.Unmap()
}

// apply counts a verified message toward its target; mu is held.
func (s *sweep) apply(ev event, out []job.Result) []job.Result {
	p := ev.e.p
	i := p.slot
	if int(i) >= len(s.slots) {
		s.stats.foreign.Add(1)
		return out
	}
	sl := &s.slots[i]
	if ev.wrong {
		// Valid only if it verifies against the address we probed.
		if !sl.live || sl.t.Index != p.index || int(p.num) >= int(sl.sent) ||
			!s.key.valid(ev.e, sl.addr) {
			s.stats.foreign.Add(1)
			return out
		}
		s.stats.wrongSource.Add(1)
		return out
	}
	// ev.src has no zone: a link-local target's replies match it without.
	if !sl.live || sl.t.Index != p.index || sl.addr.WithZone("") != ev.src || int(p.num) >= int(sl.sent) {
		s.stats.late.Add(1) // its target has finished; the slot may hold another
		return out
	}
	if ev.unreach != "" {
		s.stats.unreachable.Add(1)
		if testSet(s.resolvedBits(i), p.num) {
			return out
		}
		if sl.unreach == "" {
			sl.unreach = ev.unreach
		}
		return s.settle(i, out)
	}
	if w, m := p.num/64, uint64(1)<<(p.num%64); s.answeredBits(i)[w]&m != 0 {
		s.stats.duplicate.Add(1)
		return out
	} else if s.resolvedBits(i)[w]&m != 0 || ev.at > p.sent+s.timeout {
		s.stats.late.Add(1) // came after its timeout, reaped or not yet
		return out
	}
	testSet(s.answeredBits(i), p.num)
	testSet(s.resolvedBits(i), p.num)
	rtt := max(time.Duration(ev.at-p.sent), time.Microsecond/10)
	s.stats.replies.Add(1)
	sl.recv++
	sl.rttSum += rtt
	sl.rttSq += float64(rtt) * float64(rtt)
	if sl.recv == 1 || rtt < sl.rttMin {
		sl.rttMin = rtt
	}
	if rtt > sl.rttMax {
		sl.rttMax = rtt
	}
	return s.settle(i, out)
}

func icmpError(v6 bool, typ, code byte, from netip.Addr) string {
	var what string
	switch {
	case !v6 && typ == v4TimeExceed, v6 && typ == v6TimeExceed:
		what = "time exceeded"
	case !v6 && code == 0, v6 && code == 0:
		what = "network unreachable"
	case !v6 && code == 1, v6 && code == 3:
		what = "host unreachable"
	case !v6 && code == 13, v6 && code == 1:
		what = "administratively prohibited"
	default:
		what = fmt.Sprintf("destination unreachable (code %d)", code)
	}
	return fmt.Sprintf("%s from %s", what, from)
}
