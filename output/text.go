package output

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fanout/fanout/job"
)

// maxTextOutput bounds the command output quoted on a text line.
const maxTextOutput = 160

// appendText renders r as one line of the text format:
//
//	127.0.0.5 is alive (0.04 ms)                      probe without a port (ping)
//	127.0.0.5 is alive (0.04 ms, 3/3 received)        several probes
//	127.1.0.1 is unreachable (timeout, 0/3 received)
//	127.0.0.1:22 is open (0.05 ms)                    probe with a port (tcp)
//	127.0.0.1:23 is closed (refused)
//	127.1.0.1:22 is unreachable (timeout)
//	web1 ok (exit 0, 2.01 s): <last line of stdout>   command (exec, ssh)
//	web2 failed (exit 3, 12.00 ms): <last line of stderr, else stdout>
//	web3 failed (timeout, 5.00 s)
//	nosuch error (resolve: lookup nosuch: no such host)
//
// A command result quotes only the last non-empty line of its output (where
// commands put their verdict), cut at 160 bytes. Host names, classes, errors
// and output are escaped as AppendSafe does (a host cannot drive the
// terminal); the full, raw output is in the jsonl and csv formats.
func appendText(b []byte, r *job.Result) []byte {
	b = appendName(b, r)
	command := r.ExitCode != nil || job.PrintsOutput(r.Job)
	switch {
	case r.Status == job.Error:
		b = append(b, " error ("...)
		b = AppendSafe(b, string(r.Class), false)
		if r.Error != "" {
			b = append(b, ": "...)
			b = appendClean(b, r.Error)
		}
		return append(b, ')')
	case command:
		if r.Status == job.Up {
			b = append(b, " ok ("...)
		} else {
			b = append(b, " failed ("...)
		}
		if r.ExitCode != nil {
			b = append(b, "exit "...)
			b = strconv.AppendInt(b, int64(*r.ExitCode), 10)
		} else {
			b = AppendSafe(b, string(r.Class), false)
		}
		if !r.Start.IsZero() && !r.End.IsZero() {
			b = append(b, ", "...)
			b = appendDuration(b, r.End.Sub(r.Start))
		}
		b = append(b, ')')
		out := r.Stdout
		if r.Status != job.Up && len(bytes.TrimSpace(r.Stderr)) > 0 {
			out = r.Stderr
		}
		if line := lastLine(out); len(line) > 0 {
			b = append(b, ": "...)
			b = appendClean(b, string(line))
		}
		return b
	case r.Status == job.Up:
		if r.Port != 0 {
			b = append(b, " is open ("...)
		} else {
			b = append(b, " is alive ("...)
		}
		rtt := r.RTT
		if r.RTTAvg != 0 {
			rtt = r.RTTAvg
		}
		b = appendDuration(b, rtt)
	default:
		if r.Port != 0 && r.Class == job.ClassRefused {
			b = append(b, " is closed ("...)
		} else {
			b = append(b, " is unreachable ("...)
		}
		b = AppendSafe(b, string(r.Class), false)
	}
	if r.Sent > 1 || (r.Sent == 1 && r.Status != job.Up) {
		b = append(b, ", "...)
		b = strconv.AppendInt(b, int64(r.Recv), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(r.Sent), 10)
		b = append(b, " received"...)
	}
	return append(b, ')')
}

// appendName is the target as host, or host:port ([v6]:port) when it has one.
func appendName(b []byte, r *job.Result) []byte {
	if r.Port == 0 {
		return AppendSafe(b, r.Host, false)
	}
	if strings.IndexByte(r.Host, ':') >= 0 {
		b = append(b, '[')
		b = AppendSafe(b, r.Host, false)
		b = append(b, ']')
	} else {
		b = AppendSafe(b, r.Host, false)
	}
	b = append(b, ':')
	return strconv.AppendInt(b, int64(r.Port), 10)
}

// appendDuration prints d as fping does: milliseconds with two decimals,
// seconds from one second on.
func appendDuration(b []byte, d time.Duration) []byte {
	if d < time.Second {
		b = strconv.AppendFloat(b, float64(d)/1e6, 'f', 2, 64)
		return append(b, " ms"...)
	}
	b = strconv.AppendFloat(b, d.Seconds(), 'f', 2, 64)
	return append(b, " s"...)
}

// lastLine is the last non-blank line of out.
func lastLine(out []byte) []byte {
	out = bytes.TrimRight(out, " \t\r\n")
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return bytes.TrimSpace(out)
}

// appendClean appends s as one line, cut at maxTextOutput bytes, with what
// could drive a terminal escaped (see AppendSafe).
func appendClean(b []byte, s string) []byte {
	cut := false
	if len(s) > maxTextOutput {
		n := maxTextOutput
		for k := 0; k < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); k++ {
			n-- // not in the middle of a character
		}
		s, cut = s[:n], true
	}
	b = AppendSafe(b, s, false)
	if cut {
		b = append(b, "..."...)
	}
	return b
}
