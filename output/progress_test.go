package output

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/golden"
	"github.com/fanout/fanout/internal/lab"

	"github.com/fanout/fanout/internal/testwait"
)

var clock0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// TestProgressGolden drives the progress line with a fake clock through a
// sweep of 65536 targets that starts fast, slows down (timeouts at the end)
// and stalls: the rate is the current one, the ETA follows it, is labelled,
// never negative and never 0 while targets remain.
func TestProgressGolden(t *testing.T) {
	t.Parallel()
	var m Meter
	var out strings.Builder
	const total = 65536
	done := int64(0)
	at := clock0
	step := func(d time.Duration, perSec float64, width int) {
		at = at.Add(d)
		done = min(total, done+int64(perSec*d.Seconds()))
		p := Progress{Done: done, Total: total, Up: done * 9 / 10, Down: done / 10, Errors: 0, InFlight: min(1000, total-done)}
		line := m.Line(at, p, width)
		if n := len([]rune(line)); n > width {
			t.Errorf("line of %d columns on a terminal of %d: %q", n, width, line)
		}
		fmt.Fprintf(&out, "%6.1fs %s\n", at.Sub(clock0).Seconds(), line)
	}
	step(0, 0, 120)                       // the first frame: nothing known yet
	step(200*time.Millisecond, 5000, 120) // still under half a second
	for i := 0; i < 10; i++ {
		step(time.Second, 5000, 120) // 5000/s
	}
	for i := 0; i < 8; i++ {
		step(time.Second, 500, 120) // slowed to 500/s: the rate follows within the window
	}
	for i := 0; i < 7; i++ {
		step(time.Second, 0, 120) // stalled: rate 0, eta unknown, never 0
	}
	step(time.Second, 1, 120) // one target finishes: a long ETA, not 0
	for _, w := range []int{100, 80, 60, 40, 20} {
		step(time.Second, 2000, w) // narrower terminals: pieces dropped in order
	}
	for done < total {
		step(time.Second, 3000, 120)
	}
	golden.Check(t, "progress.golden", out.String())
}

// TestETANeverZeroWhileWorkRemains: however few targets are left and however
// fast they finish, the ETA reads at least 1s; 0s only when none is left.
func TestETANeverZeroWhileWorkRemains(t *testing.T) {
	t.Parallel()
	var m Meter
	m.Line(clock0, Progress{Done: 0, Total: 1000000}, 200)
	line := m.Line(clock0.Add(time.Second), Progress{Done: 999999, Total: 1000000}, 200)
	if !strings.Contains(line, "eta 1s") {
		t.Errorf("one target left at 999999/s: %q", line)
	}
	line = m.Line(clock0.Add(2*time.Second), Progress{Done: 1000000, Total: 1000000}, 200)
	if !strings.Contains(line, "eta 0s") {
		t.Errorf("none left: %q", line)
	}
	// A clock that goes back (a snapshot taken late) never makes a negative rate.
	m2 := Meter{}
	m2.Line(clock0, Progress{Done: 10, Total: 100}, 200)
	line = m2.Line(clock0.Add(-time.Second), Progress{Done: 5, Total: 100}, 200)
	if strings.Contains(line, "-") {
		t.Errorf("negative: %q", line)
	}
}

// TestTerminalNeverTears: results written to stdout and stderr of the same
// terminal while the progress line is drawn: every status frame starts at
// the beginning of a line and is erased before a result is written, so the
// screen (replayed) shows each result whole on its own line and the status
// line last.
func TestTerminalNeverTears(t *testing.T) {
	t.Parallel()
	var screen lab.SyncBuffer
	tm := NewTerminal(&screen)
	stdout, stderr := tm.Writer(&screen), tm.Writer(&screen)
	tick := make(chan time.Time)
	now := clock0
	var mu sync.Mutex
	var done int64
	stop := startProgress(tm, func() Progress {
		mu.Lock()
		defer mu.Unlock()
		return Progress{Done: done, Total: 100}
	}, tick, func() time.Time { return now })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the ticker
		defer wg.Done()
		for i := 0; i < 50; i++ {
			tick <- clock0
		}
	}()
	for i := 0; i < 50; i++ {
		w := stdout
		if i%3 == 0 {
			w = stderr
		}
		fmt.Fprintf(w, "result %02d line one\nresult %02d line two\n", i, i)
		mu.Lock()
		done++
		mu.Unlock()
	}
	// After a result line the status line is drawn again, below it.
	testwait.Until(testwait.Hang, func() bool { return strings.HasPrefix(replay(screen.String())[len(replay(screen.String()))-1], "[") })
	if lines := replay(screen.String()); !strings.HasPrefix(lines[len(lines)-2], "result 49 line two") {
		t.Errorf("the status line is not below the last result: %q", lines[len(lines)-2:])
	}
	// A result written in two pieces: no frame in its middle.
	io1 := []byte("half a ")
	stdout.Write(io1)
	tick <- clock0
	stdout.Write([]byte("line\n"))
	wg.Wait()
	stop()
	lines := replay(screen.String())
	var results []string
	for _, l := range lines {
		if strings.HasPrefix(l, "result") || strings.HasPrefix(l, "half") {
			results = append(results, l)
		} else if l != "" {
			t.Errorf("a line on the screen that is neither a result nor empty: %q", l)
		}
	}
	if len(results) != 101 || results[100] != "half a line" {
		t.Errorf("%d result lines on the screen, last %q; screen:\n%s", len(results), results[len(results)-1], strings.Join(lines, "\n"))
	}
	for i := 0; i < 50; i++ {
		if results[2*i] != fmt.Sprintf("result %02d line one", i) || results[2*i+1] != fmt.Sprintf("result %02d line two", i) {
			t.Fatalf("result %d torn: %q %q", i, results[2*i], results[2*i+1])
		}
	}
	if !strings.HasSuffix(screen.String(), "\r\x1b[K") {
		t.Errorf("status line not erased at stop")
	}
}

// replay plays bytes on a minimal terminal (\r, \n, erase to end of line,
// printable text) and returns its lines.
func replay(s string) []string {
	lines := []string{""}
	col := 0
	for i := 0; i < len(s); i++ {
		cur := &lines[len(lines)-1]
		switch {
		case s[i] == '\r':
			col = 0
		case s[i] == '\n':
			lines = append(lines, "")
			col = 0
		case strings.HasPrefix(s[i:], "\x1b[K"):
			r := []rune(*cur)
			*cur = string(r[:min(col, len(r))])
			i += 2
		default:
			r := []rune(*cur)
			c := []rune(s[i:])[0]
			i += len(string(c)) - 1
			if col < len(r) {
				r[col] = c
			} else {
				r = append(r, c)
			}
			*cur = string(r)
			col++
		}
	}
	return lines
}

// TestProgressTicks: the line loop draws a frame at start and on each tick,
// at the injected clock's time, and stop ends it.
func TestProgressTicks(t *testing.T) {
	t.Parallel()
	var screen lab.SyncBuffer
	tm := NewTerminal(&screen)
	tick := make(chan time.Time)
	var mu sync.Mutex
	now := clock0
	done := int64(0)
	stop := startProgress(tm, func() Progress {
		mu.Lock()
		defer mu.Unlock()
		return Progress{Done: done, Total: 10000}
	}, tick, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	for i := 0; i < 4; i++ {
		mu.Lock()
		now, done = now.Add(time.Second), done+1000
		mu.Unlock()
		tick <- now
	}
	testwait.Until(testwait.Hang, func() bool { return strings.Contains(screen.String(), "4000/10000 40%") })
	stop()
	got := screen.String()
	if !strings.Contains(got, "1000 targets/s  eta 6s") {
		t.Errorf("frames lack the rate and ETA of the fake clock: %q", got)
	}
}
