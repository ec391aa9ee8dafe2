package engine

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// addrs is a Set of n loopback addresses 127.0.0.0 + i (never probed here).
type addrs uint64

func (s addrs) Len() uint64 { return uint64(s) }
func (s addrs) At(i uint64) target.Target {
	b := netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)})
	return target.Target{Index: i, Addr: b}
}

// funcJob adapts a function to job.Job.
type funcJob func(ctx context.Context, t target.Target) job.Result

func (funcJob) Kind() string { return "test" }
func (f funcJob) Run(ctx context.Context, t target.Target) job.Result {
	return f(ctx, t)
}

func up(t target.Target) job.Result {
	r := job.For(t, "test")
	r.Status = job.Up
	return r
}

func down(t target.Target, c job.Class) job.Result {
	r := job.For(t, "test")
	r.Status, r.Class = job.Down, c
	return r
}

// collect runs a sweep and returns its Results by index, failing on a
// duplicate emit.
func collect(t *testing.T, ctx context.Context, n uint64, j job.Job, opts Options, c *Counters) (map[uint64]job.Result, error) {
	t.Helper()
	got := map[uint64]job.Result{}
	var dup []uint64
	err := Run(ctx, addrs(n), target.Identity(n), j, opts, c, func(r job.Result) {
		if _, ok := got[r.Index]; ok {
			dup = append(dup, r.Index)
		}
		got[r.Index] = r
	})
	if len(dup) > 0 {
		t.Fatalf("indexes emitted twice: %v", dup)
	}
	return got, err
}

// maxTracker records the largest number of concurrent holders.
type maxTracker struct{ cur, max atomic.Int64 }

func (m *maxTracker) enter() {
	n := m.cur.Add(1)
	for {
		old := m.max.Load()
		if n <= old || m.max.CompareAndSwap(old, n) {
			return
		}
	}
}
func (m *maxTracker) leave() { m.cur.Add(-1) }

func TestConcurrencyBound(t *testing.T) {
	t.Parallel()
	for _, conc := range []int{1, 7, 50} {
		for _, batch := range []bool{false, true} {
			name := "run"
			if batch {
				name = "batch"
			}
			t.Run(name+"/"+itoa(conc), func(t *testing.T) {
				t.Parallel()
				const n = 400
				var m maxTracker
				var started atomic.Int64
				var j job.Job = funcJob(func(ctx context.Context, tg target.Target) job.Result {
					m.enter()
					defer m.leave()
					// Hold the slot until the bound is reached (or every
					// target has started): the bound is approached because
					// the targets wait for it, not because the machine
					// happened to be quick enough.
					last := started.Add(1) >= n
					if !last && !testwait.Until(testwait.Hang, func() bool { return m.cur.Load() >= int64(conc) || started.Load() >= n }) {
						t.Errorf("%d in flight after %v, bound %d never reached", m.cur.Load(), testwait.Hang, conc)
					}
					return up(tg)
				})
				if batch {
					j = &tickBatch{track: &m}
				}
				var c Counters
				got, err := collect(t, context.Background(), n, j, Options{Concurrency: conc}, &c)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != n {
					t.Fatalf("%d Results, want %d", len(got), n)
				}
				if mx := m.max.Load(); mx > int64(conc) {
					t.Fatalf("%d in flight at once, bound is %d", mx, conc)
				} else if mx < int64(conc+1)/2 {
					t.Fatalf("at most %d in flight, bound %d was never approached: the test proves nothing", mx, conc)
				}
				if c.Started.Load() != n || c.Done.Load() != n || c.Up.Load() != n || c.InFlight.Load() != 0 {
					t.Fatalf("counters started=%d done=%d up=%d inflight=%d, want %d %d %d 0",
						c.Started.Load(), c.Done.Load(), c.Up.Load(), c.InFlight.Load(), n, n, n)
				}
			})
		}
	}
}

// tickBatch is a fake batch job: it holds what it receives and emits it all
// every millisecond, from its own goroutine, counting what it holds.
type tickBatch struct {
	track *maxTracker
	cfg   job.BatchConfig
	// failAfter > 0: return an error after receiving that many targets.
	failAfter int
	// hold: indexes for which nothing is emitted until ctx is done, and then
	// a down Result (which the engine must drop).
	hold func(i uint64) bool
}

func (*tickBatch) Kind() string { return "tick" }
func (*tickBatch) Run(ctx context.Context, t target.Target) job.Result {
	return up(t)
}
func (b *tickBatch) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	b.cfg = cfg
	var pending, held []target.Target
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	received := 0
	flush := func() {
		for _, t := range pending {
			if b.track != nil {
				b.track.leave()
			}
			emit(up(t))
		}
		pending = pending[:0]
	}
	for {
		select {
		case t, ok := <-in:
			if !ok {
				flush()
				if len(held) == 0 {
					return nil
				}
				in = nil
				continue
			}
			received++
			if b.failAfter > 0 && received >= b.failAfter {
				return errors.New("socket gone")
			}
			if b.hold != nil && b.hold(t.Index) {
				held = append(held, t)
				continue
			}
			if b.track != nil {
				b.track.enter()
			}
			pending = append(pending, t)
		case <-tick.C:
			// Tracked: hold targets until every slot is taken, so that
			// the bound is reached whatever the machine's speed; the
			// input's close flushes the rest.
			if b.track == nil || len(pending) >= b.cfg.Concurrency {
				flush()
			}
		case <-ctx.Done():
			for _, t := range held {
				emit(down(t, job.ClassTimeout))
			}
			return ctx.Err()
		}
	}
}

var _ job.Batcher = (*tickBatch)(nil)

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestRate(t *testing.T) {
	// Not parallel: a rate test wants the CPU it measures.
	for _, tc := range []struct {
		batch bool
		slack time.Duration
	}{{false, 0}, {true, 0}, {false, 50 * time.Millisecond}, {true, 50 * time.Millisecond}} {
		batch := tc.batch
		const n, perSec = 200, 200.0
		var (
			mu     sync.Mutex
			starts []time.Time
		)
		var j job.Job = funcJob(func(ctx context.Context, tg target.Target) job.Result {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return up(tg)
		})
		if batch {
			j = &stampBatch{stamp: func() {
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
			}}
		}
		begin := time.Now()
		got, err := collect(t, context.Background(), n, j, Options{Rate: perSec, PaceSlack: tc.slack}, nil)
		if err != nil || len(got) != n {
			t.Fatalf("batch=%v: %d Results, err %v", batch, len(got), err)
		}
		// The limiter holds each start back: the k-th (from 1) cannot come
		// before (k-burst)/perSec (less PaceSlack), however the machine schedules. A busy
		// machine only delays starts, so this holds under load; no upper
		// bound, which would measure the machine (and a window count would
		// too: starts held up together are stamped together).
		sort.Slice(starts, func(a, b int) bool { return starts[a].Before(starts[b]) })
		for k := burst(perSec) + 1; k <= len(starts); k++ {
			earliest := time.Duration(float64(k-burst(perSec))/perSec*float64(time.Second)) - tc.slack
			if at := starts[k-1].Sub(begin); at < earliest-5*time.Millisecond {
				t.Fatalf("batch=%v slack=%v: start %d at %v, rate %v/s (burst %d) allows it at %v at the soonest", batch, tc.slack, k, at, perSec, burst(perSec), earliest)
			}
		}
	}
}

// stampBatch emits each target at once, stamping when it arrived.
type stampBatch struct{ stamp func() }

func (*stampBatch) Kind() string { return "stamp" }
func (*stampBatch) Run(ctx context.Context, t target.Target) job.Result {
	return up(t)
}
func (b *stampBatch) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	for t := range in {
		if b.stamp != nil {
			b.stamp()
		}
		emit(up(t))
	}
	return nil
}

// A job that retried inside one attempt (ssh handshake resets) keeps that
// count, on top of the engine's own attempts.
func TestJobCountsItsOwnAttempts(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
		r := down(tg, job.ClassTimeout)
		if calls.Add(1) == 2 {
			r = up(tg)
		}
		r.Attempts = 3
		return r
	})
	got, err := collect(t, context.Background(), 1, j, Options{Retries: 2, Backoff: time.Millisecond}, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("%d Results, err %v", len(got), err)
	}
	if got[0].Attempts != 4 || got[0].Status != job.Up {
		t.Fatalf("Attempts %d status %s; want 4 (one engine retry + the job's 3), up", got[0].Attempts, got[0].Status)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		outcomes []job.Class // per attempt; "up" ends; the last repeats
		retries  int
		want     int // attempts
		status   job.Status
	}{
		{"timeout retried", []job.Class{job.ClassTimeout}, 3, 4, job.Down},
		{"refused retried", []job.Class{job.ClassRefused}, 2, 3, job.Down},
		{"unreachable not retried", []job.Class{job.ClassUnreachable}, 3, 1, job.Down},
		{"exit not retried", []job.Class{job.ClassExit}, 3, 1, job.Down},
		{"auth not retried", []job.Class{job.ClassAuth}, 3, 1, job.Error},
		{"up once", []job.Class{"up"}, 3, 1, job.Up},
		{"refused then up", []job.Class{job.ClassRefused, job.ClassTimeout, "up"}, 5, 3, job.Up},
		{"no retries asked", []job.Class{job.ClassTimeout}, 0, 1, job.Down},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 20
			calls := make([]atomic.Int32, n)
			j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
				k := int(calls[tg.Index].Add(1)) - 1
				c := tc.outcomes[min(k, len(tc.outcomes)-1)]
				switch {
				case c == "up":
					return up(tg)
				case c == job.ClassAuth:
					r := down(tg, c)
					r.Status = job.Error
					return r
				}
				return down(tg, c)
			})
			got, err := collect(t, context.Background(), n, j, Options{Retries: tc.retries, Backoff: time.Millisecond}, nil)
			if err != nil || len(got) != n {
				t.Fatalf("%d Results, err %v", len(got), err)
			}
			for i, r := range got {
				if r.Attempts != tc.want || int(calls[i].Load()) != tc.want {
					t.Fatalf("target %d: Attempts %d, job called %d times, want %d", i, r.Attempts, calls[i].Load(), tc.want)
				}
				if r.Status != tc.status {
					t.Fatalf("target %d: status %s, want %s", i, r.Status, tc.status)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	// The rule itself (doubling, cap, jitter) is internal/backoff's test;
	// here, that a sweep's retries follow it: gaps between attempts double.
	var (
		mu    sync.Mutex
		times []time.Time
	)
	j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return down(tg, job.ClassRefused)
	})
	if _, err := collect(t, context.Background(), 1, j, Options{Retries: 3, Backoff: 40 * time.Millisecond}, nil); err != nil {
		t.Fatal(err)
	}
	if len(times) != 4 {
		t.Fatalf("%d attempts, want 4", len(times))
	}
	// Only the floor is checked: a timer never fires early, but a loaded
	// machine may wake it late. Without doubling the last gap would be
	// under 60ms.
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		want := 40 * time.Millisecond << (i - 1)
		if gap < want/2 {
			t.Fatalf("gap before attempt %d = %v, want at least %v (%v less half)", i+1, gap, want/2, want)
		}
	}
}

func TestSkip(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		var ran atomic.Int64
		var j job.Job = funcJob(func(ctx context.Context, tg target.Target) job.Result {
			ran.Add(1)
			if tg.Index%2 == 0 {
				t.Errorf("skipped index %d was run", tg.Index)
			}
			return up(tg)
		})
		if batch {
			j = &stampBatch{stamp: func() { ran.Add(1) }}
		}
		var c Counters
		got, err := collect(t, context.Background(), 100, j, Options{Skip: func(i uint64) bool { return i%2 == 0 }}, &c)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 50 || ran.Load() != 50 {
			t.Fatalf("batch=%v: %d Results, %d runs, want 50", batch, len(got), ran.Load())
		}
		for i := range got {
			if i%2 == 0 {
				t.Fatalf("batch=%v: skipped index %d emitted", batch, i)
			}
		}
		if c.Skipped.Load() != 50 || c.Total.Load() != 50 || c.Done.Load() != 50 {
			t.Fatalf("batch=%v: skipped=%d total=%d done=%d, want 50 each", batch, c.Skipped.Load(), c.Total.Load(), c.Done.Load())
		}
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		class job.Class // what the job reports when its ctx ends
		want  job.Class
	}{
		{"job says nothing", job.ClassNone, job.ClassTimeout},
		{"job says canceled", job.ClassCanceled, job.ClassTimeout},
		{"job says timeout", job.ClassTimeout, job.ClassTimeout},
		{"job's own class kept", job.ClassExit, job.ClassExit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
				select {
				case <-ctx.Done():
					r := job.For(tg, "test")
					r.Status, r.Class = job.Down, tc.class
					return r
				case <-time.After(2 * testwait.Hang):
					return up(tg) // the timeout never came: a hang, caught below
				}
			})
			var (
				got map[uint64]job.Result
				err error
			)
			testwait.Returns(t, "a sweep with a 50ms timeout", func() {
				got, err = collect(t, context.Background(), 5, j, Options{Timeout: 50 * time.Millisecond}, nil)
			})
			if err != nil || len(got) != 5 {
				t.Fatalf("%d Results, err %v", len(got), err)
			}
			for _, r := range got {
				if r.Status != job.Down || r.Class != tc.want {
					t.Fatalf("got %s/%s, want down/%s", r.Status, r.Class, tc.want)
				}
				if d := r.End.Sub(r.Start); d < 50*time.Millisecond {
					t.Fatalf("Start..End = %v, before the 50ms timeout", d)
				}
			}
		})
	}
}

func TestFill(t *testing.T) {
	t.Parallel()
	j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
		switch tg.Index {
		case 0:
			return job.Result{Status: job.Up} // the job filled nothing
		case 1:
			return job.Result{} // not even a status
		}
		return up(tg)
	})
	got, err := collect(t, context.Background(), 3, j, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if r.Index != 0 || r.Addr != "127.0.0.0" || r.Host != "127.0.0.0" || r.Job != "test" || r.Attempts != 1 || r.Start.IsZero() || r.End.Before(r.Start) {
		t.Fatalf("engine did not fill the envelope: %+v", r)
	}
	if r := got[1]; r.Index != 1 || r.Status != job.Error || r.Class != job.ClassLocal || r.Error == "" {
		t.Fatalf("a Result without status must become a local error: %+v", r)
	}
}

// TestCancel: stop starting, emit what finished, drop the interrupted, leave
// no goroutine behind. Not parallel: goleak compares against this moment.
func TestCancel(t *testing.T) {
	tests := []struct {
		name  string
		batch bool
		opts  Options
	}{
		{"run", false, Options{Concurrency: 8}},
		{"run with retries in backoff", false, Options{Concurrency: 8, Retries: 5, Backoff: time.Hour}},
		{"run rate limited", false, Options{Concurrency: 8, Rate: 0.5}},
		{"batch", true, Options{Concurrency: 8}},
		{"batch rate limited", true, Options{Concurrency: 8, Rate: 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Indexes 0-4 answer; every other target hangs until cancelled
			// and then reports down, which must not be emitted.
			live := func(i uint64) bool { return i < 5 }
			var j job.Job = funcJob(func(ctx context.Context, tg target.Target) job.Result {
				if live(tg.Index) {
					return up(tg)
				}
				if tc.opts.Retries > 0 {
					return down(tg, job.ClassRefused) // into a 1h backoff
				}
				<-ctx.Done()
				return down(tg, job.ClassTimeout)
			})
			if tc.batch {
				j = &tickBatch{hold: func(i uint64) bool { return !live(i) }}
			}
			var c Counters
			go func() {
				// Cancel once the live targets are through and the hanging
				// ones hold every slot (or the rate limiter holds the rest
				// back): an event, not a moment.
				for !(c.Done.Load() >= 5 && c.InFlight.Load() >= int64(tc.opts.Concurrency)) &&
					!(tc.opts.Rate != 0 && c.Started.Load() >= 1) {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			var (
				got map[uint64]job.Result
				err error
			)
			// Targets hang until cancelled (or back off for an hour): Run
			// returning at all is what shows that cancel stops it.
			testwait.Returns(t, "Run after cancel", func() { got, err = collect(t, ctx, 1_000_000, j, tc.opts, &c) })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v, want context.Canceled", err)
			}
			for i, r := range got {
				if r.Status != job.Up {
					t.Fatalf("target %d emitted as %s/%s after cancel: interrupted targets must not be recorded", i, r.Status, r.Class)
				}
			}
			if tc.opts.Rate == 0 && len(got) != 5 {
				t.Fatalf("%d Results emitted, want the 5 that finished", len(got))
			}
			if s := c.Started.Load(); s > int64(tc.opts.Concurrency)+5 {
				t.Fatalf("%d targets started, want no more than the bound after the live ones", s)
			}
			if c.Started.Load() != c.Done.Load()+c.Interrupted.Load() {
				t.Fatalf("started %d != done %d + interrupted %d", c.Started.Load(), c.Done.Load(), c.Interrupted.Load())
			}
			if c.InFlight.Load() != 0 {
				t.Fatalf("InFlight = %d after Run", c.InFlight.Load())
			}
		})
	}
}

func TestBatchError(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := &tickBatch{failAfter: 3}
	_, err := collect(t, context.Background(), 100, b, Options{Concurrency: 10, Timeout: time.Second, Retries: 2, Rate: 1000}, nil)
	if err == nil || err.Error() != "tick batch: socket gone" {
		t.Fatalf("err = %v, want the job's error named", err)
	}
	if want := (job.BatchConfig{Timeout: time.Second, Retries: 2, Concurrency: 10, Rate: 1000}); b.cfg != want {
		t.Fatalf("BatchConfig = %+v, want %+v", b.cfg, want)
	}
}

// quitBatch reads quota targets, emits emitN of them, and returns nil.
type quitBatch struct{ quota, emitN int }

func (*quitBatch) Kind() string { return "quit" }
func (*quitBatch) Run(ctx context.Context, t target.Target) job.Result {
	return up(t)
}
func (b *quitBatch) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	for i := 0; i < b.quota; i++ {
		t, ok := <-in
		if !ok {
			return nil
		}
		if i < b.emitN {
			emit(up(t))
		}
	}
	return nil
}

// TestBatchBroken: a batch job that stops early or forgets Results is an
// error, not a silently short sweep.
func TestBatchBroken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tests := []struct {
		b    *quitBatch
		n    uint64
		want string
	}{
		{&quitBatch{quota: 5, emitN: 5}, 100, "quit batch: returned before reading every target"},
		{&quitBatch{quota: 10, emitN: 7}, 10, "quit batch: returned without a Result for 3 targets"},
		{&quitBatch{quota: 11, emitN: 11}, 10, ""},
	}
	for _, tc := range tests {
		var c Counters
		got, err := collect(t, context.Background(), tc.n, tc.b, Options{Concurrency: 4}, &c)
		if (err == nil && tc.want != "") || (err != nil && err.Error() != tc.want) {
			t.Errorf("%+v over %d: err %v, want %q", *tc.b, tc.n, err, tc.want)
		}
		if int64(len(got)) != c.Done.Load() || c.Started.Load() != c.Done.Load()+c.Interrupted.Load() {
			t.Errorf("%+v: %d Results, counters started=%d done=%d interrupted=%d", *tc.b, len(got), c.Started.Load(), c.Done.Load(), c.Interrupted.Load())
		}
	}
}

// TestNoBatch: a Batcher is driven through Run when asked.
func TestNoBatch(t *testing.T) {
	t.Parallel()
	b := &stampBatch{stamp: func() { t.Error("RunBatch used despite NoBatch") }}
	got, err := collect(t, context.Background(), 10, b, Options{NoBatch: true}, nil)
	if err != nil || len(got) != 10 {
		t.Fatalf("%d Results, err %v", len(got), err)
	}
}

func TestFit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c, fds int
		limit  uint64
		want   int
		warn   bool
	}{
		{1000, 1, 20000, 1000, false},
		{0, 1, 20000, DefaultConcurrency, false},
		{1000, 1, 1024, 1024 - fdHeadroom, true},
		{1000, 4, 1024, (1024 - fdHeadroom) / 4, true},
		{4000, 4, 20000, 4000, false},
		{5000, 4, 20000 - 100, (20000 - 100 - fdHeadroom) / 4, true},
		{100, 1, 10, 1, true},
		{100, 0, 1 << 62, 100, false},
		{20000, 0, 1024, 20000, false},
	}
	for _, tc := range tests {
		got, warn := fit(tc.c, tc.fds, tc.limit)
		if got != tc.want || (warn != "") != tc.warn {
			t.Errorf("fit(%d, %d, %d) = %d, %q; want %d, warning %v", tc.c, tc.fds, tc.limit, got, warn, tc.want, tc.warn)
		}
	}
	if _, err := RaiseFileLimit(); err != nil {
		t.Fatal(err)
	}
	if c, _ := FitConcurrency(10, 1); c != 10 {
		t.Fatalf("FitConcurrency(10, 1) = %d under the real limit", c)
	}
}

// intoJob is an InPlace job: the engine must call RunInto, never Run.
type intoJob struct {
	runs  atomic.Int64
	into  func(ctx context.Context, t target.Target, r *job.Result)
	calls atomic.Int64
}

func (*intoJob) Kind() string { return "into" }
func (j *intoJob) Run(ctx context.Context, t target.Target) job.Result {
	j.runs.Add(1)
	return up(t)
}
func (j *intoJob) RunInto(ctx context.Context, t target.Target, r *job.Result) {
	j.calls.Add(1)
	j.into(ctx, t, r)
}

var _ InPlace = (*intoJob)(nil)

func TestInPlace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		opts  Options
		into  func(ctx context.Context, t target.Target, r *job.Result)
		calls int64 // RunInto calls for 20 targets
		check func(t *testing.T, r job.Result)
	}{
		{"filled in place", Options{Concurrency: 4},
			func(_ context.Context, tg target.Target, r *job.Result) { r.Status = job.Up; r.RTT = time.Millisecond },
			20, func(t *testing.T, r job.Result) {
				// The engine fills what the job left empty, as for Run.
				if r.Status != job.Up || r.RTT != time.Millisecond || r.Job != "into" || r.Addr == "" ||
					r.Attempts != 1 || r.Start.IsZero() || r.End.IsZero() {
					t.Errorf("result %+v", r)
				}
			}},
		{"retried", Options{Concurrency: 4, Retries: 2, Backoff: time.Millisecond},
			func(_ context.Context, tg target.Target, r *job.Result) {
				*r = down(tg, job.ClassRefused) // a fresh Result each attempt
			},
			60, func(t *testing.T, r job.Result) {
				if r.Status != job.Down || r.Class != job.ClassRefused || r.Attempts != 3 {
					t.Errorf("result %+v", r)
				}
			}},
		{"timed out", Options{Concurrency: 20, Timeout: 20 * time.Millisecond},
			func(ctx context.Context, tg target.Target, r *job.Result) { <-ctx.Done() },
			20, func(t *testing.T, r job.Result) {
				if r.Status != job.Down || r.Class != job.ClassTimeout || r.Error == "" {
					t.Errorf("result %+v", r)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := &intoJob{into: tc.into}
			got, err := collect(t, context.Background(), 20, j, tc.opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 20 {
				t.Fatalf("%d results, want 20", len(got))
			}
			for i, r := range got {
				if r.Index != i {
					t.Errorf("result for %d has index %d", i, r.Index)
				}
				tc.check(t, r)
			}
			if n := j.runs.Load(); n != 0 {
				t.Errorf("Run called %d times, want RunInto only", n)
			}
			if n := j.calls.Load(); n != tc.calls {
				t.Errorf("RunInto called %d times, want %d", n, tc.calls)
			}
		})
	}
}

// blockBatch runs each target in a goroutine of its own, through run.
type blockBatch struct {
	run func(target.Target) job.Result
}

func (*blockBatch) Kind() string { return "block" }
func (b *blockBatch) Run(ctx context.Context, t target.Target) job.Result {
	return b.run(t)
}
func (b *blockBatch) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	var wg sync.WaitGroup
	for t := range in {
		wg.Add(1)
		go func() { defer wg.Done(); emit(b.run(t)) }()
	}
	wg.Wait()
	return nil
}

// Options.Stop: no target starts after it, not even one waiting for a rate
// token, and the targets in flight finish with their real (here down)
// Result, which is emitted; Run returns nil.
func TestStopFinishesInFlight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		batch bool
		opts  Options
		n     uint64
		want  int64 // in flight when Stop closes
	}{
		{"each", false, Options{Concurrency: 2}, 100, 2},
		{"batch", true, Options{Concurrency: 2}, 100, 2},
		// The second target waits ~1000 s for its token: Stop ends the wait.
		{"each rate", false, Options{Concurrency: 10, Rate: 0.001}, 3, 1},
		{"batch rate", true, Options{Concurrency: 10, Rate: 0.001}, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var started atomic.Int64
			release := make(chan struct{})
			run := func(tg target.Target) job.Result {
				started.Add(1)
				<-release
				return down(tg, job.ClassTimeout)
			}
			var j job.Job = funcJob(func(_ context.Context, tg target.Target) job.Result { return run(tg) })
			if tc.batch {
				j = &blockBatch{run: run}
			}
			stop := make(chan struct{})
			tc.opts.Stop = stop
			var got map[uint64]job.Result
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				got, err = collect(t, context.Background(), tc.n, j, tc.opts, nil)
			}()
			testwait.For(t, "targets in flight", func() bool { return started.Load() == tc.want })
			close(stop)
			close(release)
			testwait.Recv(t, "Run to return after Stop", done)
			if err != nil {
				t.Fatalf("Run: %v, want nil after Stop", err)
			}
			if int64(len(got)) != tc.want || started.Load() != tc.want {
				t.Fatalf("%d Results of %d started, want the %d in flight", len(got), started.Load(), tc.want)
			}
			for _, r := range got {
				if r.Status != job.Down || r.Class != job.ClassTimeout {
					t.Fatalf("result %+v: want the job's own down/timeout", r)
				}
			}
		})
	}
}
