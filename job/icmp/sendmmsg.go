// The sender's writes: a batch of requests marshalled into reusable
// buffers and written with sendmmsg, one socket per family, waiting out a
// full queue; a request that cannot leave goes to failed (senderr.go).
// Run by the sender only.

package icmp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// send writes batch with sendmmsg, one socket per family.
func (s *sweep) send(ctx context.Context, batch []outgoing, bufs *sendBufs) {
	if s.limiter != nil {
		if err := s.limiter.WaitN(ctx, len(batch)); err != nil {
			return // canceled: the sweep is ending
		}
	}
	s.stamp(batch)
	for fam := range 2 {
		c := s.conns[fam]
		if c == nil {
			continue
		}
		ms := bufs.msgs[:0]
		idx := bufs.idx[:0]
		for k, o := range batch {
			if o.addr.Is6() != (fam == 1) {
				continue
			}
			n := len(ms)
			b := s.key.marshal(bufs.pkts[n], c.v6, s.id, o.seq, o.p, o.addr)
			m := &bufs.msgs[:n+1][n]
			m.Buffers = bufs.vec[n : n+1]
			m.Buffers[0] = b
			// The zone is the scope id of a link-local destination.
			if c.raw {
				a := &bufs.ipAddrs[n]
				a.IP, a.Zone = setIP(a.IP, o.addr), o.addr.Zone()
				m.Addr = a
			} else {
				a := &bufs.udpAddrs[n]
				a.IP, a.Zone = setIP(a.IP, o.addr), o.addr.Zone()
				m.Addr = a
			}
			ms = bufs.msgs[:n+1]
			idx = append(idx, k)
		}
		sent, open := writeAll(c.b, ms, time.Millisecond, func(k int, err error) {
			s.failed(batch[idx[k]], s.sendFailure(c.v6, batch[idx[k]].addr, err))
		})
		s.stats.sent.Add(uint64(sent))
		if !open {
			return
		}
	}
}

// maxStall bounds how many times in a row a transient send error (ENOBUFS,
// EAGAIN) is waited out before the message it stops at counts as failed.
const maxStall = 1000

// errNoProgress stands for a sendmmsg that neither sent nor failed.
var errNoProgress = errors.New("sendmmsg sent nothing and reported no error")

// writeAll writes ms with w's sendmmsg, which stops at the first message
// that cannot leave: failed gets that message's index in ms and its error,
// and the messages after it are written on. A transient error is waited out
// (pause, then again), at most maxStall times in a row. It returns how many
// messages left, and open false when the socket was closed (the rest were
// not tried: the sweep is ending).
//
// On error sendmmsg returns -1, not a count; after a partial send it returns
// the count and no error, and the next call, starting at the message that
// stopped it, reports that message's error.
func writeAll(w batchWriter, ms []ipv4.Message, pause time.Duration, failed func(k int, err error)) (sent int, open bool) {
	stall := 0
	for off := 0; off < len(ms); {
		n, err := w.WriteBatch(ms[off:], 0)
		n = min(max(n, 0), len(ms)-off) // -1 on error; never past what was asked
		off += n
		sent += n
		if n > 0 {
			stall = 0
			if err == nil {
				continue
			}
		}
		if errors.Is(err, net.ErrClosed) {
			return sent, false
		}
		if off == len(ms) {
			break
		}
		if err == nil || transientSendErr(err) {
			if stall < maxStall {
				stall++
				time.Sleep(pause) // the queue drains; try again
				continue
			}
			if err == nil {
				err = errNoProgress
			}
		}
		// ms[off] cannot leave: it alone fails, the rest go on.
		failed(off, err)
		off++
		stall = 0
	}
	return sent, true
}

// batchWriter is sendmmsg: ipv4.PacketConn and ipv6.PacketConn.
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func transientSendErr(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
}

// sendBufs are the sender's reusable packet and message buffers.
type sendBufs struct {
	pkts     [batchMax][]byte
	vec      [batchMax][]byte
	msgs     [batchMax]ipv4.Message
	idx      []int
	ipAddrs  [batchMax]net.IPAddr
	udpAddrs [batchMax]net.UDPAddr
}

func newSendBufs(payload int) *sendBufs {
	b := &sendBufs{idx: make([]int, 0, batchMax)}
	for i := range b.pkts {
		p := make([]byte, icmpHeaderLen+payload)
		for k := icmpHeaderLen + minPayload; k < len(p); k++ {
			p[k] = byte(k)
		}
		b.pkts[i] = p
	}
	return b
}

func setIP(ip net.IP, a netip.Addr) net.IP {
	if a.Is4() {
		v := a.As4()
		return append(ip[:0], v[:]...)
	}
	v := a.As16()
	return append(ip[:0], v[:]...)
}
