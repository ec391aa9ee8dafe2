package watch

import (
	"context"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"runtime"
	"testing"

	"github.com/fanout/fanout/job"
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
