package output

// What a watch prints: change events (by default), every result of every
// round (--all), or the current up or down set after each round
// (--alive/--dead), in the three formats, and a summary line per round.

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// WatchCSVHeader is the CSV header of a watch: a sweep's columns, then the
// watch's. A result row (--all) leaves the change columns empty.
var WatchCSVHeader = append(append([]string(nil), CSVHeader...),
	"watch", "round", "change", "id", "prev_status", "prev_class", "since")

// WatchMode says what a WatchWriter prints.
type WatchMode struct {
	// All prints every result of every round, with its round, beside the
	// change events.
	All bool
	// Set, when it selects (Alive or Dead), prints the round's results it
	// keeps instead of the change events: the current set after each round.
	Set Filter
}

// WatchWriter prints a watch as a watch.Observer. Call Close at the end.
type WatchWriter struct {
	format    string
	mode      WatchMode
	w         *bufio.Writer
	csv       *csv.Writer
	tty       bool
	buf       []byte
	row       []string
	lastFlush time.Time
	id        string // the watch's, from RoundStart
	err       error  // the first write error; later writes are dropped
}

var _ watch.Observer = (*WatchWriter)(nil)

// NewWatch returns a WatchWriter of format (text, jsonl, csv) on w.
func NewWatch(format string, w io.Writer, m WatchMode) (*WatchWriter, error) {
	switch format {
	case "text", "jsonl", "csv":
	default:
		return nil, fmt.Errorf("output format %q: want one of text, jsonl, csv", format)
	}
	ww := &WatchWriter{format: format, mode: m, w: bufio.NewWriterSize(w, 64<<10), lastFlush: time.Now()}
	if f, ok := w.(*os.File); ok {
		ww.tty = IsTerminal(f)
	}
	if format == "csv" {
		ww.csv = csv.NewWriter(ww.w)
		ww.check(ww.csv.Write(WatchCSVHeader))
	}
	return ww, nil
}

// Err is the first write error (a closed pipe): the watch should stop.
func (ww *WatchWriter) Err() error { return ww.err }

func (ww *WatchWriter) check(err error) {
	if err != nil && ww.err == nil {
		ww.err = err
	}
}

// RoundStart notes the watch's id: a round's lines come as it runs.
func (ww *WatchWriter) RoundStart(r watch.Round) { ww.id = r.Watch }

// Result prints r under --all, or under --alive/--dead when it is kept.
func (ww *WatchWriter) Result(round uint64, r job.Result) {
	switch {
	case ww.err != nil:
		return
	case ww.mode.All:
	case ww.mode.Set.Alive != ww.mode.Set.Dead && ww.mode.Set.Keep(&r):
	default:
		return
	}
	ww.recordResult(round, r)
}

// recordResult is record of a Result passed by value: apart from Result,
// so that the copy moves to the heap only for a line printed, not for every
// Result of every round (300 B a target, most of a watch's garbage).
//
//go:noinline
func (ww *WatchWriter) recordResult(round uint64, r job.Result) { ww.record(round, &r, nil) }

// Change prints c, unless --alive or --dead print the set instead.
func (ww *WatchWriter) Change(c watch.Change) {
	if ww.err != nil || ww.mode.Set.Alive != ww.mode.Set.Dead {
		return
	}
	ww.record(c.Round, &c.Result, &c)
}

// RoundEnd flushes the round's lines.
func (ww *WatchWriter) RoundEnd(watch.Round) {
	if ww.err == nil {
		ww.check(ww.flush())
	}
}

// Flush writes out what is buffered.
func (ww *WatchWriter) Flush() error {
	if ww.err != nil {
		return ww.err
	}
	ww.check(ww.flush())
	return ww.err
}

// Close flushes.
func (ww *WatchWriter) Close() error { return ww.Flush() }

func (ww *WatchWriter) flush() error {
	ww.lastFlush = time.Now()
	if ww.csv != nil {
		ww.csv.Flush()
		if err := ww.csv.Error(); err != nil {
			return err
		}
	}
	return ww.w.Flush()
}

// record writes one line: a result of round (c nil) or a change.
func (ww *WatchWriter) record(round uint64, r *job.Result, c *watch.Change) {
	switch ww.format {
	case "csv":
		ww.row = csvRow(ww.row[:0], r)
		ww.row = append(ww.row, ww.id, strconv.FormatUint(round, 10), "", "", "", "", "")
		if c != nil {
			n := len(CSVHeader)
			ww.row[n+2], ww.row[n+3] = string(c.Kind), c.ID
			ww.row[n+4], ww.row[n+5] = string(c.PrevStatus), string(c.PrevClass)
			if !c.Since.IsZero() {
				ww.row[n+6] = c.Since.UTC().Format(time.RFC3339Nano)
			}
		}
		ww.check(ww.csv.Write(ww.row))
	case "jsonl":
		ww.buf = AppendWatchJSON(ww.buf[:0], ww.id, round, r, c)
		ww.buf = append(ww.buf, '\n')
		_, err := ww.w.Write(ww.buf)
		ww.check(err)
	default:
		ww.buf = AppendWatchText(ww.buf[:0], round, r, c)
		ww.buf = append(ww.buf, '\n')
		_, err := ww.w.Write(ww.buf)
		ww.check(err)
	}
	if ww.tty || time.Since(ww.lastFlush) >= flushEvery {
		ww.check(ww.flush())
	}
}

// AppendWatchJSON appends the JSON record of a change (c set) or of a
// result of round (c nil, --all) of watch watchID: the Result's own
// record, as a sweep writes it, plus "watch" and "round"; a change adds "change", "id",
// "prev_status", and "prev_class" and "since" when it had them.
func AppendWatchJSON(b []byte, watchID string, round uint64, r *job.Result, c *watch.Change) []byte {
	b = job.AppendJSON(b, r)
	b = b[:len(b)-1] // the closing brace
	b = append(b, `,"watch":`...)
	b = job.AppendJSONString(b, watchID)
	b = append(b, `,"round":`...)
	b = strconv.AppendUint(b, round, 10)
	if c == nil {
		return append(b, '}')
	}
	b = append(b, `,"change":`...)
	b = job.AppendJSONString(b, string(c.Kind))
	b = append(b, `,"id":`...)
	b = job.AppendJSONString(b, c.ID)
	b = append(b, `,"prev_status":`...)
	b = job.AppendJSONString(b, string(c.PrevStatus))
	if c.PrevClass != "" {
		b = append(b, `,"prev_class":`...)
		b = job.AppendJSONString(b, string(c.PrevClass))
	}
	if !c.Since.IsZero() {
		b = append(b, `,"since":"`...)
		b = c.Since.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}')
}

// AppendWatchText appends the text line of a change or of a result:
//
//	round 3 down: 127.0.0.5 is unreachable (timeout), was up for 1m30s
//	round 4 up: 127.0.0.5 is alive (0.04 ms), was down (timeout) for 2s
//	round 1 down: 127.1.0.9 is unreachable (timeout)        new, down at once
//	round 5 output: web1 ok (exit 0, 12.00 ms): v2, was so for 5m0s
//	round 6 flapping: 127.0.0.7 is unreachable (timeout), was up for 1m0s
//	round 19 settled: 127.0.0.7 is alive (0.04 ms), was up for 1m0s
//	round 8 removed: 127.0.0.2, was up for 10m0s
//	round 3: 127.0.0.5 is alive (0.04 ms)                   --all, --alive
func AppendWatchText(b []byte, round uint64, r *job.Result, c *watch.Change) []byte {
	b = append(b, "round "...)
	b = strconv.AppendUint(b, round, 10)
	if c == nil {
		b = append(b, ": "...)
		return appendText(b, r)
	}
	b = append(b, ' ')
	b = AppendSafe(b, string(c.Kind), false)
	b = append(b, ": "...)
	if c.Kind == watch.Removed {
		b = appendName(b, r)
	} else {
		b = appendText(b, r)
	}
	if c.PrevStatus == "" {
		return b
	}
	b = append(b, ", was "...)
	switch {
	case c.Kind == watch.Output:
		b = append(b, "so"...)
	default:
		b = AppendSafe(b, string(c.PrevStatus), false)
		if c.PrevClass != "" {
			b = append(b, " ("...)
			b = AppendSafe(b, string(c.PrevClass), false)
			b = append(b, ')')
		}
	}
	if !c.Since.IsZero() {
		at := r.End
		if at.IsZero() {
			at = time.Now()
		}
		if d := at.Sub(c.Since); d > 0 {
			b = append(b, " for "...)
			b = append(b, d.Round(roundTo(d)).String()...)
		}
	}
	return b
}

// roundTo is the precision a "for 1m30s" is shown with.
func roundTo(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return time.Second
	case d >= time.Second:
		return 10 * time.Millisecond
	}
	return time.Millisecond
}

// RoundSummary prints a summary line per round on stderr, and the watch's
// totals at the end (Print):
//
//	round 3: 65536 targets, 65436 up, 100 down, 0 errors, 100 changes in 1.23s, on time
//	round 4: 65536 targets, 65536 up, 0 down, 0 errors, 100 changes in 2.61s, late by 0.61s
type RoundSummary struct {
	w       io.Writer
	rounds  uint64
	late    uint64
	changes uint64
	last    watch.Round
}

var _ watch.Observer = (*RoundSummary)(nil)

// NewRoundSummary prints on w (stderr).
func NewRoundSummary(w io.Writer) *RoundSummary { return &RoundSummary{w: w} }

func (s *RoundSummary) RoundStart(watch.Round)    {}
func (s *RoundSummary) Result(uint64, job.Result) {}
func (s *RoundSummary) Change(watch.Change)       {}

// RoundEnd prints the round's line.
func (s *RoundSummary) RoundEnd(r watch.Round) {
	s.rounds++
	if r.Late {
		s.late++
	}
	s.changes += uint64(r.Changes)
	s.last = r
	fmt.Fprintln(s.w, RoundLine(r))
}

// RoundLine is a round's summary line.
func RoundLine(r watch.Round) string {
	line := fmt.Sprintf("round %d: %d targets, %d up, %d down, %d errors, %d changes in %.2fs",
		r.N, r.Targets, r.Up, r.Down, r.Error, r.Changes, r.End.Sub(r.Start).Seconds())
	if r.Late {
		return line + fmt.Sprintf(", late by %.2fs", r.Start.Sub(r.Due).Seconds())
	}
	return line + ", on time"
}

// Print writes the watch's totals: "watch w1: 10 rounds (2 late), 200
// changes", and what an interruption left.
func (s *RoundSummary) Print(watchID string, interrupted bool) {
	fmt.Fprintf(s.w, "watch %s: %d rounds (%d late), %d changes\n", Safe(watchID), s.rounds, s.late, s.changes)
	if !interrupted {
		return
	}
	if polled := s.last.Up + s.last.Down + s.last.Error; s.rounds > 0 && polled < s.last.Targets {
		fmt.Fprintf(s.w, "interrupted: round %d ended early, its targets in flight finished (%d of %d polled)\n",
			s.last.N, polled, s.last.Targets)
	} else {
		fmt.Fprintf(s.w, "interrupted after round %d\n", s.last.N)
	}
}
