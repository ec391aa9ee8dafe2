package target

import (
	"bufio"
	"errors"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeText makes a host file read as UTF-8 whatever a Windows editor
// saved it as: a UTF-8 byte order mark is skipped, and UTF-16 (little or
// big endian, told by its byte order mark, or without one by the NUL byte
// of an ASCII first character) is decoded as it is read. CRLF line ends
// need nothing: the line scanner drops the CR.
func decodeText(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	b, err := br.Peek(3)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull && len(b) < 2 {
		return errReader{err}
	}
	switch {
	case len(b) >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf:
		_, _ = br.Discard(3)
	case len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe:
		_, _ = br.Discard(2)
		return &utf16Reader{r: br, le: true, pending: -1}
	case len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff:
		_, _ = br.Discard(2)
		return &utf16Reader{r: br, pending: -1}
	case len(b) >= 2 && b[0] != 0 && b[1] == 0: // "h\x00" is no UTF-8 text
		return &utf16Reader{r: br, le: true, pending: -1}
	case len(b) >= 2 && b[0] == 0 && b[1] != 0:
		return &utf16Reader{r: br, pending: -1}
	}
	return br
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

var errOddUTF16 = errors.New("UTF-16 text ends in half a character (odd number of bytes)")

// utf16Reader decodes UTF-16 into UTF-8. Unpaired surrogates become
// U+FFFD, which no target spec accepts, so they are reported, not guessed.
type utf16Reader struct {
	r       *bufio.Reader
	le      bool
	pending int32 // a code unit read ahead, or -1
	out     []byte
	enc     [utf8.UTFMax]byte
	err     error
}

func (u *utf16Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(u.out) > 0 {
			c := copy(p[n:], u.out)
			u.out = u.out[c:]
			n += c
			continue
		}
		if u.err != nil {
			break
		}
		r, err := u.next()
		if err != nil {
			u.err = err
			break
		}
		if r < utf8.RuneSelf {
			p[n] = byte(r)
			n++
			continue
		}
		u.out = utf8.AppendRune(u.enc[:0], r)
	}
	if n > 0 {
		return n, nil
	}
	return 0, u.err
}

func (u *utf16Reader) unit() (rune, error) {
	if u.pending >= 0 {
		c := u.pending
		u.pending = -1
		return c, nil
	}
	a, err := u.r.ReadByte()
	if err != nil {
		return 0, err
	}
	b, err := u.r.ReadByte()
	if err == io.EOF {
		return 0, errOddUTF16
	}
	if err != nil {
		return 0, err
	}
	if u.le {
		return rune(a) | rune(b)<<8, nil
	}
	return rune(a)<<8 | rune(b), nil
}

func (u *utf16Reader) next() (rune, error) {
	c, err := u.unit()
	if err != nil || !utf16.IsSurrogate(c) {
		return c, err
	}
	if c >= 0xdc00 { // a low surrogate first
		return utf8.RuneError, nil
	}
	d, err := u.unit()
	if err == io.EOF {
		return utf8.RuneError, nil
	}
	if err != nil {
		return 0, err
	}
	if r := utf16.DecodeRune(c, d); r != utf8.RuneError {
		return r, nil
	}
	u.pending = d // not a low surrogate: it starts the next character
	return utf8.RuneError, nil
}
