// Command clusterfleet is the latency-bound TCP fleet of bench/cluster.sh:
// a listener on 0.0.0.0:PORT (so every 127.x.y.z answers) whose SYN-ACKs
// the kernel hands to this program through an nftables NFQUEUE rule; each
// is released after -delay. A tcp connect to the fleet therefore takes
// -delay, like a host that far away, while costing almost no CPU: what
// limits a sweep of it is concurrency, not the machine.
//
// Run it only inside the bench's network namespace (bench/cluster.sh sets
// up the rule there); it speaks netlink to that namespace's netfilter.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nfnetlink_queue constants (linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue  = 3
	nfqnlMsgPacket   = 0
	nfqnlMsgConfig   = 2
	nfqnlMsgBatch    = 3 // verdict on every queued packet up to an id
	nfqaCfgCmd       = 1
	nfqaCfgParams    = 2
	nfqaCfgQueueMax  = 3
	nfqaCfgMask      = 4
	nfqaCfgFlags     = 5
	nfqaCfgFFailOpen = 1
	nfqnlCfgCmdBind  = 1
	nfqnlCopyMeta    = 1
	nfqaPacketHdr    = 1
	nfqaVerdictHdr   = 2
	nfAccept         = 1
)

func main() {
	listen := flag.String("listen", "0.0.0.0:7777", "fleet address")
	queue := flag.Int("queue", 7, "NFQUEUE number of the nftables rule")
	delay := flag.Duration("delay", 50*time.Millisecond, "how long each SYN-ACK is held")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()

	q, err := openQueue(uint16(*queue))
	if err != nil {
		log.Fatalf("nfqueue %d: %v", *queue, err)
	}
	// Packets are held in arrival order for the same time, so one batch
	// verdict releases every packet whose time has come: a syscall per
	// millisecond rather than one per packet.
	var held atomic.Int64
	type pkt struct {
		id  uint32
		due time.Time
	}
	var mu sync.Mutex
	var fifo []pkt
	go q.run(func(id uint32) {
		held.Add(1)
		mu.Lock()
		fifo = append(fifo, pkt{id, time.Now().Add(*delay)})
		mu.Unlock()
	})
	go func() {
		for {
			time.Sleep(500 * time.Microsecond)
			now := time.Now()
			mu.Lock()
			n := 0
			for n < len(fifo) && !fifo[n].due.After(now) {
				n++
			}
			var last uint32
			if n > 0 {
				last = fifo[n-1].id
				fifo = fifo[n:]
			}
			mu.Unlock()
			if n > 0 {
				q.verdictBatch(last, nfAccept)
			}
		}
	}()
	fmt.Printf("clusterfleet: ready on %s, SYN-ACKs held %v (queue %d)\n", *listen, *delay, *queue)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Printf("clusterfleet: %d SYN-ACKs held, %d connections accepted\n", held.Load(), accepted.Load())
}

type nfq struct {
	fd  int
	num uint16
	mu  sync.Mutex // one writer at a time on the socket
	seq uint32
}

func openQueue(num uint16) (*nfq, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	q := &nfq{fd: fd, num: num}
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET} // command, pad, pf (be16)
	params := make([]byte, 5)                          // copy_range be32, copy_mode u8
	params[4] = nfqnlCopyMeta
	maxlen := binary.BigEndian.AppendUint32(nil, 65536)
	flags := binary.BigEndian.AppendUint32(nil, nfqaCfgFFailOpen)
	for _, attrs := range [][]byte{
		attr(nfqaCfgCmd, cmd),
		append(attr(nfqaCfgParams, params), attr(nfqaCfgQueueMax, maxlen)...),
		append(attr(nfqaCfgFlags, flags), attr(nfqaCfgMask, flags)...),
	} {
		if err := q.request(nfqnlMsgConfig, attrs, true); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func attr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// request sends one nfnetlink message to the queue subsystem; with ack it
// waits for the kernel's answer.
func (q *nfq) request(msg uint16, attrs []byte, ack bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	b := make([]byte, 16+4+len(attrs))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], nfnlSubsysQueue<<8|msg)
	flags := uint16(unix.NLM_F_REQUEST)
	if ack {
		flags |= unix.NLM_F_ACK
	}
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], q.seq)
	b[16] = unix.AF_UNSPEC // nfgenmsg: family, version, res_id (be16)
	b[17] = 0
	binary.BigEndian.PutUint16(b[18:], q.num)
	copy(b[20:], attrs)
	if err := unix.Sendto(q.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	if !ack {
		return nil
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(q.fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return syscall.Errno(-e)
			}
		}
	}
	return nil
}

// verdictBatch gives verdict v to every queued packet with an id up to id.
func (q *nfq) verdictBatch(id, v uint32) {
	hdr := binary.BigEndian.AppendUint32(nil, v)
	hdr = binary.BigEndian.AppendUint32(hdr, id)
	if err := q.request(nfqnlMsgBatch, attr(nfqaVerdictHdr, hdr), false); err != nil {
		log.Printf("verdict up to %d: %v", id, err)
	}
}

// run reads queued packets and calls onPacket with each packet id.
func (q *nfq) run(onPacket func(id uint32)) {
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if err != nil {
			if err == unix.ENOBUFS || err == unix.EINTR {
				log.Printf("nfqueue: %v (packets lost, the kernel fails open)", err)
				continue
			}
			log.Fatalf("nfqueue: %v", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != nfnlSubsysQueue<<8|nfqnlMsgPacket || len(m.Data) < 4 {
				continue
			}
			for a := m.Data[4:]; len(a) >= 4; {
				l := int(binary.NativeEndian.Uint16(a[0:]))
				typ := binary.NativeEndian.Uint16(a[2:]) & 0x7fff
				if l < 4 || l > len(a) {
					break
				}
				if typ == nfqaPacketHdr && l >= 8 {
					onPacket(binary.BigEndian.Uint32(a[4:]))
					break
				}
				a = a[min((l+3)&^3, len(a)):]
			}
		}
	}
}
