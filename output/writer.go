package output

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fanout/fanout/job"
)

// Formats are the accepted result formats, in the order help lists them.
var Formats = []string{"text", "jsonl", "csv"}

// Filter selects the Results a Writer prints, like fping's -a and -u. The
// zero Filter (or both set) prints everything.
type Filter struct {
	Alive bool // print targets that are up
	Dead  bool // print targets that are not (down or error)
}

// Keep reports whether f prints r.
func (f Filter) Keep(r *job.Result) bool {
	if f.Alive == f.Dead {
		return true
	}
	return (r.Status == job.Up) == f.Alive
}

// New returns a Writer of the named format on w: "text" (one line per
// target, see Text), "jsonl" (one JSON object per line, see SCHEMA.md) or
// "csv" (a header row, then one row per target, see CSVHeader). Output is
// buffered; Close flushes it.
func New(format string, w io.Writer, f Filter) (Writer, error) {
	switch format {
	case "text":
		return newLineWriter(w, f, false), nil
	case "jsonl":
		return newLineWriter(w, f, true), nil
	case "csv":
		bw := bufio.NewWriterSize(w, 64<<10)
		return &csvWriter{w: csv.NewWriter(bw), bw: bw, f: f}, nil
	}
	return nil, fmt.Errorf("output format %q: want one of text, jsonl, csv", format)
}

// lineWriter writes one line per Result, buffered. On a terminal every line
// is flushed as it is written; elsewhere at most every flushEvery, so a slow
// sweep piped into another program still streams.
type lineWriter struct {
	w         *bufio.Writer
	f         Filter
	json      bool // else text; a direct call keeps r on the stack
	buf       []byte
	tty       bool
	lastFlush time.Time
}

const flushEvery = 200 * time.Millisecond

func newLineWriter(w io.Writer, f Filter, json bool) *lineWriter {
	l := &lineWriter{w: bufio.NewWriterSize(w, 64<<10), f: f, json: json, lastFlush: time.Now()}
	switch t := w.(type) {
	case *os.File:
		l.tty = IsTerminal(t)
	case interface{ Terminal() bool }: // a Terminal's writer
		l.tty = t.Terminal()
	}
	return l
}

func (l *lineWriter) Write(r job.Result) error {
	if !l.f.Keep(&r) {
		return nil
	}
	if l.json {
		l.buf = job.AppendJSON(l.buf[:0], &r)
	} else {
		l.buf = appendText(l.buf[:0], &r)
	}
	l.buf = append(l.buf, '\n')
	if _, err := l.w.Write(l.buf); err != nil {
		return err
	}
	if l.tty {
		return l.w.Flush()
	}
	if now := time.Now(); now.Sub(l.lastFlush) >= flushEvery {
		l.lastFlush = now
		return l.w.Flush()
	}
	return nil
}

func (l *lineWriter) Close() error { return l.w.Flush() }

// Flush writes out what is buffered (a text sink on a terminal flushes
// after each batch so lines appear as targets complete).
func (l *lineWriter) Flush() error { return l.w.Flush() }

// CSVHeader is the CSV format's first row: the CSV columns of job.Fields,
// in their order, documented in SCHEMA.md (columns are appended, never
// reordered).
var CSVHeader = func() []string {
	fs := job.Fields()
	h := make([]string, len(fs))
	for i := range fs {
		h[i] = fs[i].CSV
	}
	return h
}()

type csvWriter struct {
	w      *csv.Writer
	bw     *bufio.Writer
	f      Filter
	header bool
	row    []string
	r      job.Result
}

func (c *csvWriter) Write(r job.Result) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	if !c.f.Keep(&r) {
		return nil
	}
	c.r = r // as lineWriter does: no allocation
	c.row = csvRow(c.row[:0], &c.r)
	return c.w.Write(c.row)
}

func (c *csvWriter) Close() error {
	if !c.header { // an empty sweep still gets its header
		c.header = true
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

func csvRow(row []string, r *job.Result) []string {
	fs := job.Fields()
	for i := range fs {
		row = append(row, csvCell(&fs[i], r))
	}
	return row
}

// csvCell is field f of r in CSV: the units of the JSON form, an empty
// cell where JSON omits the field.
func csvCell(f *job.Field, r *job.Result) string {
	if f.Kind == job.KindRatio {
		if v, ok := f.Ratio(r); ok {
			return strconv.FormatFloat(v, 'f', -1, 64) // not rounded, unlike JSON
		}
		return ""
	}
	switch p := f.Ptr(r); f.Kind {
	case job.KindUint:
		if v := *p.(*uint64); v != 0 || f.Always {
			return strconv.FormatUint(v, 10)
		}
	case job.KindInt:
		if v := *p.(*int); v != 0 || f.Always {
			return strconv.Itoa(v)
		}
	case job.KindString:
		return *p.(*string)
	case job.KindDuration:
		// milliseconds, cut (not rounded) to microseconds
		if v := *p.(*time.Duration); v != 0 || f.Always {
			return strconv.FormatFloat(float64(v.Microseconds())/1e3, 'f', -1, 64)
		}
	case job.KindOptInt:
		if v := *p.(**int); v != nil {
			return strconv.Itoa(*v)
		}
	case job.KindBytes:
		return printable(*p.(*[]byte))
	case job.KindBool:
		if v := *p.(*bool); v || f.Always {
			return strconv.FormatBool(v)
		}
	case job.KindTime:
		if v := p.(*time.Time); !v.IsZero() || f.Always {
			return v.UTC().Format(time.RFC3339Nano)
		}
	default:
		panic("output: CSV of field " + f.Name + " of kind " + f.Kind.String())
	}
	return ""
}

// printable is b as a string, invalid UTF-8 replaced so a CSV stays text.
func printable(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// Filtered is w printing only the Results f keeps: the command-specific
// writers (ssh inline, gathered, --outdir) honour --alive and --dead as the
// formats of New do. The zero Filter returns w itself.
func Filtered(w Writer, f Filter) Writer {
	if f.Alive == f.Dead {
		return w
	}
	return &filtered{w: w, f: f}
}

type filtered struct {
	w Writer
	f Filter
}

func (fw *filtered) Write(r job.Result) error {
	if !fw.f.Keep(&r) {
		return nil
	}
	return fw.w.Write(r)
}

func (fw *filtered) Close() error { return fw.w.Close() }

// Flush passes a periodic flush on to a buffering writer.
func (fw *filtered) Flush() error {
	if fl, ok := fw.w.(interface{ Flush() error }); ok {
		return fl.Flush()
	}
	return nil
}
