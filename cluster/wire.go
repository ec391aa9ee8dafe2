package cluster

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"

	"github.com/fanout/fanout/job"
)

// Results travel between worker and submitter as a gob stream of
// job.Result values: several times cheaper to encode and decode than the
// public JSON form, which matters when one submitter takes in a whole /16
// or /8. Both ends are fanout; the JSON contract is what users see.

// wireResult carries what gob would lose: it sends no zero values, so a
// pointer to exit code 0 or an empty (not absent) output would arrive nil.
type wireResult struct {
	R                             job.Result
	HasExit, HasStdout, HasStderr bool
}

func toWire(r job.Result) wireResult {
	return wireResult{R: r, HasExit: r.ExitCode != nil, HasStdout: r.Stdout != nil, HasStderr: r.Stderr != nil}
}

func (w wireResult) result() job.Result {
	r := w.R
	if w.HasExit && r.ExitCode == nil {
		r.ExitCode = new(int)
	}
	if w.HasStdout && r.Stdout == nil {
		r.Stdout = []byte{}
	}
	if w.HasStderr && r.Stderr == nil {
		r.Stderr = []byte{}
	}
	return r
}

// encodeBatch encodes results from the start of rs until the next one would
// take the message past max bytes (at least one). It returns the message and
// how many results it holds.
func encodeBatch(rs []job.Result, max int) ([]byte, int, error) {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	n := 0
	for _, r := range rs {
		before := buf.Len()
		if err := enc.Encode(toWire(r)); err != nil {
			return nil, 0, fmt.Errorf("result %d: %w", r.Index, err)
		}
		if buf.Len() <= max {
			n++
			continue
		}
		if n > 0 {
			buf.Truncate(before) // each Encode after the first is a self-contained value
			break
		}
		// One Result over the limit alone (huge outputs): drop the outputs.
		buf.Reset()
		enc = gob.NewEncoder(&buf)
		r.Stdout, r.Stderr, r.Truncated = nil, nil, true
		if err := enc.Encode(toWire(r)); err != nil {
			return nil, 0, fmt.Errorf("result %d: %w", r.Index, err)
		}
		n = 1
		break
	}
	return buf.Bytes(), n, nil
}

// decodeBatch decodes a message made by encodeBatch.
func decodeBatch(data []byte) ([]job.Result, error) {
	dec := gob.NewDecoder(bytes.NewReader(data))
	var out []job.Result
	for {
		var w wireResult
		if err := dec.Decode(&w); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("results message: %w", err)
		}
		out = append(out, w.result())
	}
}
