package engine

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Runs one after another that share Buffers reuse one queue of Results:
// a Run at the queue's full size (8,192 Results, 2.5 MB) allocates a small
// part of it, where each Run used to allocate its own (issue 16: a watch's
// rounds, whose garbage made its peak RSS drift up).
func TestBuffersReusedAcrossRuns(t *testing.T) {
	const n, runs = 64, 20
	opts := Options{Concurrency: 1 << 14, Buffers: NewBuffers()}
	run := func() {
		if err := Run(context.Background(), addrs(n), target.Identity(n), &stampBatch{}, opts, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	run() // the first Run fills the Buffers
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range runs {
		run()
	}
	runtime.ReadMemStats(&m1)
	per := (m1.TotalAlloc - m0.TotalAlloc) / runs
	t.Logf("a Run of %d targets allocates %d B", n, per)
	if per > 256<<10 {
		t.Errorf("a Run sharing Buffers allocates %d B, want under 256 KB (its queue is not reused)", per)
	}
}

// lateBatch emits its targets, then hands its emit to the test, which
// calls it after RunBatch returned, as a misbehaving job could.
type lateBatch struct{ emit func(job.Result) }

func (*lateBatch) Kind() string                                        { return "late" }
func (*lateBatch) Run(ctx context.Context, t target.Target) job.Result { return up(t) }
func (b *lateBatch) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	for t := range in {
		emit(up(t))
	}
	b.emit = emit
	return nil
}

// A Result a job emits after its RunBatch returned never reaches the next
// Run that borrows the same queue: it would be a previous round's Result
// counted in this one.
func TestBuffersDropLateEmits(t *testing.T) {
	bufs := NewBuffers()
	j := &lateBatch{}
	if err := Run(context.Background(), addrs(4), target.Identity(4), j, Options{Buffers: bufs}, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The emit selects between the queue (it has room) and its Run's end:
	// some of these land in the queue.
	stale := up(target.Target{Index: 1000})
	for range 64 {
		j.emit(stale)
	}
	var (
		got []uint64
		err error
	)
	// A late Result taken for this Run's would free a slot it never took:
	// the Run would hang.
	testwait.Returns(t, "the second Run", func() {
		err = Run(context.Background(), addrs(4), target.Identity(4), &stampBatch{}, Options{Buffers: bufs}, nil, func(r job.Result) {
			got = append(got, r.Index)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("the second Run emitted %v, want its 4 targets only", got)
	}
	for _, i := range got {
		if i >= 4 {
			t.Fatalf("the second Run emitted %v: index %d is the first Run's late emit", got, i)
		}
	}
}

// A start takes its token without allocating (rate.Limiter's Reserve
// allocated one per start: 48 B a target of every round of a watch).
func TestPacerReserveAllocatesNothing(t *testing.T) {
	p := NewPacer(1e9)
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { p.reserve(now) }); n != 0 {
		t.Errorf("reserve allocates %.1f times, want 0", n)
	}
}

// A cancelled start gives its token back: the next start is due when the
// cancelled one was, not a token later.
func TestPacerCancel(t *testing.T) {
	p := NewPacer(1) // one start a second, bucket of one, one token now
	now := time.Now()
	if due := p.reserve(now); !due.Equal(now) {
		t.Fatalf("first start due %v after now, want now", due.Sub(now))
	}
	due := p.reserve(now)
	if d := due.Sub(now); d != time.Second {
		t.Fatalf("second start due in %v, want 1s", d)
	}
	p.cancel(due)
	if again := p.reserve(now); !again.Equal(due) {
		t.Errorf("after a cancel the next start is due in %v, want %v", again.Sub(now), due.Sub(now))
	}
}
