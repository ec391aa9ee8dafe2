package icmp

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// An echo request is the 8-byte ICMP header followed by our payload:
//
//	[0:8]   target index in the sweep
//	[8:12]  slot of the in-flight table the target occupies
//	[12:14] probe number of the target (0..Count-1)
//	[14:16] zero
//	[16:24] send time, nanoseconds since the sweep began
//	[24:32] check value: SipHash-2-4 under a per-sweep random key of the
//	        fields above, the echo sequence and the probed address
//
// then filler up to PayloadSize. A reply is counted only when its check
// value verifies, so stray, forged or another process's replies never are;
// the sequence number is covered but not relied upon (it wraps at 65,536).
const (
	icmpHeaderLen = 8
	minPayload    = 32
)

// Echo types and the error types that quote our probe back.
const (
	v4EchoReply   = 0
	v4Unreachable = 3
	v4EchoRequest = 8
	v4TimeExceed  = 11
	v6Unreachable = 1
	v6TimeExceed  = 3
	v6EchoRequest = 128
	v6EchoReply   = 129
)

// probe is what an echo payload says about itself once verified.
type probe struct {
	index uint64
	slot  uint32
	num   uint16
	sent  int64 // ns since the sweep began
}

// key is the per-sweep secret of the check value.
type key struct{ k0, k1 uint64 }

// sum is SipHash-2-4 of the probe fields, the sequence and the address.
func (k key) sum(p probe, seq uint16, dst netip.Addr) uint64 {
	a := dst.As16()
	m := [5]uint64{
		p.index,
		uint64(p.slot)<<32 | uint64(p.num)<<16 | uint64(seq),
		uint64(p.sent),
		binary.LittleEndian.Uint64(a[0:8]),
		binary.LittleEndian.Uint64(a[8:16]),
	}
	return siphash24(k.k0, k.k1, m[:], 40)
}

// marshal writes an echo request for p into b (len >= 8+minPayload) and
// returns it; filler bytes beyond the check value are left as they are.
func (k key) marshal(b []byte, v6 bool, id, seq uint16, p probe, dst netip.Addr) []byte {
	if v6 {
		b[0] = v6EchoRequest
	} else {
		b[0] = v4EchoRequest
	}
	b[1] = 0
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	d := b[icmpHeaderLen:]
	binary.BigEndian.PutUint64(d[0:], p.index)
	binary.BigEndian.PutUint32(d[8:], p.slot)
	binary.BigEndian.PutUint16(d[12:], p.num)
	d[14], d[15] = 0, 0
	binary.BigEndian.PutUint64(d[16:], uint64(p.sent))
	binary.BigEndian.PutUint64(d[24:], k.sum(p, seq, dst))
	if !v6 {
		// The kernel fills ICMPv6 checksums (pseudo-header) and those of
		// datagram sockets; a raw IPv4 socket sends what we give it.
		binary.BigEndian.PutUint16(b[2:], checksum(b))
	}
	return b
}

// echo is an echo message's fields, before its check value is verified.
type echo struct {
	p   probe
	seq uint16
	mac uint64
}

// parseEcho reads an echo request or reply; ok is false when it cannot be
// one of ours.
func parseEcho(icmpMsg []byte) (e echo, ok bool) {
	if len(icmpMsg) < icmpHeaderLen+minPayload {
		return e, false
	}
	d := icmpMsg[icmpHeaderLen:]
	if d[14] != 0 || d[15] != 0 {
		return e, false
	}
	return echo{
		p: probe{
			index: binary.BigEndian.Uint64(d[0:]),
			slot:  binary.BigEndian.Uint32(d[8:]),
			num:   binary.BigEndian.Uint16(d[12:]),
			sent:  int64(binary.BigEndian.Uint64(d[16:])),
		},
		seq: binary.BigEndian.Uint16(icmpMsg[6:]),
		mac: binary.BigEndian.Uint64(d[24:]),
	}, true
}

// valid reports whether e is a request we sent to dst (or its reply).
func (k key) valid(e echo, dst netip.Addr) bool { return e.mac == k.sum(e.p, e.seq, dst) }

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// siphash24 is SipHash-2-4 (Aumasson & Bernstein) of the little-endian
// words m, which stand for a message of n bytes (n == 8*len(m)).
func siphash24(k0, k1 uint64, m []uint64, n int) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	for _, w := range m {
		v3 ^= w
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= w
	}
	b := uint64(n) << 56
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
