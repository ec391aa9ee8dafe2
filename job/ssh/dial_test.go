package ssh

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkConn hands out its data in the given chunks, one per Read, as a
// socket does with what has arrived, and counts the reads.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	reads  int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// The version line read a byte at a time costs one read of the socket, the
// bytes that came with it reach the next (large) read intact, the count is
// of the bytes taken from the socket, and no buffer is held afterwards.
func TestCountingConnReadsAhead(t *testing.T) {
	banner := "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7\r\n"
	packet := bytes.Repeat([]byte("k"), 700) // more than the read-ahead holds
	rest := []byte("after")
	under := &chunkConn{chunks: [][]byte{append([]byte(banner), packet...), rest}}
	c := &countingConn{Conn: under}

	var line []byte
	var b [1]byte
	for !bytes.HasSuffix(line, []byte("\n")) {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		line = append(line, b[0])
	}
	if string(line) != banner {
		t.Fatalf("version line %q, want %q", line, banner)
	}
	if under.reads != 1 {
		t.Errorf("%d reads of the socket for the version line, want 1", under.reads)
	}
	if got := c.read.Load(); got != readAhead {
		t.Errorf("read count %d after the version line, want the %d bytes taken from the socket", got, readAhead)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte{}, packet...), rest...); !bytes.Equal(got, want) {
		t.Fatalf("after the version line read %d bytes, want %d, the same", len(got), len(want))
	}
	if c.ahead != nil || c.pend != nil {
		t.Error("read-ahead buffer still held once its bytes were read")
	}
	if want := int64(len(banner) + len(packet) + len(rest)); c.read.Load() != want {
		t.Errorf("read count %d, want %d", c.read.Load(), want)
	}
}

// An end of stream met by a small read is reported, not swallowed.
func TestCountingConnSmallReadEOF(t *testing.T) {
	c := &countingConn{Conn: &chunkConn{chunks: [][]byte{[]byte("SS")}}}
	var b [1]byte
	for i := 0; i < 2; i++ {
		if n, err := c.Read(b[:]); n != 1 || err != nil {
			t.Fatalf("read %d: %d bytes, %v", i, n, err)
		}
	}
	if n, err := c.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("at the end: %d bytes, %v; want 0, EOF", n, err)
	}
	if c.ahead != nil {
		t.Error("buffer held after EOF")
	}
}
