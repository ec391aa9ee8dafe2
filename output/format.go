package output

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RateHelp is what every rate fanout prints means: the progress line (over
// the last few seconds), the summary and `fanout sweeps` (over the sweep).
const RateHelp = "rate: targets finished per second of wall time"

// Rate is done targets over elapsed wall time, per second (0 when no time
// has passed): the one definition of a rate, wherever it is printed.
func Rate(done int64, elapsed time.Duration) float64 {
	if elapsed <= 0 || done <= 0 {
		return 0
	}
	return float64(done) / elapsed.Seconds()
}

// FormatRate prints a rate as "3672 targets/s", with three significant
// digits below 100 ("9.85 targets/s", "0.25 targets/s").
func FormatRate(v float64) string {
	return FormatRateNum(v) + " targets/s"
}

// FormatRateNum is the number of FormatRate alone.
func FormatRateNum(v float64) string {
	switch {
	case v <= 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return trimZeros(strconv.FormatFloat(v, 'g', 3, 64))
}

// FormatDuration prints d with three significant digits in a short unit
// (12.3µs, 1.05ms, 2.5s, 20m34s): the resolution of Quantiles.
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		return sig3(float64(d)/1e3) + "µs"
	case d < time.Second:
		return sig3(float64(d)/1e6) + "ms"
	case d < time.Minute:
		return sig3(d.Seconds()) + "s"
	}
	return d.Round(time.Second).String()
}

// FormatElapsed is a sweep's wall time: 0.28s, 12.50s, then 20m34s.
func FormatElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// sig3 is v with three significant digits, no exponent, no trailing zeros.
func sig3(v float64) string {
	s := strconv.FormatFloat(v, 'g', 3, 64)
	if strings.ContainsRune(s, 'e') {
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return trimZeros(s)
}

func trimZeros(s string) string {
	if strings.ContainsRune(s, '.') {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
