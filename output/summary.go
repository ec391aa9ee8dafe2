package output

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fanout/fanout/job"
)

// Summary accumulates Results for the end-of-sweep report: counts by status
// and class (and by exit status for commands), RTT min/avg/max, percentiles
// and a log2 RTT histogram. It is fed from one goroutine (the engine's emit)
// and needs no lock.
type Summary struct {
	Total            int64
	Up, Down, Errors int64
	ByClass          map[job.Class]int64
	// ByExit counts the targets of class exit by what ended the command
	// ("exit status 2", "signal killed"), at most maxExitKinds of them.
	ByExit         map[string]int64
	RTTMin, RTTMax time.Duration
	rttSum         time.Duration
	RTTCount       int64
	RTT            Quantiles // the RTTs of the targets that were up
	hist           [65]int64 // hist[k]: RTTs in [2^(k-1), 2^k) microseconds
	NoHistogram    bool      // never print the histogram line
	ForceHistogram bool      // print it even when the writer is not a terminal
}

// maxExitKinds bounds ByExit (results may come from the bus); the rest are
// counted under otherExits.
const (
	maxExitKinds = 32
	maxClasses   = 64
	otherExits   = "other exit statuses"
	otherClass   = job.Class("other")
)

// NewSummary returns an empty Summary.
func NewSummary() *Summary {
	return &Summary{ByClass: make(map[job.Class]int64), ByExit: make(map[string]int64)}
}

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
		c := r.Class
		if _, ok := s.ByClass[c]; !ok && len(s.ByClass) >= maxClasses {
			c = otherClass
		}
		s.ByClass[c]++
	}
	if r.Class == job.ClassExit {
		if s.ByExit == nil {
			s.ByExit = make(map[string]int64)
		}
		k := exitKind(&r)
		if _, ok := s.ByExit[k]; !ok && len(s.ByExit) >= maxExitKinds {
			k = otherExits
		}
		s.ByExit[k]++
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
		s.RTT.Add(rtt)
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

// exitKind is what ended a command, in words: "exit status 2", or the
// job's own word for a signal ("signal killed").
func exitKind(r *job.Result) string {
	if sig, ok := strings.CutPrefix(r.Error, "signal: "); ok {
		return "signal " + sig
	}
	if r.ExitCode != nil {
		return "exit status " + strconv.Itoa(*r.ExitCode)
	}
	return "exit"
}

// Print writes the summary to w (stderr):
//
//	65536 targets in 1.23s: up 65530, down 6 (timeout 6), errors 0; 53280 targets/s
//	rtt min 10µs, avg 40µs, max 300µs; p50 35.2µs, p90 61.5µs, p99 102µs
//	rtt 8us ▁▃█▅▂ 512us                       (terminals only)
//	interrupted: 12 targets in flight had no result
//
// Classes are named in words, with their counts ("down 12 (timeout 10,
// refused 2)"), and a command's failures by their exit status ("down 5
// (exit status 2: 3 hosts, exit status 1: 2 hosts)"). The rate is targets
// finished per second of wall time (RateHelp). interrupted says the sweep
// was stopped (Ctrl-C); cancelled counts the targets that were in flight
// then and got no Result.
func (s *Summary) Print(w io.Writer, elapsed time.Duration, interrupted bool, cancelled int64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s in %s: up %d, down %d%s, errors %d%s",
		s.Total, plural(s.Total, "target", "targets"), FormatElapsed(elapsed), s.Up, s.Down, s.classes(job.Down), s.Errors, s.classes(job.Error))
	if elapsed > 0 {
		fmt.Fprintf(&b, "; %s", FormatRate(Rate(s.Total, elapsed)))
	}
	b.WriteByte('\n')
	if s.RTTCount > 0 {
		fmt.Fprintf(&b, "rtt min %s, avg %s, max %s; p50 %s, p90 %s, p99 %s\n",
			FormatDuration(s.RTTMin), FormatDuration(s.RTTAvg()), FormatDuration(s.RTTMax),
			FormatDuration(s.RTT.Quantile(0.5)), FormatDuration(s.RTT.Quantile(0.9)), FormatDuration(s.RTT.Quantile(0.99)))
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

// classes lists the class counts that belong to status st, largest first:
// " (timeout 6, refused 2)"; class exit is spelled out by exit status,
// " (exit status 2: 3 hosts, exit status 1: 1 host)". Empty when there are
// none.
func (s *Summary) classes(st job.Status) string {
	type part struct {
		name string
		n    int64
		exit bool
	}
	var parts []part
	for c, n := range s.ByClass {
		if classStatus(c) != st {
			continue
		}
		if c == job.ClassExit && len(s.ByExit) > 0 {
			for k, n := range s.ByExit {
				parts = append(parts, part{k, n, true})
			}
			continue
		}
		parts = append(parts, part{string(c), n, false})
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].n != parts[j].n {
			return parts[i].n > parts[j].n
		}
		return parts[i].name < parts[j].name
	})
	out := make([]string, len(parts))
	for i, p := range parts {
		name := Safe(p.name) // a class or a message may come from the bus
		switch {
		case p.exit && p.n == 1:
			out[i] = name + ": 1 host"
		case p.exit:
			out[i] = fmt.Sprintf("%s: %d hosts", name, p.n)
		default:
			out[i] = fmt.Sprintf("%s %d", name, p.n)
		}
	}
	return " (" + strings.Join(out, ", ") + ")"
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

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && IsTerminal(f)
}
