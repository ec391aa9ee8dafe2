package output

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"golang.org/x/term"
)

// Progress is a snapshot of a running sweep's counters, as the progress line
// reads them (the CLI fills it from engine.Counters: output does not import
// the engine).
type Progress struct {
	Done, Total, Up, Down, Errors, InFlight int64
}

// IsTerminal reports whether f is a terminal: where a progress line belongs
// and where text lines are flushed one by one.
func IsTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// progressEvery is how often the line is redrawn; rateWindow is how far back
// the current rate looks.
const (
	progressEvery = 200 * time.Millisecond
	rateWindow    = 5 * time.Second
	minRateSpan   = 500 * time.Millisecond // less is noise: the rate is not known yet
)

// Meter turns successive snapshots of a sweep into progress lines. Its rate
// is the current one: targets finished per second of wall time over the
// last five seconds (RateHelp), not the average since the start, so that a
// sweep that slowed down (timeouts at the end of a /16) says so, and its ETA
// is what is left at that rate. Time is given, never read: a test drives it
// with a fake clock.
type Meter struct {
	samples []sample // oldest first, spanning at most rateWindow
}

type sample struct {
	at   time.Time
	done int64
}

// Line adds p, taken at now, and renders the progress line in at most width
// columns:
//
//	[████████░░░░░░░░] 40000/65536 61%  1250 targets/s  eta 21s  up 39000 down 900 err 100  in flight 1000
//
// When the line is narrower than all that, the bar, then the in-flight
// count, then the counts by status are left out, in that order. The ETA is
// what is left over the current rate, rounded up to a second: never
// negative, never 0 while targets remain ("eta 1s" at least), and "eta ?"
// while the rate is not known or nothing finished in the last five seconds.
func (m *Meter) Line(now time.Time, p Progress, width int) string {
	m.add(now, p.Done)
	rate, known := m.rate()
	total := max(p.Total, p.Done)
	left := total - p.Done

	count := fmt.Sprintf("%d/%d", p.Done, total)
	if total > 0 {
		count += fmt.Sprintf(" %d%%", int(math.Floor(100*float64(p.Done)/float64(total))))
	}
	rateS, eta := "? targets/s", "eta ?"
	if known {
		rateS = FormatRate(rate)
		switch {
		case left <= 0:
			eta = "eta 0s"
		case rate > 0:
			eta = "eta " + formatETA(time.Duration(math.Ceil(float64(left)/rate))*time.Second)
		}
	}
	status := fmt.Sprintf("up %d down %d err %d", p.Up, p.Down, p.Errors)
	inflight := fmt.Sprintf("in flight %d", p.InFlight)

	// Pieces by priority; each is kept if the line still fits.
	parts := []string{count, rateS, eta, status, inflight}
	for n := len(parts); n > 0; n-- {
		line := strings.Join(parts[:n], "  ")
		if w := len(line); w <= width {
			if bar := width - w - 3; bar >= 10 && total > 0 {
				return progressBar(min(bar, 30), p.Done, total) + " " + line
			}
			return line
		}
	}
	return cutColumns(count, width)
}

func (m *Meter) add(now time.Time, done int64) {
	if n := len(m.samples); n > 0 && !now.After(m.samples[n-1].at) {
		m.samples[n-1].done = done // the clock did not move
		return
	}
	m.samples = append(m.samples, sample{now, done})
	// Keep one sample at or before the window's start, to span it whole.
	drop := 0
	for drop+1 < len(m.samples) && now.Sub(m.samples[drop+1].at) >= rateWindow {
		drop++
	}
	m.samples = append(m.samples[:0], m.samples[drop:]...)
}

// rate is the targets finished per second over the samples' span.
func (m *Meter) rate() (float64, bool) {
	if len(m.samples) < 2 {
		return 0, false
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := last.at.Sub(first.at)
	if span < minRateSpan {
		return 0, false
	}
	return Rate(max(last.done-first.done, 0), span), true
}

// formatETA is a whole number of seconds as 45s, 1m20s, 2h05m.
func formatETA(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 100*3600:
		return fmt.Sprintf("%dh%02dm", s/3600, (s%3600)/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, (s%86400)/3600)
}

func progressBar(cells int, done, total int64) string {
	full := int(int64(cells) * min(done, total) / total)
	return "[" + strings.Repeat("█", full) + strings.Repeat("░", cells-full) + "]"
}

func cutColumns(s string, width int) string {
	if width <= 0 {
		return ""
	}
	if r := []rune(s); len(r) > width {
		return string(r[:width])
	}
	return s
}

// Terminal is the one writer of a terminal that a status line (the progress
// line, on stderr) and result lines (on stdout and stderr, when they are the
// same terminal) share, so that neither tears the other: a result erases the
// status line, is written, and the status line is drawn again below it once
// the result ended its line. Every frame is one write.
type Terminal struct {
	mu      sync.Mutex
	out     io.Writer // where the status line is drawn
	status  string    // the frame to draw; "" for none
	shown   bool      // the frame is on the screen
	midLine bool      // the last write left the cursor inside a line
	buf     []byte
}

// NewTerminal draws status lines on out.
func NewTerminal(out io.Writer) *Terminal { return &Terminal{out: out} }

// SetStatus replaces the status line and draws it (unless a result left a
// line half written: then at the end of that line).
func (t *Terminal) SetStatus(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.status = line
	t.draw()
}

// Clear erases the status line and draws none from then on.
func (t *Terminal) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.status = ""
	t.erase()
}

// Width is the terminal's width in columns, 80 when it cannot be told.
func (t *Terminal) Width() int {
	if f, ok := t.out.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
	}
	return 80
}

func (t *Terminal) draw() {
	if t.status == "" || t.midLine {
		return
	}
	// "\r" and erase-to-end in the same write as the text: never half a frame.
	t.buf = append(append(append(t.buf[:0], '\r'), t.status...), "\x1b[K"...)
	_, _ = t.out.Write(t.buf)
	t.shown = true
}

func (t *Terminal) erase() {
	if t.shown {
		_, _ = io.WriteString(t.out, "\r\x1b[K")
		t.shown = false
	}
}

// Writer is w (stdout or stderr on the terminal) writing through t: each
// write erases the status line first and redraws it after.
func (t *Terminal) Writer(w io.Writer) io.Writer { return &termWriter{t: t, w: w} }

type termWriter struct {
	t *Terminal
	w io.Writer
}

func (tw *termWriter) Write(p []byte) (int, error) {
	t := tw.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.erase()
	n, err := tw.w.Write(p)
	if n > 0 {
		t.midLine = p[n-1] != '\n'
	}
	t.draw()
	return n, err
}

// Terminal reports that tw writes to a terminal: the text writers flush
// every line there.
func (tw *termWriter) Terminal() bool { return true }

// StartProgress draws the progress line (see Meter.Line) on t from snap every
// 200ms until stop is called; stop erases it and returns once its goroutine
// has ended.
func StartProgress(t *Terminal, snap func() Progress) (stop func()) {
	tick := time.NewTicker(progressEvery)
	stopLine := startProgress(t, snap, tick.C, time.Now)
	return func() { stopLine(); tick.Stop() }
}

// startProgress is StartProgress on a given clock: a frame at start and on
// every tick, each taken at now().
func startProgress(t *Terminal, snap func() Progress, tick <-chan time.Time, now func() time.Time) (stop func()) {
	var m Meter
	frame := func() { t.SetStatus(m.Line(now(), snap(), t.Width()-1)) } // the last column would wrap on some terminals
	frame()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-tick:
				frame()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			t.Clear()
		})
	}
}
