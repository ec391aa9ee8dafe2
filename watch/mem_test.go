package watch

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/icmp"
	"github.com/fanout/fanout/target"
)

// memProbe is an Observer that reads the heap at the end of chosen rounds,
// after a full GC: what the watch holds then, and what it allocated so far.
type memProbe struct {
	at    map[uint64]bool
	stats map[uint64]runtime.MemStats
}

func (*memProbe) RoundStart(Round)          {}
func (*memProbe) Result(uint64, job.Result) {}
func (*memProbe) Change(Change)             {}
func (p *memProbe) RoundEnd(r Round) {
	if !p.at[r.N] {
		return
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	p.stats[r.N] = m
}

// TestRoundMemoryBounded: a watch over a fixed set holds the same heap at
// round 50 as at round 5 (no growth with the rounds: issue 16's steady
// state, without the noise of RSS on a loaded machine), and a round
// allocates a bounded amount per target.
func TestRoundMemoryBounded(t *testing.T) {
	const n = 1 << 13
	set := parse(t, "10.0.0.0/19")
	if set.Len() != n {
		t.Fatalf("%d targets", set.Len())
	}
	p := &memProbe{at: map[uint64]bool{5: true, 50: true}, stats: map[uint64]runtime.MemStats{}}
	// Every 8th target flips between rounds: changes are made and reported.
	j := &scripted{result: func(round uint64, tg target.Target) job.Result {
		return upOrDown(tg, tg.Index%8 != 0 || round%2 == 0)
	}}
	var err error
	testwait.Returns(t, "the watch", func() {
		_, err = Run(context.Background(), set, j, Options{Watch: "w1", Every: time.Nanosecond, Rounds: 50,
			Observers: []Observer{j, p}})
	})
	if err != nil {
		t.Fatal(err)
	}
	m5, m50 := p.stats[5], p.stats[50]
	bytes := float64(m50.TotalAlloc-m5.TotalAlloc) / 45 / n
	allocs := float64(m50.Mallocs-m5.Mallocs) / 45 / n
	t.Logf("heap at round 5: %d B, at round 50: %d B; %.0f B and %.1f allocations per target-round",
		m5.HeapAlloc, m50.HeapAlloc, bytes, allocs)
	if grow := int64(m50.HeapAlloc) - int64(m5.HeapAlloc); grow > 128<<10 {
		t.Errorf("the heap grew by %d B from round 5 to round 50", grow)
	}
	// Measured: 361 B and 3.1 allocations, nearly all the engine's and the
	// job's per target (its Result, the target's name); the watch's own
	// per-target state is allocated once, its changes' ids only on change.
	if bytes > 1024 || allocs > 6 {
		t.Errorf("a round allocates %.0f B and %.1f allocations per target, want at most 1024 B and 6", bytes, allocs)
	}
}

// TestPingRoundAllocation: a ping watch (the real ICMP job on loopback,
// the engine's batch path, spread) allocates little per round once it runs:
// the engine's queue of Results and the job's tables are reused round after
// round, a start takes its rate token without allocating, and a reply's
// source address is read without allocating. Issue 16's
// steady state: a /16 watch whose every round left ~16 MB of garbage (a 2.5
// MB Results queue, the slot and queue tables regrown, a rate Reservation
// per start) made GC cycles whose peaks drifted up, and VmHWM with them.
func TestPingRoundAllocation(t *testing.T) {
	if err := icmp.Check(icmp.SocketAuto); err != nil {
		t.Skipf("ping: %v", err)
	}
	const n = 1 << 12
	set := parse(t, "127.0.16.0/20") // loopback: every address answers
	j, err := icmp.New(icmp.Config{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const first, last = 5, 25
	p := &memProbe{at: map[uint64]bool{first: true, last: true}, stats: map[uint64]runtime.MemStats{}}
	var up, rounds int
	count := &roundCount{end: func(r Round) { up += r.Up; rounds++ }}
	testwait.Returns(t, "the watch", func() {
		// ping's CLI concurrency: the Results queue at its 8,192 cap.
		_, err = Run(context.Background(), set, j, Options{Watch: "w1", Every: 50 * time.Millisecond, Rounds: last,
			Spread: true, TargetTime: 25 * time.Millisecond,
			Engine:    engine.Options{Concurrency: 1 << 14, Timeout: 2 * time.Second},
			Observers: []Observer{p, count}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if up < rounds*n*9/10 {
		t.Fatalf("%d of %d target-rounds up: loopback does not answer", up, rounds*n)
	}
	m0, m1 := p.stats[first], p.stats[last]
	perRound := float64(m1.TotalAlloc-m0.TotalAlloc) / (last - first)
	t.Logf("a round of %d targets allocates %.0f KB, %.0f B per target, %.1f allocations per target",
		n, perRound/1024, perRound/n, float64(m1.Mallocs-m0.Mallocs)/(last-first)/n)
	// Measured: 53 B a target (78-88 under -race), mostly the name of each
	// Result (job.For); before the reuse, 1,334 B.
	if perRound > 160*n {
		t.Errorf("a round allocates %.0f B per target, want at most 160", perRound/n)
	}
}

// roundCount calls end at each RoundEnd.
type roundCount struct{ end func(Round) }

func (*roundCount) RoundStart(Round)          {}
func (*roundCount) Result(uint64, job.Result) {}
func (*roundCount) Change(Change)             {}
func (c *roundCount) RoundEnd(r Round)        { c.end(r) }
