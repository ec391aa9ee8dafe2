package output

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"

	"github.com/fanout/fanout/job"
)

// Inline writes each target's output as it completes, every line prefixed
// with the host, as pdsh and `pssh -i` do:
//
//	web01: hello world
//
// Stderr lines go to the Stderr writer (stdout's when nil), as do the notes
// about targets that are not up ("web02: [fanout] exit status 3"). Hosts,
// lines and notes are escaped as AppendSafe does (tabs kept, a CRLF line end
// is a line end), so a host's output cannot drive the terminal.
type Inline struct {
	w, e *bufio.Writer
	same bool
	buf  []byte // one escaped line
}

// NewInline writes stdout lines to w and stderr lines and notes to stderr
// (to w when stderr is nil).
func NewInline(w, stderr io.Writer) *Inline {
	in := &Inline{w: bufio.NewWriterSize(w, 64<<10)}
	if stderr == nil || stderr == w {
		in.e, in.same = in.w, true
	} else {
		in.e = bufio.NewWriterSize(stderr, 16<<10)
	}
	return in
}

var _ Writer = (*Inline)(nil)

// Write prints r's output lines and, when it is not up, why.
func (in *Inline) Write(r job.Result) error {
	prefix := Safe(r.Host) + ": "
	in.prefixLines(in.w, prefix, r.Stdout)
	in.prefixLines(in.e, prefix, r.Stderr)
	if r.Truncated {
		fmt.Fprintf(in.e, "%s[fanout] output truncated\n", prefix)
	}
	if r.Status != job.Up {
		fmt.Fprintf(in.e, "%s[fanout] %s\n", prefix, Safe(why(r)))
	}
	// Flush per target: a user watching a slow sweep sees lines at once,
	// and lines of two hosts never interleave.
	if err := in.w.Flush(); err != nil {
		return err
	}
	if !in.same {
		return in.e.Flush()
	}
	return nil
}

// Close flushes.
func (in *Inline) Close() error {
	if err := in.w.Flush(); err != nil {
		return err
	}
	return in.e.Flush()
}

// prefixLines writes each line of b to w after prefix, escaped, ending the
// last line.
func (in *Inline) prefixLines(w *bufio.Writer, prefix string, b []byte) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'}) // CRLF
		in.buf = append(AppendSafe(append(in.buf[:0], prefix...), string(line), false), '\n')
		w.Write(in.buf)
	}
}

// why is the one-line reason a target is not up.
func why(r job.Result) string {
	switch {
	case r.Class == job.ClassExit && r.ExitCode != nil:
		return "exit status " + strconv.Itoa(*r.ExitCode)
	case r.Error != "":
		return string(r.Class) + ": " + r.Error
	}
	return string(r.Status) + " " + string(r.Class)
}
