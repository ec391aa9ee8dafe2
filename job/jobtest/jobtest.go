// Package jobtest is the conformance suite that every job kind passes: it
// honours its deadline and cancellation, never exceeds its output bound,
// fills the Result envelope and classifies its failures into known classes.
//
// A job kind's test describes a few real targets and calls Run:
//
//	func TestConformance(t *testing.T) {
//		j, _ := tcp.New(tcp.Config{})
//		jobtest.Run(t, jobtest.Suite{
//			Job:  j,
//			Up:   target.Target{Addr: lo, Port: openPort},
//			Slow: target.Target{Addr: lo, Port: blackholedPort},
//			Failures: []jobtest.Expect{
//				{Name: "refused", Target: target.Target{Addr: lo, Port: closedPort}, Status: job.Down, Class: job.ClassRefused},
//			},
//		})
//	}
//
// A job that implements job.Batcher also gets the batch cases: one emit per
// target received, the same outcomes as single Runs, a return on cancel with
// its input still open.
//
// Nothing here times the job: a loaded machine (CI beside other work, -race)
// must not fail it. "Stops at its deadline or cancel" is checked by a Slow
// target that never ends on its own: a job that ignored the deadline would
// hang, and testwait fails a hang after minutes.
//
// Run must not be called from a parallel test: it checks that no goroutine
// outlives the job's attempts.
package jobtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Suite describes a job kind to the conformance suite. Zero fields skip the
// cases that need them.
type Suite struct {
	// Job is the job under test.
	Job job.Job
	// Up is a target on which an attempt succeeds within Timeout.
	Up target.Target
	// Slow is a target on which an attempt lasts until its deadline (a
	// black-holed address, a command that sleeps longer than testwait.Hang).
	// The deadline and cancel cases use it; nil-valued (zero Target) skips
	// them.
	Slow target.Target
	// Failures are targets with the outcome they must get.
	Failures []Expect
	// MaxOutput is the job's bound per stream (stdout, stderr); Noisy is a
	// target whose attempt writes more than that on each stream. The suite
	// checks the bound holds and Truncated is set. Zero skips.
	MaxOutput int
	Noisy     target.Target
	// Timeout is the deadline of the Up, Failures and Noisy attempts; 0
	// means testwait.Hang (it only catches a hang). A job whose Failures
	// need their deadline to pass (a dead host) sets a short one.
	Timeout time.Duration
}

// Expect is a target and the outcome the job must report for it.
type Expect struct {
	Name   string
	Target target.Target
	Status job.Status
	Class  job.Class
}

// KnownClasses are the error classes a Result may carry.
var KnownClasses = []job.Class{
	job.ClassTimeout, job.ClassRefused, job.ClassUnreachable, job.ClassResolve, job.ClassAuth,
	job.ClassHostKey, job.ClassExit, job.ClassProto, job.ClassCanceled, job.ClassLocal,
}

// Run runs the conformance suite against s.Job as subtests of t.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if s.Job == nil {
		t.Fatal("jobtest: Suite.Job is nil")
	}
	if s.Timeout == 0 {
		s.Timeout = testwait.Hang
	}
	leaks := goleak.IgnoreCurrent()
	zero := target.Target{}

	if s.Up != zero {
		t.Run("up", func(t *testing.T) {
			r := attempt(t, s, s.Up, s.Timeout)
			if r.Status != job.Up {
				t.Fatalf("Run(%s) = %s/%s (%s), want up", s.Up.Name(), r.Status, r.Class, r.Error)
			}
		})
		t.Run("concurrent", func(t *testing.T) {
			// Twenty attempts at once: with -race this shakes out shared state.
			var wg sync.WaitGroup
			rs := make([]job.Result, 20)
			for i := range rs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tg := s.Up
					tg.Index = uint64(1000 + i)
					ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
					defer cancel()
					rs[i] = s.Job.Run(ctx, tg)
				}()
			}
			wg.Wait()
			for i, r := range rs {
				tg := s.Up
				tg.Index = uint64(1000 + i)
				CheckEnvelope(t, s.Job.Kind(), tg, r)
				if r.Status != job.Up {
					t.Errorf("concurrent attempt %d = %s/%s (%s), want up", i, r.Status, r.Class, r.Error)
				}
			}
		})
		t.Run("canceled-before-start", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var r job.Result
			testwait.Returns(t, "Run with a cancelled context", func() { r = s.Job.Run(ctx, s.Up) })
			CheckEnvelope(t, s.Job.Kind(), s.Up, r)
			if r.Status == job.Up && r.Class != job.ClassNone {
				t.Errorf("cancelled attempt: %s/%s", r.Status, r.Class)
			}
			if r.Status != job.Up && r.Class != job.ClassCanceled {
				t.Errorf("cancelled attempt: class %q, want canceled", r.Class)
			}
		})
	}
	for _, e := range s.Failures {
		t.Run("failure/"+e.Name, func(t *testing.T) {
			r := attempt(t, s, e.Target, s.Timeout)
			if r.Status != e.Status || r.Class != e.Class {
				t.Errorf("Run(%s) = %s/%s (%s), want %s/%s", e.Target.Name(), r.Status, r.Class, r.Error, e.Status, e.Class)
			}
		})
	}
	if s.Slow != zero {
		t.Run("deadline", func(t *testing.T) {
			const d = 300 * time.Millisecond
			var r job.Result
			testwait.Returns(t, "Run past a 300ms deadline", func() { r = attempt(t, s, s.Slow, d) })
			if r.Status != job.Down || r.Class != job.ClassTimeout {
				t.Errorf("Run past its deadline = %s/%s (%s), want down/timeout", r.Status, r.Class, r.Error)
			}
		})
		t.Run("cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			const after = 200 * time.Millisecond
			tm := time.AfterFunc(after, cancel)
			defer tm.Stop()
			var r job.Result
			testwait.Returns(t, "Run cancelled after 200ms", func() { r = s.Job.Run(ctx, s.Slow) })
			CheckEnvelope(t, s.Job.Kind(), s.Slow, r)
			if r.Status != job.Error || r.Class != job.ClassCanceled {
				t.Errorf("cancelled Run = %s/%s (%s), want error/canceled", r.Status, r.Class, r.Error)
			}
		})
	}
	if s.MaxOutput > 0 && s.Noisy != zero {
		t.Run("output-bound", func(t *testing.T) {
			r := attempt(t, s, s.Noisy, s.Timeout)
			if len(r.Stdout) > s.MaxOutput || len(r.Stderr) > s.MaxOutput {
				t.Errorf("output %d/%d bytes (stdout/stderr), bound %d", len(r.Stdout), len(r.Stderr), s.MaxOutput)
			}
			if !r.Truncated {
				t.Errorf("Truncated not set (stdout %d bytes, stderr %d, bound %d)", len(r.Stdout), len(r.Stderr), s.MaxOutput)
			}
			if len(r.Stdout) != s.MaxOutput {
				t.Errorf("kept %d bytes of stdout, want the bound %d", len(r.Stdout), s.MaxOutput)
			}
		})
	}
	if b, ok := s.Job.(job.Batcher); ok {
		t.Run("batch", func(t *testing.T) { runBatch(t, s, b) })
	}
	t.Run("no-leaks", func(t *testing.T) {
		goleak.VerifyNone(t, leaks)
	})
}

// runBatch checks a Batcher against the engine's contract: one emit per
// target received, each with the outcome its single Run would have, and a
// prompt return on cancel.
func runBatch(t *testing.T, s Suite, b job.Batcher) {
	zero := target.Target{}
	var tgs []target.Target
	want := map[uint64]Expect{}
	if s.Up != zero {
		for i := 0; i < 5; i++ {
			tg := s.Up
			tg.Index = uint64(2000 + i)
			tgs = append(tgs, tg)
			want[tg.Index] = Expect{Name: "up", Target: tg, Status: job.Up}
		}
	}
	for i, e := range s.Failures {
		tg := e.Target
		tg.Index = uint64(3000 + i)
		e.Target = tg
		tgs = append(tgs, tg)
		want[tg.Index] = e
	}
	if len(tgs) > 0 {
		t.Run("outcomes", func(t *testing.T) {
			in := make(chan target.Target, len(tgs))
			for _, tg := range tgs {
				in <- tg
			}
			close(in)
			var mu sync.Mutex
			got := map[uint64][]job.Result{}
			ctx, cancel := context.WithTimeout(context.Background(), s.Timeout+testwait.Hang)
			defer cancel()
			cfg := job.BatchConfig{Timeout: s.Timeout, Concurrency: len(tgs)}
			if err := b.RunBatch(ctx, in, cfg, func(r job.Result) {
				mu.Lock()
				got[r.Index] = append(got[r.Index], r)
				mu.Unlock()
			}); err != nil {
				t.Errorf("RunBatch: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for idx, e := range want {
				rs := got[idx]
				if len(rs) != 1 {
					t.Errorf("%s (index %d): %d Results, want exactly 1", e.Name, idx, len(rs))
					continue
				}
				CheckEnvelope(t, s.Job.Kind(), e.Target, rs[0])
				if rs[0].Status != e.Status || rs[0].Class != e.Class {
					t.Errorf("%s (index %d) = %s/%s (%s), want %s/%s", e.Name, idx, rs[0].Status, rs[0].Class, rs[0].Error, e.Status, e.Class)
				}
			}
			for idx := range got {
				if _, ok := want[idx]; !ok {
					t.Errorf("Result for index %d, which was never sent", idx)
				}
			}
		})
	}
	if s.Slow != zero {
		t.Run("cancel", func(t *testing.T) {
			in := make(chan target.Target, 1)
			in <- s.Slow
			ctx, cancel := context.WithCancel(context.Background())
			const after = 200 * time.Millisecond
			tm := time.AfterFunc(after, cancel)
			defer tm.Stop()
			// in stays open, as when the engine still has targets: only the
			// cancel may end the batch (its targets' timeout is longer than
			// testwait.Hang, so only the cancel can).
			testwait.Returns(t, "RunBatch after cancel", func() {
				_ = b.RunBatch(ctx, in, job.BatchConfig{Timeout: 2 * testwait.Hang, Concurrency: 1}, func(job.Result) {})
			})
			if ctx.Err() == nil {
				t.Errorf("RunBatch returned before the cancel, with its input open")
			}
			close(in)
		})
	}
}

// attempt runs one attempt with a deadline and checks its envelope.
func attempt(t *testing.T, s Suite, tg target.Target, d time.Duration) job.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r := s.Job.Run(ctx, tg)
	CheckEnvelope(t, s.Job.Kind(), tg, r)
	return r
}

// CheckEnvelope reports every way r fails the Result contract for an
// attempt of a job of kind at tg. Job kinds may call it from their own tests.
func CheckEnvelope(t testing.TB, kind string, tg target.Target, r job.Result) {
	t.Helper()
	for _, err := range Envelope(kind, tg, r) {
		t.Error(err)
	}
}

// Envelope lists the ways r fails the Result contract (nil when it holds).
func Envelope(kind string, tg target.Target, r job.Result) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if r.Index != tg.Index {
		bad("Index = %d, want %d", r.Index, tg.Index)
	}
	if r.Host != tg.Name() {
		bad("Host = %q, want %q", r.Host, tg.Name())
	}
	if tg.Addr.IsValid() && r.Addr != tg.Addr.String() {
		bad("Addr = %q, want %q", r.Addr, tg.Addr)
	}
	if tg.Port != 0 && r.Port != int(tg.Port) {
		bad("Port = %d, want %d", r.Port, tg.Port)
	}
	if r.Job != kind {
		bad("Job = %q, want %q", r.Job, kind)
	}
	switch r.Status {
	case job.Up:
		if r.Class != job.ClassNone {
			bad("status up with class %q", r.Class)
		}
	case job.Down, job.Error:
		if r.Class == job.ClassNone {
			bad("status %s without a class (error %q)", r.Status, r.Error)
		} else if !known(r.Class) {
			bad("status %s with unknown class %q", r.Status, r.Class)
		}
		if r.Error == "" {
			bad("status %s/%s without an error message", r.Status, r.Class)
		}
	default:
		bad("unknown status %q", r.Status)
	}
	if r.Start.IsZero() || r.End.IsZero() {
		bad("Start %v / End %v not set", r.Start, r.End)
	} else if r.End.Before(r.Start) {
		bad("End %v before Start %v", r.End, r.Start)
	}
	if r.RTT < 0 || r.RTTMin < 0 || r.RTTAvg < 0 || r.RTTMax < 0 {
		bad("negative RTT %v (min %v avg %v max %v)", r.RTT, r.RTTMin, r.RTTAvg, r.RTTMax)
	}
	if r.Recv > r.Sent {
		bad("Recv %d > Sent %d", r.Recv, r.Sent)
	}
	return errs
}

func known(c job.Class) bool {
	for _, k := range KnownClasses {
		if c == k {
			return true
		}
	}
	return false
}
