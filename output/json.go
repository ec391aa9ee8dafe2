package output

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fanout/fanout/job"
)

// appendJSON appends r's documented JSON form, byte for byte what
// r.MarshalJSON produces (a test holds them equal), without reflection:
// JSONL is the format of million-target sweeps.
func appendJSON(b []byte, r *job.Result) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, r.Index, 10)
	b = append(b, `,"host":`...)
	b = appendString(b, r.Host)
	if r.Addr != "" {
		b = append(b, `,"addr":`...)
		b = appendString(b, r.Addr)
	}
	if r.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendInt(b, int64(r.Port), 10)
	}
	b = append(b, `,"job":`...)
	b = appendString(b, r.Job)
	b = append(b, `,"status":`...)
	b = appendString(b, string(r.Status))
	if r.Class != "" {
		b = append(b, `,"class":`...)
		b = appendString(b, string(r.Class))
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, r.Error)
	}
	b = appendMs(b, `,"rtt_ms":`, r.RTT)
	if r.Sent != 0 {
		b = append(b, `,"sent":`...)
		b = strconv.AppendInt(b, int64(r.Sent), 10)
	}
	if r.Recv != 0 {
		b = append(b, `,"recv":`...)
		b = strconv.AppendInt(b, int64(r.Recv), 10)
	}
	if r.Sent > 0 {
		b = append(b, `,"loss":`...)
		b = appendFloat(b, math.Round(r.Loss()*1e4)/1e4)
	}
	b = appendMs(b, `,"rtt_min_ms":`, r.RTTMin)
	b = appendMs(b, `,"rtt_avg_ms":`, r.RTTAvg)
	b = appendMs(b, `,"rtt_max_ms":`, r.RTTMax)
	b = appendMs(b, `,"rtt_stddev_ms":`, r.RTTStddev)
	if r.ExitCode != nil {
		b = append(b, `,"exit_code":`...)
		b = strconv.AppendInt(b, int64(*r.ExitCode), 10)
	}
	if r.Stdout != nil {
		b = append(b, `,"stdout":`...)
		b = appendString(b, string(r.Stdout))
	}
	if r.Stderr != nil {
		b = append(b, `,"stderr":`...)
		b = appendString(b, string(r.Stderr))
	}
	if r.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"start":"`...)
	b = r.Start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","end":"`...)
	b = r.End.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if r.Worker != "" {
		b = append(b, `,"worker":`...)
		b = appendString(b, r.Worker)
	}
	return append(b, '}')
}

// appendMs writes a duration as float milliseconds at microsecond precision,
// omitted when zero (as job.Result's JSON form does).
func appendMs(b []byte, key string, d time.Duration) []byte {
	if d == 0 {
		return b
	}
	b = append(b, key...)
	return appendFloat(b, math.Round(float64(d)/1e3)/1e3)
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

// appendString quotes s as encoding/json does (HTML-safe, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029 escaped).
func appendString(b []byte, s string) []byte {
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
		r, size := utf8.DecodeRuneInString(s[i:])
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
