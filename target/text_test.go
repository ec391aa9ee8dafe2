package target

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// encodeUTF16 is s in UTF-16, with a byte order mark when bom.
func encodeUTF16(s string, bigEndian, bom bool) []byte {
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xfeff}, units...)
	}
	out := make([]byte, 2*len(units))
	for i, u := range units {
		if bigEndian {
			binary.BigEndian.PutUint16(out[2*i:], u)
		} else {
			binary.LittleEndian.PutUint16(out[2*i:], u)
		}
	}
	return out
}

// encodings are the ways a Windows editor saves a host file.
func encodings(text string) map[string][]byte {
	crlf := strings.ReplaceAll(text, "\n", "\r\n")
	return map[string][]byte{
		"utf-8":              []byte(text),
		"utf-8 crlf":         []byte(crlf),
		"utf-8 bom":          append([]byte("\xef\xbb\xbf"), text...),
		"utf-8 bom crlf":     append([]byte("\xef\xbb\xbf"), crlf...),
		"utf-16le bom crlf":  encodeUTF16(crlf, false, true),
		"utf-16be bom crlf":  encodeUTF16(crlf, true, true),
		"utf-16le bom":       encodeUTF16(text, false, true),
		"utf-16le no bom":    encodeUTF16(crlf, false, false),
		"utf-16be no bom":    encodeUTF16(text, true, false),
		"utf-16le bom no nl": encodeUTF16(strings.TrimSuffix(text, "\n"), false, true),
	}
}

func TestParseFileEncodings(t *testing.T) {
	t.Parallel()
	const text = "web1\n# a comment\n\n  127.0.0.1  # lab\nfe80::1%eth0\nroot@db[1-2]:2222\nlast\n"
	want := "127.0.0.1 web1 fe80::1%eth0 root@db1:2222 root@db2:2222 last"
	for name, data := range encodings(text) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "hosts.txt", string(data))
			s, err := Parse([]string{"@" + path}, ssh)
			if err != nil {
				t.Fatalf("@FILE: %v", err)
			}
			if got := strings.Join(specs(t, s), " "); got != want {
				t.Errorf("@FILE = %q, want %q", got, want)
			}
			opts := ssh
			opts.Stdin = bytes.NewReader(data)
			if s, err = Parse([]string{"-"}, opts); err != nil {
				t.Fatalf("stdin: %v", err)
			}
			if got := strings.Join(specs(t, s), " "); got != want {
				t.Errorf("stdin = %q, want %q", got, want)
			}
			// Excludes are read the same way.
			ex := writeFile(t, "ex.txt", string(data))
			opts = ssh
			opts.Excludes = []string{"@" + ex}
			if _, err := Parse([]string{"web1", "other"}, opts); err != nil {
				t.Fatalf("exclude @FILE: %v", err)
			}
		})
	}
}

// TestParseFileEncodingErrors: what cannot be decoded is an error that
// names the file and line, never targets made of garbage.
func TestParseFileEncodingErrors(t *testing.T) {
	t.Parallel()
	odd := append(encodeUTF16("web1\nweb2\n", false, true), 'x')
	lone := append(encodeUTF16("web1\n", false, true), 0x00, 0xd8, '\n', 0)
	accent := encodeUTF16("web1\nhéllo\n", true, true)
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"odd length", odd, ":3: read: UTF-16 text ends in half a character (odd number of bytes)"},
		{"unpaired surrogate", lone, ":2: parse \"\ufffd\": '\ufffd' is not allowed in a hostname; ..."},
		{"non-ascii name", accent, `:2: parse "héllo": 'é' is not allowed in a hostname; ...`},
		{"nul in utf-8", []byte("web1\nwe\x00b\n"), `:2: parse "we\x00b": '\x00' is not allowed in a hostname; ...`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "hosts.txt", string(tt.data))
			_, err := Parse([]string{"@" + path}, ParseOptions{})
			if err == nil || !matches(err.Error(), path+tt.want) {
				t.Errorf("error %v\nwant %s", err, path+tt.want)
			}
		})
	}
}

// FuzzParseFile feeds file contents through "-": no panic, a Set that
// keeps its invariants, and the same Set from the UTF-16 and BOM'd forms
// of a UTF-8 file.
func FuzzParseFile(f *testing.F) {
	for _, data := range encodings("web1\n10.0.0.[1-3]\n# c\n[::1]:2222\nroot@h\nfe80::1%eth0\n") {
		f.Add(data)
	}
	f.Add([]byte("\xef\xbb\xbf"))
	f.Add([]byte("\xff\xfe"))
	f.Add([]byte("\xfe\xff\x00"))
	f.Add([]byte("\xff\xfeh\x00\x00\xd8\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := ParseOptions{MaxTargets: 1 << 16, Takes: takesAll, Stdin: bytes.NewReader(data)}
		s, err := Parse([]string{"-"}, opts)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		checkSet(t, s)
		text := string(data)
		if strings.ContainsAny(text, "\x00\ufeff\ufffd\r") || !utf16Safe(text) {
			return
		}
		for name, enc := range encodings(text) {
			opts.Stdin = bytes.NewReader(enc)
			e, err := Parse([]string{"-"}, opts)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if a, b := strings.Join(specs(t, s), " "), strings.Join(specs(t, e), " "); a != b {
				t.Fatalf("%s: %q, as UTF-8 %q", name, b, a)
			}
		}
	})
}

// utf16Safe reports whether text is valid UTF-8 whose UTF-16 forms
// without a byte order mark are told apart: its first character is ASCII
// or Latin-1, so that one of its two bytes is NUL.
func utf16Safe(text string) bool {
	if !utf8.ValidString(text) {
		return false
	}
	r, _ := utf8.DecodeRuneInString(text)
	return text == "" || r < 0x100 && r != 0
}
