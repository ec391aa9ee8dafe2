package lab

import (
	"net"
	"testing"
)

// ClosingListener listens on addr (HOST:PORT; port 0 for a free one) until
// the test ends, closing every connection it accepts: a tcp target that is
// up. Closing it earlier takes the target down.
func ClosingListener(t testing.TB, addr string) net.Listener {
	t.Helper()
	return ClosingListenerFunc(t, addr, nil)
}

// ClosingListenerFunc is ClosingListener calling onAccept, when not nil,
// after each connection it closes.
func ClosingListenerFunc(t testing.TB, addr string, onAccept func()) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			if onAccept != nil {
				onAccept()
			}
		}
	}()
	return ln
}

// ClosingPort is the port of a ClosingListener on 127.0.0.1.
func ClosingPort(t testing.TB) int {
	t.Helper()
	return Port(ClosingListener(t, "127.0.0.1:0"))
}

// Port is the TCP port ln listens on.
func Port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// ClosedPort is a port on 127.0.0.1 where nothing listens (bound, then
// released).
func ClosedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := Port(ln)
	ln.Close()
	return p
}
