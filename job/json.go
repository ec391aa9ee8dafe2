package job

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends r's JSON form (output/SCHEMA.md) to b, without
// reflection: JSONL is the format of million-target sweeps. MarshalJSON
// writes the same bytes. The table's fields are written by code generated
// from it (json_gen.go, as fast as hand-written code); a field the
// generated code does not know yet (the test build's) by the table itself.
func AppendJSON(b []byte, r *Result) []byte {
	start := len(b)
	b = appendJSONGenerated(b, r)
	if generatedFields < len(resultFields) {
		// Through a copy: r passed to the table's accessors would move to
		// the heap, one allocation per Result, even where none is needed.
		c := *r
		for i := generatedFields; i < len(resultFields); i++ {
			b = resultFields[i].appendJSON(b, &c)
		}
	}
	if len(b) == start {
		return append(b, "{}"...)
	}
	b[start] = '{' // the first field's comma
	return append(b, '}')
}

// appendJSON appends `,"key":value`, or nothing when f is omitted: what
// json_gen.go does for f, by the table (TestJSONGenerated holds them equal).
func (f *Field) appendJSON(b []byte, r *Result) []byte {
	if f.Kind == KindRatio {
		if v, ok := f.ratio(r); ok {
			return appendRatio(append(b, f.jsonKey...), v)
		}
		return b
	}
	p := f.at(r)
	switch f.Kind {
	case KindUint:
		if v := *p.(*uint64); v != 0 || f.Always {
			return strconv.AppendUint(append(b, f.jsonKey...), v, 10)
		}
	case KindInt:
		if v := *p.(*int); v != 0 || f.Always {
			return strconv.AppendInt(append(b, f.jsonKey...), int64(v), 10)
		}
	case KindString:
		if v := *p.(*string); v != "" || f.Always {
			return appendString(append(b, f.jsonKey...), v)
		}
	case KindDuration:
		if v := *p.(*time.Duration); v != 0 || f.Always {
			return appendMs(append(b, f.jsonKey...), v)
		}
	case KindOptInt:
		if v := *p.(**int); v != nil {
			return strconv.AppendInt(append(b, f.jsonKey...), int64(*v), 10)
		}
	case KindBytes:
		if v := *p.(*[]byte); v != nil {
			return appendString(append(b, f.jsonKey...), v)
		}
	case KindBool:
		if v := *p.(*bool); v || f.Always {
			return strconv.AppendBool(append(b, f.jsonKey...), v)
		}
	case KindTime:
		if v := *p.(*time.Time); !v.IsZero() || f.Always {
			return appendTime(append(b, f.jsonKey...), v)
		}
	}
	return b
}

// appendMs writes a duration as float milliseconds at microsecond precision.
func appendMs(b []byte, d time.Duration) []byte {
	return appendFloat(b, math.Round(float64(d)/1e3)/1e3)
}

// appendRatio writes a ratio (loss) with 4 decimals.
func appendRatio(b []byte, v float64) []byte {
	return appendFloat(b, math.Round(v*1e4)/1e4)
}

// appendTime writes an RFC 3339 UTC timestamp with nanoseconds, quoted.
func appendTime(b []byte, t time.Time) []byte {
	b = t.UTC().AppendFormat(append(b, '"'), time.RFC3339Nano)
	return append(b, '"')
}

// MarshalJSON writes the documented JSON form.
func (r Result) MarshalJSON() ([]byte, error) {
	return AppendJSON(make([]byte, 0, 256), &r), nil
}

// UnmarshalJSON reads the documented JSON form back (derived fields, loss,
// are not read: they follow from the others).
func (r *Result) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*r = Result{}
	for i := range resultFields { // in order: the index first
		f := &resultFields[i]
		raw, ok := m[f.JSON]
		if !ok || f.Derived || string(raw) == "null" {
			continue
		}
		if err := f.unmarshalJSON(r, raw); err != nil {
			return fmt.Errorf("result field %q: %w", f.JSON, err)
		}
	}
	return nil
}

func (f *Field) unmarshalJSON(r *Result, raw []byte) error {
	p := f.at(r)
	switch f.Kind {
	case KindUint, KindInt, KindString, KindBool:
		return json.Unmarshal(raw, p)
	case KindDuration:
		var ms float64
		if err := json.Unmarshal(raw, &ms); err != nil {
			return err
		}
		*p.(*time.Duration) = time.Duration(math.Round(ms * 1e6))
	case KindOptInt:
		v := new(int)
		if err := json.Unmarshal(raw, v); err != nil {
			return err
		}
		*p.(**int) = v
	case KindBytes:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		*p.(*[]byte) = []byte(s)
	case KindTime:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s == "" {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return err
		}
		*p.(*time.Time) = t
	default:
		return fmt.Errorf("field %s of kind %v cannot be read", f.Name, f.Kind)
	}
	return nil
}

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s quoted as a JSON string, as the Result's JSON
// form quotes its strings (for records that extend it, such as a watch's).
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// appendString quotes s as encoding/json does (HTML-safe, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029 escaped). s is a string or, for command
// output, bytes: no copy either way.
func appendString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func decodeRune[S string | []byte](s S) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	panic("unreachable")
}
