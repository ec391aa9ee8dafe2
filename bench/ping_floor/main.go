// Command ping_floor measures this machine's floor for bench/ping.sh: a bare
// loop over one raw ICMP socket that sends one echo request to each address
// of 127.0.0.0/16 (one sendto each) and only counts the replies. No engine, no
// validation, no output: what the kernel's loopback round trip costs here.
// Root only; run inside the lab namespace, as bench/ping.sh does.
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const n = 1 << 16

func main() {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ping_floor:", err)
		os.Exit(2)
	}
	ipc := c.(*net.IPConn)
	// As large a buffer as fanout's, so the floor loses no reply either.
	if rc, err := ipc.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		})
	}
	id := uint16(os.Getpid())
	var got atomic.Int64
	seen := make([]bool, n)
	go func() {
		buf := make([]byte, 1500)
		for {
			k, _, err := ipc.ReadFrom(buf)
			if err != nil {
				return
			}
			// An echo reply with our id; the payload names the address.
			if k >= 12 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
				if i := binary.BigEndian.Uint32(buf[8:]); i < n && !seen[i] {
					seen[i] = true
					got.Add(1)
				}
			}
		}
	}()
	start := time.Now()
	pkt := make([]byte, 8+32)
	for i := range n {
		clear(pkt)
		pkt[0] = 8
		binary.BigEndian.PutUint16(pkt[4:], id)
		binary.BigEndian.PutUint16(pkt[6:], uint16(i))
		binary.BigEndian.PutUint32(pkt[8:], uint32(i))
		var s uint32
		for j := 0; j < len(pkt); j += 2 {
			s += uint32(pkt[j])<<8 | uint32(pkt[j+1])
		}
		for s>>16 != 0 {
			s = s&0xffff + s>>16
		}
		binary.BigEndian.PutUint16(pkt[2:], ^uint16(s))
		_, _ = ipc.WriteTo(pkt, &net.IPAddr{IP: net.IPv4(127, 0, byte(i>>8), byte(i))})
	}
	for got.Load() < n && time.Since(start) < 10*time.Second {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < int(got.Load()); i++ {
		fmt.Println(i) // one line per reply, for the bench's count
	}
	fmt.Fprintf(os.Stderr, "ping_floor: %d/%d replies in %v\n", got.Load(), n, time.Since(start))
}
