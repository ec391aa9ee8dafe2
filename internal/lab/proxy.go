package lab

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards every connection made to it, on any loopback address at
// its port, to upstream(the address dialled), and counts what it accepts:
// the server side's count of TCP connections, for a server (sshd) that
// does not count them itself. Drop closes every connection open through
// it (a server that drops them); Freeze makes those open go silent (a
// peer gone: bytes are taken and never delivered).
type Proxy struct {
	Port     int
	Accepted atomic.Int64

	mu     sync.Mutex
	frozen map[net.Conn]bool // every connection open, client and upstream side
}

// StartProxyT starts a Proxy on 0.0.0.0 (every 127.x.y.z reaches it),
// closed with everything it forwards when the test ends.
func StartProxyT(t testing.TB, upstream func(local netip.Addr) string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Port: ln.Addr().(*net.TCPAddr).Port, frozen: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.Drop()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.Accepted.Add(1)
			local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			up, err := net.Dial("tcp", upstream(local))
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.frozen[c], p.frozen[up] = false, false
			p.mu.Unlock()
			wg.Add(2)
			go p.pipe(&wg, up, c)
			go p.pipe(&wg, c, up)
		}
	}()
	return p
}

func (p *Proxy) pipe(wg *sync.WaitGroup, dst, src net.Conn) {
	defer wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.frozen, src)
		delete(p.frozen, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		silent := p.frozen[src]
		p.mu.Unlock()
		if n > 0 && !silent {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Open is how many connections are open through the proxy, client and
// upstream sides counted apart.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.frozen)
}

// Drop closes every connection open through the proxy.
func (p *Proxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.frozen {
		c.Close()
		delete(p.frozen, c)
	}
}

// Freeze makes every connection open through the proxy silent.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.frozen {
		p.frozen[c] = true
	}
}
