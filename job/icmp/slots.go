// Slots: the state of the targets in flight, one slot each, reused with a
// new generation. The sender allocates them (schedule); whichever goroutine
// resolves a target's last request settles it, which frees its slot. All of
// it is under sweep.mu.

package icmp

import (
	"net/netip"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// slot is the state of one target in flight. Slots are reused; gen tells a
// queued timeout or resend of a previous occupant from the current one.
type slot struct {
	t       target.Target
	addr    netip.Addr
	gen     uint32
	live    bool
	sent    int32
	recv    int32
	pending int32 // sent, neither answered nor timed out nor failed
	startNs int64
	rttSum  time.Duration
	rttMin  time.Duration
	rttMax  time.Duration
	rttSq   float64    // sum of squared RTTs, ns², for the standard deviation
	unreach string     // first ICMP error quoting our request
	sendErr *sendError // first request that could not leave
	fails   int32      // requests that failed to leave
}

// alloc takes a free slot, growing the table when none is (the engine's
// concurrency bounds how far).
func (s *sweep) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		clear(s.bits[int(i)*2*s.words : int(i+1)*2*s.words])
		return i
	}
	s.slots = append(s.slots, slot{})
	s.bits = append(s.bits, make([]uint64, 2*s.words)...)
	return uint32(len(s.slots) - 1)
}

// resolved and answered are the per-slot bitsets; mu is held.
func (s *sweep) resolvedBits(i uint32) []uint64 {
	b := int(i) * 2 * s.words
	return s.bits[b : b+s.words]
}

func (s *sweep) answeredBits(i uint32) []uint64 {
	b := int(i)*2*s.words + s.words
	return s.bits[b : b+s.words]
}

func testSet(b []uint64, n uint16) bool {
	w, m := n/64, uint64(1)<<(n%64)
	was := b[w]&m != 0
	b[w] |= m
	return was
}

// settle records that a request of slot i is resolved (answered, timed out,
// failed); when the target has nothing left it is finished. mu is held.
func (s *sweep) settle(i uint32, out []job.Result) []job.Result {
	sl := &s.slots[i]
	sl.pending--
	if sl.pending > 0 || int(sl.sent) < s.count {
		return out
	}
	out = append(out, s.result(sl))
	sl.live = false
	sl.gen++
	sl.t = target.Target{}
	s.free = append(s.free, i)
	return out
}
