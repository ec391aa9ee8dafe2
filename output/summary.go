package output

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/fanout/fanout/job"
)

// Summary accumulates Results for the end-of-sweep report: counts by status
// and class, RTT min/avg/max and a log2 RTT histogram. It is fed from one
// goroutine (the engine's emit) and needs no lock.
type Summary struct {
	Total            int64
	Up, Down, Errors int64
	ByClass          map[job.Class]int64
	RTTMin, RTTMax   time.Duration
	rttSum           time.Duration
	RTTCount         int64
	hist             [65]int64 // hist[k]: RTTs in [2^(k-1), 2^k) microseconds
	NoHistogram      bool      // never print the histogram line
	ForceHistogram   bool      // print it even when the writer is not a terminal
}

// NewSummary returns an empty Summary.
func NewSummary() *Summary { return &Summary{ByClass: make(map[job.Class]int64)} }

// Add counts r.
func (s *Summary) Add(r job.Result) {
	if s.ByClass == nil {
		s.ByClass = make(map[job.Class]int64)
	}
	s.Total++
	switch r.Status {
	case job.Up:
		s.Up++
	case job.Down:
		s.Down++
	default:
		s.Errors++
	}
	if r.Class != job.ClassNone {
		s.ByClass[r.Class]++
	}
	rtt := r.RTT
	if r.RTTAvg != 0 {
		rtt = r.RTTAvg
	}
	if r.Status == job.Up && rtt > 0 {
		if s.RTTCount == 0 || rtt < s.RTTMin {
			s.RTTMin = rtt
		}
		if rtt > s.RTTMax {
			s.RTTMax = rtt
		}
		s.rttSum += rtt
		s.RTTCount++
		s.hist[bits.Len64(uint64(rtt/time.Microsecond))]++
	}
}

// RTTAvg is the mean RTT of the targets that were up with one.
func (s *Summary) RTTAvg() time.Duration {
	if s.RTTCount == 0 {
		return 0
	}
	return s.rttSum / time.Duration(s.RTTCount)
}

// Print writes the summary to w (stderr):
//
//	65536 targets: 65530 up, 6 down (timeout 6), 0 errors in 1.23s (53280/s)
//	rtt min/avg/max 0.01/0.04/0.30 ms
//	rtt <16us ▁▃█▅▂ <512us                       (terminals only)
//	interrupted: 12 targets in flight had no result
//
// interrupted says the sweep was stopped (Ctrl-C); cancelled counts the
// targets that were in flight then and got no Result.
func (s *Summary) Print(w io.Writer, elapsed time.Duration, interrupted bool, cancelled int64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d targets: %d up, %d down%s, %d errors%s in %.2fs",
		s.Total, s.Up, s.Down, s.classes(job.Down), s.Errors, s.classes(job.Error), elapsed.Seconds())
	if elapsed > 0 {
		fmt.Fprintf(&b, " (%.0f/s)", float64(s.Total)/elapsed.Seconds())
	}
	b.WriteByte('\n')
	if s.RTTCount > 0 {
		fmt.Fprintf(&b, "rtt min/avg/max %s/%s/%s ms\n", msNum(s.RTTMin), msNum(s.RTTAvg()), msNum(s.RTTMax))
		if !s.NoHistogram && (s.ForceHistogram || isTerminalWriter(w)) {
			b.WriteString(s.Histogram())
			b.WriteByte('\n')
		}
	}
	if interrupted {
		fmt.Fprintf(&b, "interrupted: %d targets in flight had no result\n", cancelled)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// classes lists the class counts that belong to status st: " (timeout 6,
// refused 2)", largest first; empty when there are none.
func (s *Summary) classes(st job.Status) string {
	var cs []job.Class
	for c := range s.ByClass {
		if classStatus(c) == st {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return ""
	}
	sort.Slice(cs, func(i, j int) bool {
		if s.ByClass[cs[i]] != s.ByClass[cs[j]] {
			return s.ByClass[cs[i]] > s.ByClass[cs[j]]
		}
		return cs[i] < cs[j]
	})
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %d", Safe(string(c)), s.ByClass[c]) // a class may come from the bus
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// classStatus is the status a class goes with: the target answered (down)
// or the probe could not be made (error).
func classStatus(c job.Class) job.Status {
	switch c {
	case job.ClassTimeout, job.ClassRefused, job.ClassUnreachable, job.ClassExit:
		return job.Down
	}
	return job.Error
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// Histogram is a one-line log2 histogram of the RTTs, from the smallest
// bucket to the largest that holds one: `rtt 16us ▁▃█▅▂ 512us`, each bar a
// doubling, its height relative to the fullest.
func (s *Summary) Histogram() string {
	lo, hi := -1, -1
	var peak int64
	for k, n := range s.hist {
		if n == 0 {
			continue
		}
		if lo < 0 {
			lo = k
		}
		hi = k
		peak = max(peak, n)
	}
	if lo < 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("rtt ")
	b.WriteString(bucketEdge(lo - 1))
	b.WriteByte(' ')
	for k := lo; k <= hi; k++ {
		n := s.hist[k]
		switch {
		case n == 0:
			b.WriteByte(' ')
		default:
			i := int(math.Ceil(float64(n)*float64(len(sparks))/float64(peak))) - 1
			b.WriteRune(sparks[max(i, 0)])
		}
	}
	b.WriteByte(' ')
	b.WriteString(bucketEdge(hi))
	return b.String()
}

// bucketEdge is the upper bound of bucket k (2^k microseconds) in a short unit.
func bucketEdge(k int) string {
	if k < 0 {
		return "0us"
	}
	us := uint64(1) << uint(k)
	switch {
	case us < 1000:
		return fmt.Sprintf("%dus", us)
	case us < 1000000:
		return fmt.Sprintf("%.3gms", float64(us)/1e3)
	}
	return fmt.Sprintf("%.3gs", float64(us)/1e6)
}

func msNum(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/1e6)
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && IsTerminal(f)
}
