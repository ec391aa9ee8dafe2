package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/fanout/fanout/job"
)

// Results travel between worker and submitter in a compact binary form of
// job.Result (varints, length-prefixed strings, times in their binary
// form): several times cheaper to encode and decode than JSON, which
// matters when one submitter takes in a whole /16 or /8 while the worker
// shares its machine. Both ends are fanout; the JSON contract is what users
// see. Anyone who may publish results can store any bytes: the decoder
// takes each length from the message only after checking the message holds
// that much, and never panics (FuzzDecodeBatch).
//
// The form follows the table of job.Fields: a result is a uvarint mask
// whose bit i says that the i-th field of the table that travels (all but
// derived ones, as loss) is present, then the present fields' values in
// table order. A field is present when it is not zero (0, "", nil, false,
// the zero time) or when the JSON form always has it (index, host, ...),
// and a result must carry those: a bool is its bit alone, a nil output or
// exit code an absent bit, an empty one a present bit and an empty value.

// wireVersion is the form's version, the last byte of wireMagic. Version 1
// wrote the fields in an order of its own, without a mask.
const wireVersion = 2

// wireMagic starts a batch; its last byte is the format's version.
var wireMagic = []byte{0xff, 0x00, wireVersion}

// wireFields are the fields of job.Fields that travel, in table order;
// wireAlways are the mask bits of those a result must carry.
var wireFields, wireAlways = func() ([]*job.Field, uint64) {
	var fs []*job.Field
	var always uint64
	all := job.Fields()
	for i := range all {
		f := &all[i]
		if f.Derived {
			continue
		}
		if f.Always && f.Kind != job.KindBool && f.Kind != job.KindOptInt && f.Kind != job.KindBytes {
			always |= 1 << len(fs) // present even when zero (a bool is its bit; nil is absent)
		}
		fs = append(fs, f)
	}
	if len(fs) > 64 {
		panic(fmt.Sprintf("cluster: %d Result fields travel, the wire mask holds 64", len(fs)))
	}
	return fs, always
}()

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

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// maskRoom is where appendResult writes the mask, before the fields whose
// presence it says, then moves them up to its end.
var maskRoom [binary.MaxVarintLen64]byte

// appendResult appends r's wire form to b. The fields are written by code
// generated from the table (wire_gen.go); a field it does not know yet
// (the test build's) by the table itself.
func appendResult(b []byte, r *job.Result) []byte {
	at := len(b)
	b = append(b, maskRoom[:]...)
	b, mask := appendFieldsGenerated(b, r)
	if generatedWireFields < len(wireFields) {
		// Through a copy: r passed to the table's accessors would move to
		// the heap, one allocation per Result, even where none is needed.
		c := *r
		b, mask = appendFieldsByTable(b, &c, mask, generatedWireFields)
	}
	n := binary.PutUvarint(b[at:], mask)
	return append(b[:at+n], b[at+len(maskRoom):]...)
}

// appendFieldsByTable appends the fields of r from wireFields[from] on that
// are present, adding their bits to mask: what wire_gen.go does for the
// fields it knows (TestWireByTable holds them equal).
func appendFieldsByTable(b []byte, r *job.Result, mask uint64, from int) ([]byte, uint64) {
	for i := from; i < len(wireFields); i++ {
		f := wireFields[i]
		switch p := f.Ptr(r); f.Kind {
		case job.KindUint:
			v := *p.(*uint64)
			if v == 0 && !f.Always {
				continue
			}
			b = binary.AppendUvarint(b, v)
		case job.KindInt:
			v := *p.(*int)
			if v == 0 && !f.Always {
				continue
			}
			b = binary.AppendVarint(b, int64(v))
		case job.KindString:
			v := *p.(*string)
			if v == "" && !f.Always {
				continue
			}
			b = appendString(b, v)
		case job.KindDuration:
			v := *p.(*time.Duration)
			if v == 0 && !f.Always {
				continue
			}
			b = binary.AppendVarint(b, int64(v))
		case job.KindOptInt:
			v := *p.(**int)
			if v == nil {
				continue
			}
			b = binary.AppendVarint(b, int64(*v))
		case job.KindBytes:
			v := *p.(*[]byte)
			if v == nil {
				continue
			}
			b = appendBytes(b, v)
		case job.KindBool:
			if !*p.(*bool) {
				continue
			}
		case job.KindTime:
			v := p.(*time.Time)
			if v.IsZero() && !f.Always {
				continue
			}
			b = appendTime(b, *v)
		default:
			panic("cluster: no wire form for field " + f.Name + " of kind " + f.Kind.String())
		}
		mask |= 1 << i
	}
	return b, mask
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
// grows with what decodes: a message's bytes bound its allocations (a
// result takes at least the fields it must carry, some 40 bytes).
func decodeBatch(data []byte) ([]job.Result, error) {
	if len(data) < len(wireMagic) || !bytes.HasPrefix(data, wireMagic[:len(wireMagic)-1]) {
		return nil, errors.New("results message: not a fanout results batch")
	}
	if v := data[len(wireMagic)-1]; v != wireVersion {
		return nil, fmt.Errorf("results message: format version %d, this fanout reads version %d only: run the same fanout release on workers and submitter", v, wireVersion)
	}
	d := wireDecoder{b: data[len(wireMagic):], strs: map[string]string{}}
	out := make([]job.Result, 0, len(d.b)/64)
	for len(d.b) > 0 {
		out = append(out, job.Result{}) // decoded in place: a local would escape
		d.result(&out[len(out)-1])
		if d.err != nil {
			return nil, fmt.Errorf("results message: result %d: %w", len(out)-1, d.err)
		}
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
	mask := d.uvarint()
	if d.err != nil {
		return
	}
	if unknown := mask &^ (1<<len(wireFields) - 1); unknown != 0 {
		d.err = fmt.Errorf("field %d unknown (this fanout has %d)", bits.TrailingZeros64(unknown), len(wireFields))
		return
	}
	if missing := wireAlways &^ mask; missing != 0 {
		d.err = fmt.Errorf("field %s missing", wireFields[bits.TrailingZeros64(missing)].JSON)
		return
	}
	d.readFieldsGenerated(r, mask)
	if generatedWireFields < len(wireFields) {
		d.readFieldsByTable(r, mask, generatedWireFields)
	}
}

// readFieldsByTable reads the fields of mask from wireFields[from] on into
// r: what wire_gen.go does for the fields it knows.
func (d *wireDecoder) readFieldsByTable(r *job.Result, mask uint64, from int) {
	for i := from; i < len(wireFields) && d.err == nil; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		switch f := wireFields[i]; f.Kind {
		case job.KindUint:
			*f.Ptr(r).(*uint64) = d.uvarint()
		case job.KindInt:
			*f.Ptr(r).(*int) = int(d.varint())
		case job.KindString:
			if f.Repeats {
				*f.Ptr(r).(*string) = d.str()
			} else {
				*f.Ptr(r).(*string) = d.uniq()
			}
		case job.KindDuration:
			*f.Ptr(r).(*time.Duration) = time.Duration(d.varint())
		case job.KindOptInt:
			v := int(d.varint())
			*f.Ptr(r).(**int) = &v
		case job.KindBytes:
			*f.Ptr(r).(*[]byte) = append([]byte{}, d.bytes()...)
		case job.KindBool:
			*f.Ptr(r).(*bool) = true
		case job.KindTime:
			*f.Ptr(r).(*time.Time) = d.time()
		}
	}
}
