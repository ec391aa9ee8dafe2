package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fanout/fanout/job"
)

// Results travel between worker and submitter in a compact binary form of
// job.Result (varints, length-prefixed strings, times in their binary
// form): several times cheaper to encode and decode than JSON or gob, which
// matters when one submitter takes in a whole /16 or /8 while the worker
// shares its machine. Both ends are fanout; the JSON contract is what users
// see. Anyone who may publish results can store any bytes: the decoder
// takes each length from the message only after checking the message holds
// that much, and never panics (FuzzDecodeBatch).

// wireMagic starts a batch; its last byte is the format's version.
var wireMagic = []byte{0xff, 0x00, 1}

// Result flags on the wire: what a nil/non-nil distinction or bool needs.
const (
	wireHasExit = 1 << iota
	wireHasStdout
	wireHasStderr
	wireTruncated
)

// wireFields is how many fields of job.Result appendResult writes: a test
// holds it to the struct so that a new field cannot be dropped silently.
const wireFields = 22

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	n := len(b)
	b = append(b, 0)
	b, err := t.AppendBinary(b)
	if err != nil { // a zone offset no real zone has: the same instant in UTC
		b, _ = t.UTC().AppendBinary(b)
	}
	b[n] = byte(len(b) - n - 1)
	return b
}

// appendResult appends r's wire form to b.
func appendResult(b []byte, r *job.Result) []byte {
	b = binary.AppendUvarint(b, r.Index)
	b = appendString(b, r.Host)
	b = appendString(b, r.Addr)
	b = binary.AppendVarint(b, int64(r.Port))
	b = appendString(b, r.Job)
	b = appendString(b, string(r.Status))
	b = appendString(b, string(r.Class))
	b = appendString(b, r.Error)
	for _, d := range [...]time.Duration{r.RTT, time.Duration(r.Sent), time.Duration(r.Recv), r.RTTMin, r.RTTAvg, r.RTTMax} {
		b = binary.AppendVarint(b, int64(d))
	}
	var f byte
	if r.ExitCode != nil {
		f |= wireHasExit
	}
	if r.Stdout != nil {
		f |= wireHasStdout
	}
	if r.Stderr != nil {
		f |= wireHasStderr
	}
	if r.Truncated {
		f |= wireTruncated
	}
	b = append(b, f)
	if r.ExitCode != nil {
		b = binary.AppendVarint(b, int64(*r.ExitCode))
	}
	if r.Stdout != nil {
		b = binary.AppendUvarint(b, uint64(len(r.Stdout)))
		b = append(b, r.Stdout...)
	}
	if r.Stderr != nil {
		b = binary.AppendUvarint(b, uint64(len(r.Stderr)))
		b = append(b, r.Stderr...)
	}
	b = binary.AppendVarint(b, int64(r.Attempts))
	b = appendTime(b, r.Start)
	b = appendTime(b, r.End)
	return appendString(b, r.Worker)
}

// encodeBatch encodes results from the start of rs until the next one would
// take the message past max bytes (at least one). It returns the message and
// how many results it holds.
func encodeBatch(rs []job.Result, max int) ([]byte, int, error) {
	b := make([]byte, 0, min(max, 160*len(rs)+len(wireMagic)))
	b = append(b, wireMagic...)
	n := 0
	for i := range rs {
		before := len(b)
		b = appendResult(b, &rs[i])
		if len(b) <= max {
			n++
			continue
		}
		if n > 0 {
			b = b[:before]
			break
		}
		// One Result over the limit alone (huge outputs): drop the outputs.
		r := rs[i]
		r.Stdout, r.Stderr, r.Truncated = nil, nil, true
		b = appendResult(b[:before], &r)
		n = 1
		break
	}
	return b, n, nil
}

// decodeBatch decodes a message made by encodeBatch. Its result count
// grows with what decodes: a message's bytes bound its allocations.
func decodeBatch(data []byte) ([]job.Result, error) {
	if !bytes.HasPrefix(data, wireMagic) {
		return nil, errors.New("results message: not a fanout results batch (or from another version)")
	}
	d := wireDecoder{b: data[len(wireMagic):], strs: map[string]string{}}
	out := make([]job.Result, 0, len(d.b)/64)
	for len(d.b) > 0 {
		var r job.Result
		d.result(&r)
		if d.err != nil {
			return nil, fmt.Errorf("results message: result %d: %w", len(out), d.err)
		}
		out = append(out, r)
	}
	return out, nil
}

var errShort = errors.New("truncated")

// wireDecoder reads one message; the first error sticks.
type wireDecoder struct {
	b    []byte
	err  error
	strs map[string]string // one copy of each short string the message repeats
}

func (d *wireDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *wireDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *wireDecoder) fail() {
	if d.err == nil {
		d.err = errShort
	}
	d.b = nil
}

func (d *wireDecoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// str returns the next string, shared with its earlier copies when short
// (job kind, status, class, worker, a common error): fewer allocations.
func (d *wireDecoder) str() string {
	v := d.bytes()
	if len(v) == 0 || len(v) > 32 {
		return string(v)
	}
	if s, ok := d.strs[string(v)]; ok {
		return s
	}
	if len(d.strs) >= 256 { // addresses are all different: stop remembering
		return string(v)
	}
	s := string(v)
	d.strs[s] = s
	return s
}

func (d *wireDecoder) uniq() string { return string(d.bytes()) }

func (d *wireDecoder) time() time.Time {
	var t time.Time
	if len(d.b) == 0 {
		d.fail()
		return t
	}
	n := int(d.b[0])
	if n+1 > len(d.b) {
		d.fail()
		return t
	}
	if err := t.UnmarshalBinary(d.b[1 : n+1]); err != nil && d.err == nil {
		d.err = err
	}
	d.b = d.b[n+1:]
	return t
}

func (d *wireDecoder) result(r *job.Result) {
	r.Index = d.uvarint()
	r.Host = d.uniq()
	r.Addr = d.uniq()
	r.Port = int(d.varint())
	r.Job = d.str()
	r.Status = job.Status(d.str())
	r.Class = job.Class(d.str())
	r.Error = d.str()
	r.RTT = time.Duration(d.varint())
	r.Sent = int(d.varint())
	r.Recv = int(d.varint())
	r.RTTMin = time.Duration(d.varint())
	r.RTTAvg = time.Duration(d.varint())
	r.RTTMax = time.Duration(d.varint())
	if len(d.b) == 0 {
		d.fail()
		return
	}
	f := d.b[0]
	d.b = d.b[1:]
	if f&wireHasExit != 0 {
		c := int(d.varint())
		r.ExitCode = &c
	}
	if f&wireHasStdout != 0 {
		r.Stdout = append([]byte{}, d.bytes()...)
	}
	if f&wireHasStderr != 0 {
		r.Stderr = append([]byte{}, d.bytes()...)
	}
	r.Truncated = f&wireTruncated != 0
	r.Attempts = int(d.varint())
	r.Start = d.time()
	r.End = d.time()
	r.Worker = d.str()
}
