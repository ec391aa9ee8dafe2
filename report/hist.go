package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fanout/fanout/output"
)

// bucketEdges are the upper bounds of the RTT histogram's buckets, a 1-2-5
// series so that labels read like numbers people write. The last bucket is
// open-ended.
var bucketEdges = []time.Duration{
	10 * time.Microsecond, 20 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
}

// Histogram counts RTTs in log-spaced buckets for the picture, in O(1)
// memory, and tracks their quantiles on a finer scale (output.Quantiles:
// within 0.8%, not at the picture's bucket edges).
type Histogram struct {
	Counts   [20]uint64 // Counts[i]: RTT < bucketEdges[i] (and >= the previous edge); [19]: >= 10s
	N        uint64
	Min, Max time.Duration
	Sum      time.Duration
	q        output.Quantiles
}

// Add counts one RTT; zero (no RTT measured) is ignored.
func (h *Histogram) Add(d time.Duration) {
	if d <= 0 {
		return
	}
	i := sort.Search(len(bucketEdges), func(i int) bool { return d < bucketEdges[i] })
	h.Counts[i]++
	if h.N == 0 || d < h.Min {
		h.Min = d
	}
	if d > h.Max {
		h.Max = d
	}
	h.N++
	h.Sum += d
	h.q.Add(d)
}

// Mean is the average RTT, 0 when none was added.
func (h *Histogram) Mean() time.Duration {
	if h.N == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.N)
}

// Quantile is the q-quantile (0..1) of the RTTs, nearest rank, to within
// 0.8% (three significant digits, as Short prints it).
func (h *Histogram) Quantile(q float64) time.Duration { return h.q.Quantile(q) }

// Bucket is one bar of the histogram.
type Bucket struct {
	Label string
	Lo    time.Duration
	Hi    time.Duration // 0 for the open-ended last bucket
	Count uint64
}

// Buckets are the bars from the first to the last non-empty one.
func (h *Histogram) Buckets() []Bucket {
	first, last := -1, -1
	for i, c := range h.Counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	var out []Bucket
	for i := first; i <= last; i++ {
		var lo, hi time.Duration
		if i > 0 {
			lo = bucketEdges[i-1]
		}
		if i < len(bucketEdges) {
			hi = bucketEdges[i]
		}
		out = append(out, Bucket{Label: bucketLabel(lo, hi), Lo: lo, Hi: hi, Count: h.Counts[i]})
	}
	return out
}

func bucketLabel(lo, hi time.Duration) string {
	switch {
	case lo == 0:
		return "<" + Short(hi)
	case hi == 0:
		return "≥" + Short(lo)
	}
	return Short(lo) + "–" + Short(hi)
}

// Short formats a duration compactly: 20µs, 1.5ms, 2s.
func Short(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return trim(float64(d)/1e3) + "µs"
	case d < time.Second:
		return trim(float64(d)/1e6) + "ms"
	}
	return trim(d.Seconds()) + "s"
}

func trim(v float64) string {
	s := fmt.Sprintf("%.3g", v)
	if strings.Contains(s, "e") {
		s = fmt.Sprintf("%.0f", v)
	}
	return s
}

// WriteText draws the histogram for a terminal: one line per bucket, bars of
// at most width cells, with eighth-block resolution.
func (h *Histogram) WriteText(w io.Writer, width int) {
	bs := h.Buckets()
	if len(bs) == 0 {
		return
	}
	var max uint64
	lw := 0
	for _, b := range bs {
		if b.Count > max {
			max = b.Count
		}
		if n := len([]rune(b.Label)); n > lw {
			lw = n
		}
	}
	fmt.Fprintf(w, "rtt: min %s  p50 %s  p90 %s  p99 %s  max %s  (%d with an RTT)\n",
		Short(h.Min), Short(h.Quantile(0.5)), Short(h.Quantile(0.9)), Short(h.Quantile(0.99)), Short(h.Max), h.N)
	for _, b := range bs {
		pad := strings.Repeat(" ", lw-len([]rune(b.Label)))
		fmt.Fprintf(w, "  %s%s %s %d\n", pad, b.Label, bar(b.Count, max, width), b.Count)
	}
}

var eighths = []string{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"}

func bar(n, max uint64, width int) string {
	if max == 0 || n == 0 {
		return ""
	}
	e := int(n * uint64(width) * 8 / max)
	if e == 0 {
		e = 1 // a non-empty bucket always shows
	}
	return strings.Repeat("█", e/8) + eighths[e%8]
}
