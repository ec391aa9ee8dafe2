package output

import (
	"strconv"
	"unicode/utf8"
)

// Terminal safety. Command output, host names and error messages come from
// remote hosts, files and the cluster bus: printed raw, an ESC sequence in
// them could move the cursor, clear the screen or set the window title. The
// text writers (text, inline, gathered, summary) print them through
// AppendSafe; jsonl, csv, --outdir and the store keep the raw bytes.

// AppendSafe appends s to b with everything that could drive a terminal
// escaped, as ls -b and ssh show untrusted text:
//
//   - C0 control characters and DEL as \xHH (ESC is \x1b), CR as \r;
//   - C1 control characters (U+0080-U+009F) and the Unicode bidirectional
//     controls (which reorder what follows them) as \uHHHH;
//   - each byte of invalid UTF-8 as \xHH.
//
// Tab and printable UTF-8 are kept. With lines, newlines are kept too (and a
// CR just before one, a CRLF line end, is dropped); without, a newline is
// \n and the text stays one line.
func AppendSafe(b []byte, s string, lines bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f || c == '\t' {
			b = append(b, c)
			i++
			continue
		}
		if c < 0x80 {
			switch {
			case c == '\n' && lines:
				b = append(b, '\n')
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r' && lines && i+1 < len(s) && s[i+1] == '\n':
				// CRLF: the newline that follows ends the line.
			case c == '\r':
				b = append(b, `\r`...)
			default:
				b = appendHexByte(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = appendHexByte(b, c)
		case r < 0xa0 || bidiControl(r):
			b = append(b, `\u`...)
			b = appendHex(b, uint64(r), 4)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

// Safe is s escaped as one line (see AppendSafe).
func Safe(s string) string {
	if safeAlready(s) {
		return s
	}
	return string(AppendSafe(nil, s, false))
}

// SafeLines is s escaped with its newlines kept (see AppendSafe).
func SafeLines(s string) string {
	return string(AppendSafe(nil, s, true))
}

// safeAlready reports whether s is printable ASCII (and tabs): the common
// case, returned as it is.
func safeAlready(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// bidiControl reports whether r is one of the Unicode controls that change
// the display order of the text after it (the "Trojan Source" characters).
func bidiControl(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f:
		return true
	case r >= 0x202a && r <= 0x202e:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

func appendHexByte(b []byte, c byte) []byte {
	b = append(b, `\x`...)
	return appendHex(b, uint64(c), 2)
}

// appendHex appends v in lowercase hex, zero-padded to width digits.
func appendHex(b []byte, v uint64, width int) []byte {
	h := strconv.FormatUint(v, 16)
	for i := len(h); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, h...)
}
