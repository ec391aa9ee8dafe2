package ssh

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
)

// good is a handshake that went as quick as the servers allow.
func good(a *aimd) sample {
	return sample{seq: a.ticket(), dial: 50 * time.Microsecond, took: 30 * time.Millisecond, timeout: DefaultConnectTimeout}
}

// While latency holds, the limit grows (slow start: by one per handshake)
// up to the ceiling and no further.
func TestAIMDGrowsToCeiling(t *testing.T) {
	t.Parallel()
	a := newAIMD(128)
	if a.slots() != initialHandshakes {
		t.Fatalf("starts at %d, want %d", a.slots(), initialHandshakes)
	}
	for i := 0; i < 50; i++ {
		a.observe(good(&a))
	}
	if a.slots() != initialHandshakes+50 {
		t.Fatalf("after 50 quick handshakes: %d, want %d (slow start)", a.slots(), initialHandshakes+50)
	}
	for i := 0; i < 1000; i++ {
		a.observe(good(&a))
	}
	if a.slots() != 128 {
		t.Fatalf("after 1050 quick handshakes: %d, want the ceiling 128", a.slots())
	}
	if small := newAIMD(4); small.slots() != 4 {
		t.Fatalf("a ceiling of 4 starts at %d, want 4", small.slots())
	}
}

// A rise in latency shrinks the limit by the decrease factor, once per
// round of handshakes: the handshakes started before the cut say nothing
// new. Then it grows again, by one per round (1/limit per handshake).
func TestAIMDShrinksOncePerRound(t *testing.T) {
	t.Parallel()
	a := newAIMD(128)
	for i := 0; i < 48; i++ {
		a.observe(good(&a))
	}
	if a.slots() != 64 {
		t.Fatalf("limit %d, want 64", a.slots())
	}
	// 64 handshakes start; they all come back slow.
	full := a.limit
	var started []uint64
	for i := 0; i < 64; i++ {
		started = append(started, a.ticket())
	}
	slow := func(seq uint64) sample {
		return sample{seq: seq, dial: 50 * time.Microsecond, took: 2 * time.Second, timeout: DefaultConnectTimeout}
	}
	for _, seq := range started {
		a.observe(slow(seq))
	}
	if want := int(full * decrease); a.slots() != want {
		t.Fatalf("after a round of slow handshakes: %d, want %d (one cut)", a.slots(), want)
	}
	// One started after the cut and slow again: a second cut.
	a.observe(slow(a.ticket()))
	if want := int(full * decrease * decrease); a.slots() != want {
		t.Fatalf("after a slow handshake of the next round: %d, want %d", a.slots(), want)
	}
	// Out of slow start: a round of quick handshakes adds about one.
	before := a.limit
	n := a.slots()
	for i := 0; i < n; i++ {
		a.observe(good(&a))
	}
	if grown := a.limit - before; grown < 0.9 || grown > 1.1 {
		t.Fatalf("a round of %d quick handshakes grew the limit by %.2f, want about 1", n, grown)
	}
}

// Each kind of rise: a drop before the banner (sshd's MaxStartups), a
// timeout, a handshake that took a quarter of its timeout, and queueing
// (many times the quickest, past the floor). Not a rise: a far host, whose
// handshake is slow because its round trips are.
func TestAIMDSignals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    sample
		rise bool
	}{
		{"dropped before the banner", sample{dial: time.Millisecond, congests: true}, true},
		{"quarter of the timeout", sample{dial: time.Millisecond, took: 2600 * time.Millisecond, timeout: 10 * time.Second}, true},
		{"queued: 20x the quickest", sample{dial: 50 * time.Microsecond, took: 600 * time.Millisecond, timeout: time.Minute}, true},
		{"slower but under the floor", sample{dial: 50 * time.Microsecond, took: 200 * time.Millisecond, timeout: time.Minute}, false},
		{"far host: 150 ms round trips", sample{dial: 150 * time.Millisecond, took: 950 * time.Millisecond, timeout: 10 * time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAIMD(128)
			for i := 0; i < 10; i++ {
				a.observe(good(&a))
			}
			before := a.limit
			tc.s.seq = a.ticket()
			a.observe(tc.s)
			if rose := a.limit < before; rose != tc.rise {
				t.Fatalf("limit %.1f -> %.1f; want a cut: %v", before, a.limit, tc.rise)
			}
		})
	}
}

// The quickest latency is the base, until the limit is down to one
// handshake at a time and that one is still slow: the machine got loaded
// since the start, and what one handshake alone takes is the base then,
// instead of cutting the limit to one for the rest of the sweep.
func TestAIMDRebasesWhenAlone(t *testing.T) {
	t.Parallel()
	a := newAIMD(128)
	for i := 0; i < 100; i++ {
		a.observe(good(&a)) // 30 ms
	}
	loaded := func() sample {
		return sample{seq: a.ticket(), dial: 50 * time.Microsecond, took: 400 * time.Millisecond, timeout: time.Minute}
	}
	for a.slots() > 1 {
		before := a.limit
		a.observe(loaded())
		if a.limit > before {
			t.Fatalf("400 ms against a 30 ms base grew the limit (%.1f -> %.1f)", before, a.limit)
		}
	}
	a.observe(loaded()) // alone, still 400 ms: the new base
	if want := 400*time.Millisecond - handshakeTrips*50*time.Microsecond; a.base != want {
		t.Fatalf("base %v after a lone 400 ms handshake, want %v", a.base, want)
	}
	for i := 0; i < 10; i++ {
		a.observe(loaded())
	}
	if a.slots() < 2 {
		t.Fatalf("limit %d after ten 400 ms handshakes at the new base, want it growing", a.slots())
	}
}

// The case of issue #17: one server answering 13 handshakes a second, in
// turn, and 5,000 hosts to reach with a 10 s connect timeout. A fixed 128
// in flight makes each handshake wait 128/13 = 9.8 s, at the edge of the
// timeout; adapting, none comes near it and the server stays busy. Played
// on a virtual clock: the server finishes one handshake every 1/13 s.
func TestAIMDOneSlowServer(t *testing.T) {
	t.Parallel()
	const (
		hosts   = 5000
		perSec  = 13
		timeout = DefaultConnectTimeout
	)
	service := time.Second / perSec
	a := newAIMD(DefaultMaxHandshakes)
	type flight struct {
		seq   uint64
		start time.Duration
	}
	var (
		now, serverFree time.Duration
		queue           []flight
		started, done   int
		worst           time.Duration
	)
	for done < hosts {
		for len(queue) < a.slots() && started < hosts {
			queue = append(queue, flight{a.ticket(), now})
			started++
		}
		f := queue[0]
		queue = queue[1:]
		serverFree = max(serverFree, f.start) + service
		now = serverFree
		took := now - f.start
		worst = max(worst, took)
		if took >= timeout {
			t.Fatalf("handshake %d took %v: timed out (limit %d)", done, took, a.slots())
		}
		a.observe(sample{seq: f.seq, dial: 50 * time.Microsecond, took: took, timeout: timeout})
		done++
	}
	if worst > timeout/2 {
		t.Errorf("slowest handshake %v, want under half the %v timeout", worst, timeout)
	}
	// The server never idled: 5,000 handshakes in 5,000 service times.
	if want := hosts * service; now > want+time.Second {
		t.Errorf("5,000 handshakes took %v, want about %v (the server's own pace)", now, want)
	}
	t.Logf("worst %v, final limit %d, %v in all", worst, a.slots(), now)
}

// The semaphore: at most the limit hold a slot, waiters get theirs in
// arrival order, and a waiter that gives up leaves no slot taken.
func TestHandshakeSlots(t *testing.T) {
	t.Parallel()
	h := newHandshakeSlots(2)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := h.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waiting := func(n int) func() bool {
		return func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.waiting) == n }
	}
	order := make(chan int, 2)
	for i := 1; i <= 2; i++ {
		go func() {
			if _, err := h.acquire(ctx); err == nil {
				order <- i
			}
		}()
		testwait.For(t, "a waiter to queue", waiting(i))
	}
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() { _, err := h.acquire(cctx); gaveUp <- err }()
	testwait.For(t, "the third waiter to queue", waiting(3))
	cancel()
	if err := <-gaveUp; err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want context canceled", err)
	}
	for want := 1; want <= 2; want++ {
		h.release(nil)
		select {
		case got := <-order:
			if got != want {
				t.Fatalf("waiter %d got a slot before waiter %d", got, want)
			}
		case <-time.After(testwait.Hang):
			t.Fatal("released slot not handed over")
		}
	}
	h.release(nil)
	h.release(nil)
	h.mu.Lock()
	inFlight, queued := h.inFlight, len(h.waiting)
	h.mu.Unlock()
	if inFlight != 0 || queued != 0 {
		t.Fatalf("%d in flight, %d queued once all is released; want 0 and 0 (the cancelled waiter took none)", inFlight, queued)
	}
}
