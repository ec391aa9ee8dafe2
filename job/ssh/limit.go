package ssh

import (
	"context"
	"sync"
	"time"
)

// Handshakes in flight adapt to how fast the servers answer, as TCP's
// congestion window adapts to the network: additive increase while the
// handshakes' latency holds, multiplicative decrease when it rises.
//
// What they adapt to is one sshd (or a few) playing many hosts, or a
// loaded machine: each handshake costs the server a process and a key
// exchange, so past the server's rate more handshakes in flight only make
// each one slower, until they all reach the connect timeout (5,000 hosts
// on one sshd with 128 in flight at 13 a second: every handshake took 10 s,
// and a fifth timed out). Kept under the latency where the server is
// saturated, the same rate gets through with each handshake well inside
// its timeout. Far hosts are not slowed for being far: the latency judged is
// the handshake's less what the network's round trips explain (the TCP
// connect's time, times handshakeTrips), so a fleet of distant, idle servers
// keeps the ceiling (Config.MaxHandshakes).
const (
	// initialHandshakes is the limit a job starts with (at most the
	// ceiling): a slow start then doubles it each round of handshakes
	// while latency holds.
	initialHandshakes = 16
	// handshakeTrips is how many network round trips an SSH handshake
	// and public-key authentication take (banner, kex, new keys, service,
	// "none", key query, signature), counted a little high.
	handshakeTrips = 6
	// latencyTolerance: a handshake slower than this many times the
	// quickest seen is a sign of queueing at the server...
	latencyTolerance = 3
	// ...unless it is within latencyFloor, what any server may take
	// without being loaded (a key exchange on a small CPU).
	latencyFloor = 250 * time.Millisecond
	// timeoutShare: a handshake that took more than this share of its
	// connect timeout is a rise, however quick the others: it came close
	// to failing.
	timeoutShare = 4
	// decrease is the factor a rise multiplies the limit by.
	decrease = 0.7
)

// sample is what one handshake says about the servers' load.
type sample struct {
	seq      uint64        // the handshake's ticket (handshakeSlots.acquire)
	dial     time.Duration // the TCP connect
	took     time.Duration // from connected to authenticated, or to the failure
	timeout  time.Duration // its connect timeout
	congests bool          // lost or timed out once connected: a rise whatever it took
}

// aimd is the controller: fed samples, it moves the limit. It keeps no
// clock of its own, so that tests feed it latencies and check the limit.
type aimd struct {
	ceiling float64
	limit   float64
	slow    bool   // slow start: +1 per good sample, until the first rise
	recover uint64 // samples of handshakes started before this ticket do not shrink again
	next    uint64 // the next ticket

	// base is the lowest excess latency seen: the servers' answer time
	// unloaded (-1: none yet).
	base time.Duration
}

func newAIMD(ceiling int) aimd {
	return aimd{ceiling: float64(ceiling), limit: float64(min(ceiling, initialHandshakes)), slow: true, base: -1}
}

// ticket numbers a handshake as it starts.
func (a *aimd) ticket() uint64 {
	a.next++
	return a.next
}

// slots is the limit, as a count of handshakes.
func (a *aimd) slots() int { return max(1, int(a.limit)) }

// observe feeds one sample.
func (a *aimd) observe(s sample) {
	excess := s.took - handshakeTrips*s.dial
	if excess < 0 {
		excess = 0
	}
	rise := s.congests || (s.timeout > 0 && s.dial+s.took > s.timeout/timeoutShare)
	if !s.congests {
		switch {
		case a.base < 0 || excess < a.base:
			a.base = excess
		case a.slots() == 1:
			// Down to one handshake at a time and still slow: the servers
			// are slower than they were (the machine got loaded), not
			// queueing; what one handshake alone takes is the base now.
			a.base = excess
		}
		if excess > max(latencyTolerance*a.base, latencyFloor) {
			rise = true
		}
	}
	if rise {
		if s.seq >= a.recover { // once per round of handshakes, as TCP once per RTT
			a.limit = max(1, a.limit*decrease)
			a.slow = false
			a.recover = a.next + 1
		}
		return
	}
	if a.slow {
		a.limit++
	} else {
		a.limit += 1 / a.limit
	}
	a.limit = min(a.limit, a.ceiling)
}

// handshakeSlots is the semaphore the handshakes of a job share: at most
// the controller's limit hold a slot, the others wait in arrival order.
type handshakeSlots struct {
	mu       sync.Mutex
	ctl      aimd
	inFlight int
	waiting  []*slotWaiter // FIFO; head at 0
}

type slotWaiter struct {
	ready chan struct{} // closed when the slot is handed over
	seq   uint64
	gone  bool // gave up waiting (under mu)
}

func newHandshakeSlots(ceiling int) *handshakeSlots {
	return &handshakeSlots{ctl: newAIMD(ceiling)}
}

// acquire waits for a slot; the ticket goes back with release's sample.
func (h *handshakeSlots) acquire(ctx context.Context) (uint64, error) {
	h.mu.Lock()
	if h.inFlight < h.ctl.slots() && len(h.waiting) == 0 {
		h.inFlight++
		seq := h.ctl.ticket()
		h.mu.Unlock()
		return seq, nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	h.waiting = append(h.waiting, w)
	h.mu.Unlock()
	select {
	case <-w.ready:
		return w.seq, nil
	case <-ctx.Done():
	}
	h.mu.Lock()
	select {
	case <-w.ready: // handed over meanwhile: give it back
		h.inFlight--
		h.grant()
	default:
		w.gone = true
	}
	h.mu.Unlock()
	return 0, ctxErr(ctx, "waiting for a handshake slot")
}

// release gives a slot back; s, when not nil, is what its handshake said.
func (h *handshakeSlots) release(s *sample) {
	h.mu.Lock()
	h.inFlight--
	if s != nil {
		h.ctl.observe(*s)
	}
	h.grant()
	h.mu.Unlock()
}

// grant hands free slots to waiters, oldest first (under mu).
func (h *handshakeSlots) grant() {
	for h.inFlight < h.ctl.slots() && len(h.waiting) > 0 {
		w := h.waiting[0]
		h.waiting[0] = nil
		h.waiting = h.waiting[1:]
		if len(h.waiting) == 0 {
			h.waiting = nil // let the backing array go
		}
		if w.gone {
			continue
		}
		h.inFlight++
		w.seq = h.ctl.ticket()
		close(w.ready)
	}
}

// limit is the number of handshakes allowed in flight now.
func (h *handshakeSlots) limit() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ctl.slots()
}
