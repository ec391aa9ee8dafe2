package output

import (
	"fmt"
	"github.com/fanout/fanout/internal/golden"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// TestSummaryGolden prints the summaries of typical sweeps: classes in words
// with their counts, a command's failures by exit status, the rate as
// targets per second, RTT percentiles.
func TestSummaryGolden(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	section := func(name string, s *Summary, elapsed time.Duration, interrupted bool, cancelled int64) {
		fmt.Fprintf(&out, "== %s\n", name)
		if err := s.Print(&out, elapsed, interrupted, cancelled); err != nil {
			t.Fatal(err)
		}
	}

	ping := NewSummary()
	for i := 0; i < 65530; i++ {
		ping.Add(job.Result{Status: job.Up, RTT: time.Duration(10+i%300) * time.Microsecond})
	}
	for i := 0; i < 10; i++ {
		ping.Add(job.Result{Status: job.Down, Class: job.ClassTimeout})
	}
	ping.Add(job.Result{Status: job.Down, Class: job.ClassRefused})
	ping.Add(job.Result{Status: job.Down, Class: job.ClassRefused})
	ping.Add(job.Result{Status: job.Error, Class: job.ClassResolve})
	section("ping, a /16 with a few down", ping, 1230*time.Millisecond, false, 0)

	exec := NewSummary()
	code := func(n int) *int { return &n }
	for i := 0; i < 5; i++ {
		exec.Add(job.Result{Status: job.Up, ExitCode: code(0)})
	}
	for i := 0; i < 3; i++ {
		exec.Add(job.Result{Status: job.Down, Class: job.ClassExit, ExitCode: code(2), Error: "exit status 2"})
	}
	exec.Add(job.Result{Status: job.Down, Class: job.ClassExit, ExitCode: code(1), Error: "exit status 1"})
	exec.Add(job.Result{Status: job.Down, Class: job.ClassExit, ExitCode: code(137), Error: "signal: killed"})
	exec.Add(job.Result{Status: job.Down, Class: job.ClassTimeout, Error: "timed out after 2s"})
	section("exec, exits in words", exec, 2*time.Second+40*time.Millisecond, false, 0)

	slow := NewSummary()
	slow.Add(job.Result{Status: job.Up, RTT: 1500 * time.Millisecond})
	slow.Add(job.Result{Status: job.Down, Class: job.ClassTimeout})
	section("slow: a rate under one a second, a long sweep", slow, 21*time.Minute+3*time.Second, true, 12)

	empty := NewSummary()
	empty.Add(job.Result{Status: job.Up})
	section("no RTT, no time", empty, 0, false, 0)

	golden.Check(t, "summary.golden", out.String())
}

// TestSummaryBoundsHostileKinds: classes and exit statuses from the bus
// cannot grow the summary without bound.
func TestSummaryBoundsHostileKinds(t *testing.T) {
	t.Parallel()
	s := NewSummary()
	for i := 0; i < 10000; i++ {
		c := i
		s.Add(job.Result{Status: job.Down, Class: job.ClassExit, ExitCode: &c})
		s.Add(job.Result{Status: job.Error, Class: job.Class(fmt.Sprint("class", i))})
	}
	if len(s.ByExit) > maxExitKinds+1 || len(s.ByClass) > maxClasses+1 {
		t.Errorf("%d exit kinds, %d classes kept", len(s.ByExit), len(s.ByClass))
	}
	var b strings.Builder
	s.Print(&b, time.Second, false, 0)
	if !strings.Contains(b.String(), otherExits) || !strings.Contains(b.String(), "other ") {
		t.Errorf("the rest is not counted as other:\n%s", b.String())
	}
}

// TestQuantilesExact: every percentile is the exact nearest-rank value to
// within the tracker's resolution (0.8%), on data where bucket edges would
// make p50 and p90 coincide.
func TestQuantilesExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	sets := map[string][]time.Duration{}
	var uniform, expo, small []time.Duration
	for i := 0; i < 20000; i++ {
		uniform = append(uniform, time.Duration(21000+rng.IntN(28000))) // 21µs..49µs: one 1-2-5 bucket
		expo = append(expo, time.Duration(20e3*(1+rng.ExpFloat64()*rng.ExpFloat64()*3)))
		small = append(small, time.Duration(1+rng.IntN(200))) // exact below 128ns
	}
	sets["uniform"], sets["expo"], sets["small"] = uniform, expo, small
	for name, ds := range sets {
		var q Quantiles
		for _, d := range ds {
			q.Add(d)
		}
		sorted := slices.Clone(ds)
		slices.Sort(sorted)
		for _, p := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
			rank := max(1, int(p*float64(len(sorted))+0.9999999))
			want := sorted[rank-1]
			got := q.Quantile(p)
			if diff := float64(got-want) / float64(want); diff > 1.0/256+1e-9 || diff < -1.0/256-1e-9 {
				t.Errorf("%s p%v = %v, want %v (within 0.4%%)", name, p*100, got, want)
			}
		}
		if q.Quantile(0.5) == q.Quantile(0.9) {
			t.Errorf("%s: p50 = p90 = %v", name, q.Quantile(0.5))
		}
	}
	var q Quantiles
	if q.Quantile(0.5) != 0 {
		t.Errorf("empty tracker: p50 %v", q.Quantile(0.5))
	}
	q.Add(0)
	q.Add(-5)
	q.Add(time.Duration(1<<62 + 12345))
	if q.N != 1 || q.Quantile(0.5) != q.Max {
		t.Errorf("n %d p50 %v max %v", q.N, q.Quantile(0.5), q.Max)
	}
}

func TestFormatDurationAndRate(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 999: "999ns", 12345: "12.3µs", 100 * time.Microsecond: "100µs", 1049999: "1.05ms",
		2500 * time.Millisecond: "2.5s", 20*time.Minute + 34*time.Second + 400*time.Millisecond: "20m34s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %s, want %s", d, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 0.25: "0.25", 9.849: "9.85", 99.95: "100", 3672.4: "3672"} {
		if got := FormatRateNum(v); got != want {
			t.Errorf("FormatRateNum(%v) = %s, want %s", v, got, want)
		}
	}
}
