package icmp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

const (
	batchMax  = 64 // messages per sendmmsg / recvmmsg
	resolvers = 32 // concurrent name lookups
	reapTick  = 5 * time.Millisecond
	// maxDrainLag bounds how long timeouts wait for a lagging receiver.
	maxDrainLag = 10 * time.Second
)

// slot is the state of one target in flight. Slots are reused; gen tells a
// queued timeout or resend of a previous occupant from the current one.
type slot struct {
	t       target.Target
	addr    netip.Addr
	gen     uint32
	live    bool
	sent    int32
	recv    int32
	pending int32 // sent, neither answered nor timed out nor failed
	startNs int64
	rttSum  time.Duration
	rttMin  time.Duration
	rttMax  time.Duration
	unreach string     // first ICMP error quoting our request
	sendErr *sendError // first request that could not leave
	fails   int32      // requests that failed to leave
}

// timeout is a request's deadline, queued in send order: every request waits
// the same Timeout, so the queue is sorted and reaping is O(1) per probe.
type timeout struct {
	slot     uint32
	gen      uint32
	num      uint16
	deadline int64
}

// resend is a target's next request, also due in send order.
type resend struct {
	slot uint32
	gen  uint32
	due  int64
}

// outgoing is a request on its way into a sendmmsg batch.
type outgoing struct {
	slot uint32
	p    probe
	seq  uint16
	addr netip.Addr
}

type sweep struct {
	j        *Job
	count    int
	interval int64
	timeout  int64
	payload  int
	key      key
	id       uint16
	epoch    time.Time
	emit     func(job.Result)
	stats    *counters
	limiter  *rate.Limiter
	maxBatch int

	conns   [2]*conn // [0] IPv4, [1] IPv6: opened on first use, by the sender
	connErr [2]error
	hasAddr [2]int8  // the sender's: this machine has an address of the family (0 unknown, 1 yes, -1 no)
	drained [2]int64 // under mu: every reply that arrived before it was applied

	mu       sync.Mutex
	closed   bool // sockets closed: open no more
	slots    []slot
	bits     []uint64 // per slot: words of "resolved" bits, then words of "answered" bits
	words    int      // words per bitset
	free     []uint32
	timeouts ring[timeout]
	resends  ring[resend] // pushed and popped by the sender only, under mu
	seq      uint16

	in         intake
	kick       chan struct{} // wakes the reaper when its queue was empty
	inflight   atomic.Int64  // targets received and not yet emitted
	senderDone atomic.Bool
	done       chan struct{}
	doneOnce   sync.Once
	wg         sync.WaitGroup
}

// RunBatch pings every target received on in (Count requests each) and
// emits one Result per target. See job.Batcher. cfg.Timeout applies when
// the Config has none; cfg.Retries does not apply (Count is how many
// requests a target gets); the engine enforces cfg.Concurrency and cfg.Rate.
func (j *Job) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	s := &sweep{
		j:        j,
		count:    j.cfg.Count,
		interval: int64(j.cfg.Interval),
		timeout:  int64(DefaultTimeout),
		payload:  j.cfg.PayloadSize,
		epoch:    time.Now(),
		emit:     emit,
		stats:    &j.stats,
		maxBatch: batchMax,
		kick:     make(chan struct{}, 1),
		in:       intake{wake: make(chan struct{}, 1)},
		done:     make(chan struct{}),
	}
	switch {
	case j.cfg.Timeout > 0:
		s.timeout = int64(j.cfg.Timeout)
	case cfg.Timeout > 0:
		s.timeout = int64(cfg.Timeout)
	}
	if j.cfg.Rate > 0 {
		burst := min(batchMax, max(1, int(j.cfg.Rate/100)))
		s.limiter = rate.NewLimiter(rate.Limit(j.cfg.Rate), burst)
		s.maxBatch = burst
	}
	s.words = (s.count + 63) / 64
	var kb [18]byte
	_, _ = rand.Read(kb[:])
	s.key = key{binary.LittleEndian.Uint64(kb[0:]), binary.LittleEndian.Uint64(kb[8:])}
	s.id = binary.LittleEndian.Uint16(kb[16:])

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	s.wg.Add(3)
	go s.reaper(sctx)
	go s.receive(sctx, in)
	go s.sender(sctx)

	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		if c != nil {
			c.close() // ends the receivers' reads and any blocked write
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *sweep) now() int64 { return int64(time.Since(s.epoch)) }

// checkDone is called when the sender has nothing left to send and whenever
// Results were emitted: the sweep is over when both hold.
func (s *sweep) checkDone() {
	if s.senderDone.Load() && s.inflight.Load() == 0 {
		s.doneOnce.Do(func() { close(s.done) })
	}
}

// deliver emits finished Results outside the lock.
func (s *sweep) deliver(out []job.Result) []job.Result {
	if len(out) == 0 {
		return out
	}
	for _, r := range out {
		s.emit(r)
	}
	s.inflight.Add(-int64(len(out)))
	s.checkDone()
	return out[:0]
}

// item is a target on its way to the sender: from the engine, or back from
// a name lookup.
type item struct {
	t      target.Target
	looked bool // came back from a lookup
	err    error
	start  time.Time
}

// intake queues what the sender has to start. The engine hands targets over
// one at a time on an unbuffered channel: a goroutine that only receives
// them keeps that handoff cheap, and the sender takes them in batches.
type intake struct {
	mu     sync.Mutex
	q      []item
	closed bool          // the engine closed in
	wake   chan struct{} // cap 1: the sender may have work
}

func (q *intake) push(it item) {
	q.mu.Lock()
	q.q = append(q.q, it)
	q.mu.Unlock()
	q.signal()
}

func (q *intake) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take swaps the queue for buf (emptied) and returns what was queued.
func (q *intake) take(buf []item) (items []item, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items, q.q = q.q, buf[:0]
	return items, q.closed
}

// receive moves targets from in to the intake queue until in is closed.
func (s *sweep) receive(ctx context.Context, in <-chan target.Target) {
	defer s.wg.Done()
	for {
		select {
		case t, ok := <-in:
			if !ok {
				s.in.mu.Lock()
				s.in.closed = true
				s.in.mu.Unlock()
				s.in.signal()
				return
			}
			s.inflight.Add(1)
			s.in.push(item{t: t})
		case <-ctx.Done():
			return
		}
	}
}

// sender starts queued targets and sends due resends, in sendmmsg batches.
// It never blocks on anything but its queue, the rate limiter and the socket.
func (s *sweep) sender(ctx context.Context) {
	defer s.wg.Done()
	var (
		items    []item // taken from the intake; items[pos:] are to start
		pos      int
		news     []fresh
		zones    map[string]string // IPv6 zone as given -> its interface's name
		out      []job.Result
		batch    = make([]outgoing, 0, batchMax)
		sendBufs = newSendBufs(s.payload)
		timer    = time.NewTimer(time.Hour)
		lookupMu = make(chan struct{}, resolvers) // bounds concurrent lookups
		lookups  int                              // names being resolved
		closed   bool
		lwg      sync.WaitGroup
	)
	timer.Stop()
	defer func() {
		lwg.Wait() // lookups end with ctx, or have all come back
		s.senderDone.Store(true)
		s.checkDone()
	}()

	for ctx.Err() == nil {
		if pos == len(items) {
			// Hand the intake back our emptied slice, whole.
			items, closed = s.in.take(items[:0])
			pos = 0
		}
		// Up to a batch of new targets, then the resends that are due.
		for ; pos < len(items) && len(news) < s.maxBatch; pos++ {
			it := items[pos]
			switch {
			case it.looked:
				lookups--
				if it.err != nil {
					out = append(out, job.ResolveFailed(ctx, it.t, Kind, it.start, it.err))
					continue
				}
				news = append(news, fresh{t: it.t, addr: it.t.Addr})
			case !it.t.Addr.IsValid():
				lookups++
				lwg.Add(1)
				go s.resolve(ctx, it.t, lookupMu, &lwg)
			default:
				it.t.Addr = it.t.Addr.Unmap()
				addr, err := sendZone(it.t.Addr, &zones)
				if err != nil {
					r := job.For(it.t, Kind)
					r.Start, r.End, r.Attempts = time.Now(), time.Now(), 1
					r.Status, r.Class, r.Error = job.Error, job.ClassLocal, err.Error()
					out = append(out, r)
					continue
				}
				news = append(news, fresh{t: it.t, addr: addr})
			}
		}
		batch, out = s.schedule(news, batch[:0], out)
		news = news[:0]
		out = s.deliver(out)
		if len(batch) > 0 {
			s.send(ctx, batch, sendBufs)
			continue
		}
		if pos < len(items) {
			continue
		}

		// Nothing to send now: wait for a target, a name, or the next resend.
		s.mu.Lock()
		next := int64(-1)
		if s.resends.len() > 0 {
			next = s.resends.front().due
		}
		s.mu.Unlock()
		if closed && lookups == 0 && next < 0 {
			// closed was read with the queue, which was empty: the end.
			return
		}
		var tc <-chan time.Time
		if next >= 0 {
			timer.Reset(time.Duration(next - s.now()))
			tc = timer.C
		}
		select {
		case <-s.in.wake:
		case <-tc:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// resolve looks t's name up and queues it back for the sender.
func (s *sweep) resolve(ctx context.Context, t target.Target, sem chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	start := time.Now()
	a, err := job.Resolve(ctx, t)
	<-sem
	t.Addr = a.Unmap()
	s.in.push(item{t: t, looked: true, err: err, start: start})
}

// fresh is a target to start and the address its requests go to: t.Addr,
// with an IPv6 zone as the interface's name.
type fresh struct {
	t    target.Target
	addr netip.Addr
}

// sendZone returns a with its IPv6 zone (a name or an index, as in
// fe80::1%eth0 or fe80::1%2) as the name of its interface, which is what
// sendmmsg's address conversion looks up; names are cached in zones.
func sendZone(a netip.Addr, zones *map[string]string) (netip.Addr, error) {
	z := a.Zone()
	if z == "" {
		return a, nil
	}
	name, ok := (*zones)[z]
	if !ok {
		ifi, err := net.InterfaceByName(z)
		if n, aerr := strconv.Atoi(z); err != nil && aerr == nil && n > 0 {
			ifi, err = net.InterfaceByIndex(n)
		}
		if err != nil {
			return a, fmt.Errorf("ping %s: zone %q names no network interface of this machine", a, z)
		}
		if *zones == nil {
			*zones = make(map[string]string)
		}
		name = ifi.Name
		(*zones)[z] = name
	}
	return a.WithZone(name), nil
}

// schedule registers the requests to send now: first requests of news, then
// resends that are due, up to a batch. State is in place before the packet
// leaves, since a loopback reply can arrive before sendmmsg returns.
func (s *sweep) schedule(news []fresh, batch []outgoing, out []job.Result) ([]outgoing, []job.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, f := range news {
		t := f.t
		fam := 0
		if f.addr.Is6() {
			fam = 1
		}
		if s.closed {
			break
		}
		if s.conns[fam] == nil && s.connErr[fam] == nil {
			s.conns[fam], s.connErr[fam] = listen(fam == 1, s.j.cfg.Socket)
			if s.connErr[fam] == nil {
				s.drained[fam] = now
				s.wg.Add(1)
				go s.receiver(s.conns[fam])
			}
		}
		if err := s.connErr[fam]; err != nil {
			r := job.For(t, Kind)
			r.Start, r.End, r.Attempts = s.epoch.Add(time.Duration(now)), time.Now(), 1
			r.Status, r.Class, r.Error = job.Error, job.ClassLocal, err.Error()
			out = append(out, r)
			continue
		}
		i := s.alloc()
		sl := &s.slots[i]
		*sl = slot{t: t, addr: f.addr, gen: sl.gen, live: true, startNs: now}
		batch = s.request(i, batch)
	}
	for len(batch) < s.maxBatch && s.resends.len() > 0 && s.resends.front().due <= now {
		rs := s.resends.pop()
		if sl := &s.slots[rs.slot]; sl.live && sl.gen == rs.gen {
			batch = s.request(rs.slot, batch)
		}
	}
	return batch, out
}

// alloc takes a free slot, growing the table when none is (the engine's
// concurrency bounds how far).
func (s *sweep) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		clear(s.bits[int(i)*2*s.words : int(i+1)*2*s.words])
		return i
	}
	s.slots = append(s.slots, slot{})
	s.bits = append(s.bits, make([]uint64, 2*s.words)...)
	return uint32(len(s.slots) - 1)
}

// request registers the next echo request of slot i; mu is held. It is
// pending from now (a loopback reply can come before sendmmsg returns);
// stamp queues its timeout when it is written.
func (s *sweep) request(i uint32, batch []outgoing) []outgoing {
	sl := &s.slots[i]
	num := uint16(sl.sent)
	sl.sent++
	sl.pending++
	seq := s.seq
	s.seq++
	return append(batch, outgoing{slot: i, p: probe{index: sl.t.Index, slot: i, num: num}, seq: seq, addr: sl.addr})
}

// resolved and answered are the per-slot bitsets; mu is held.
func (s *sweep) resolvedBits(i uint32) []uint64 {
	b := int(i) * 2 * s.words
	return s.bits[b : b+s.words]
}

func (s *sweep) answeredBits(i uint32) []uint64 {
	b := int(i)*2*s.words + s.words
	return s.bits[b : b+s.words]
}

func testSet(b []uint64, n uint16) bool {
	w, m := n/64, uint64(1)<<(n%64)
	was := b[w]&m != 0
	b[w] |= m
	return was
}

// settle records that a request of slot i is resolved (answered, timed out,
// failed); when the target has nothing left it is finished. mu is held.
func (s *sweep) settle(i uint32, out []job.Result) []job.Result {
	sl := &s.slots[i]
	sl.pending--
	if sl.pending > 0 || int(sl.sent) < s.count {
		return out
	}
	out = append(out, s.result(sl))
	sl.live = false
	sl.gen++
	sl.t = target.Target{}
	s.free = append(s.free, i)
	return out
}

func (s *sweep) result(sl *slot) job.Result {
	r := job.For(sl.t, Kind)
	if sl.t.Host == "" {
		r.Addr = r.Host // the address, already formatted
	} else {
		r.Addr = sl.addr.String()
	}
	r.Attempts = 1
	r.Sent, r.Recv = int(sl.sent), int(sl.recv)
	r.Start, r.End = s.epoch.Add(time.Duration(sl.startNs)), time.Now()
	switch {
	case sl.recv > 0:
		r.Status = job.Up
		r.RTTMin, r.RTTMax = sl.rttMin, sl.rttMax
		r.RTTAvg = sl.rttSum / time.Duration(sl.recv)
		r.RTT = r.RTTAvg
	case sl.unreach != "":
		r.Status, r.Class, r.Error = job.Down, job.ClassUnreachable, sl.unreach
	case sl.sendErr != nil && int(sl.sent) == s.count && errorsOnly(sl):
		r.Status, r.Class, r.Error = sl.sendErr.status, sl.sendErr.class, sl.sendErr.Error()
	default:
		r.Status, r.Class = job.Down, job.ClassTimeout
		r.Error = fmt.Sprintf("no reply to %d echo request(s) within %v", sl.sent-sl.fails, time.Duration(s.timeout))
		if sl.fails > 0 {
			r.Error += fmt.Sprintf("; %d not sent: %v", sl.fails, sl.sendErr)
		}
	}
	return r
}

// errorsOnly: every request failed to leave.
func errorsOnly(sl *slot) bool { return sl.fails == sl.sent }

// stamp gives batch its send time, just before it is written (after any
// wait for the rate limiter): its requests' timeouts and next requests are
// queued from then, in time order, so both queues stay sorted.
func (s *sweep) stamp(batch []outgoing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.timeouts.len() == 0 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	for k := range batch {
		o := &batch[k]
		o.p.sent = now
		gen := s.slots[o.slot].gen
		s.timeouts.push(timeout{slot: o.slot, gen: gen, num: o.p.num, deadline: now + s.timeout})
		if int(o.p.num)+1 < s.count {
			// Due Interval after this send, as ping(8) spaces them.
			s.resends.push(resend{slot: o.slot, gen: gen, due: now + s.interval})
		}
	}
}

// send writes batch with sendmmsg, one socket per family.
func (s *sweep) send(ctx context.Context, batch []outgoing, bufs *sendBufs) {
	if s.limiter != nil {
		if err := s.limiter.WaitN(ctx, len(batch)); err != nil {
			return // canceled: the sweep is ending
		}
	}
	s.stamp(batch)
	for fam := range 2 {
		c := s.conns[fam]
		if c == nil {
			continue
		}
		ms := bufs.msgs[:0]
		idx := bufs.idx[:0]
		for k, o := range batch {
			if o.addr.Is6() != (fam == 1) {
				continue
			}
			n := len(ms)
			b := s.key.marshal(bufs.pkts[n], c.v6, s.id, o.seq, o.p, o.addr)
			m := &bufs.msgs[:n+1][n]
			m.Buffers = bufs.vec[n : n+1]
			m.Buffers[0] = b
			// The zone is the scope id of a link-local destination.
			if c.raw {
				a := &bufs.ipAddrs[n]
				a.IP, a.Zone = setIP(a.IP, o.addr), o.addr.Zone()
				m.Addr = a
			} else {
				a := &bufs.udpAddrs[n]
				a.IP, a.Zone = setIP(a.IP, o.addr), o.addr.Zone()
				m.Addr = a
			}
			ms = bufs.msgs[:n+1]
			idx = append(idx, k)
		}
		sent, open := writeAll(c.b, ms, time.Millisecond, func(k int, err error) {
			s.failed(batch[idx[k]], s.sendFailure(c.v6, batch[idx[k]].addr, err))
		})
		s.stats.sent.Add(uint64(sent))
		if !open {
			return
		}
	}
}

// failed records that request o could not leave: its target's request is
// resolved now, with err, rather than timed out later.
func (s *sweep) failed(o outgoing, err *sendError) {
	s.stats.sendErrors.Add(1)
	var out []job.Result
	s.mu.Lock()
	if sl := &s.slots[o.slot]; sl.live && sl.t.Index == o.p.index && !testSet(s.resolvedBits(o.slot), o.p.num) {
		if sl.sendErr == nil {
			sl.sendErr = err
		}
		sl.fails++
		out = s.settle(o.slot, out)
	}
	s.mu.Unlock()
	s.deliver(out)
}

// maxStall bounds how many times in a row a transient send error (ENOBUFS,
// EAGAIN) is waited out before the message it stops at counts as failed.
const maxStall = 1000

// errNoProgress stands for a sendmmsg that neither sent nor failed.
var errNoProgress = errors.New("sendmmsg sent nothing and reported no error")

// writeAll writes ms with w's sendmmsg, which stops at the first message
// that cannot leave: failed gets that message's index in ms and its error,
// and the messages after it are written on. A transient error is waited out
// (pause, then again), at most maxStall times in a row. It returns how many
// messages left, and open false when the socket was closed (the rest were
// not tried: the sweep is ending).
//
// On error sendmmsg returns -1, not a count; after a partial send it returns
// the count and no error, and the next call, starting at the message that
// stopped it, reports that message's error.
func writeAll(w batchWriter, ms []ipv4.Message, pause time.Duration, failed func(k int, err error)) (sent int, open bool) {
	stall := 0
	for off := 0; off < len(ms); {
		n, err := w.WriteBatch(ms[off:], 0)
		n = min(max(n, 0), len(ms)-off) // -1 on error; never past what was asked
		off += n
		sent += n
		if n > 0 {
			stall = 0
			if err == nil {
				continue
			}
		}
		if errors.Is(err, net.ErrClosed) {
			return sent, false
		}
		if off == len(ms) {
			break
		}
		if err == nil || transientSendErr(err) {
			if stall < maxStall {
				stall++
				time.Sleep(pause) // the queue drains; try again
				continue
			}
			if err == nil {
				err = errNoProgress
			}
		}
		// ms[off] cannot leave: it alone fails, the rest go on.
		failed(off, err)
		off++
		stall = 0
	}
	return sent, true
}

// batchWriter is sendmmsg: ipv4.PacketConn and ipv6.PacketConn.
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func transientSendErr(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
}

// sendBufs are the sender's reusable packet and message buffers.
type sendBufs struct {
	pkts     [batchMax][]byte
	vec      [batchMax][]byte
	msgs     [batchMax]ipv4.Message
	idx      []int
	ipAddrs  [batchMax]net.IPAddr
	udpAddrs [batchMax]net.UDPAddr
}

func newSendBufs(payload int) *sendBufs {
	b := &sendBufs{idx: make([]int, 0, batchMax)}
	for i := range b.pkts {
		p := make([]byte, icmpHeaderLen+payload)
		for k := icmpHeaderLen + minPayload; k < len(p); k++ {
			p[k] = byte(k)
		}
		b.pkts[i] = p
	}
	return b
}

func setIP(ip net.IP, a netip.Addr) net.IP {
	if a.Is4() {
		v := a.As4()
		return append(ip[:0], v[:]...)
	}
	v := a.As16()
	return append(ip[:0], v[:]...)
}

// reaper times requests out in send order.
func (s *sweep) reaper(ctx context.Context) {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var out []job.Result
	for {
		s.mu.Lock()
		now := s.now()
		// A request times out once its deadline has passed and every
		// receiver has since found its socket empty: a reply that came in
		// time is never reaped while it waits to be read.
		limit := now
		for fam, c := range s.conns {
			if c != nil {
				limit = min(limit, s.drained[fam])
			}
		}
		// A receiver this far behind is stuck, not slow: do not wait on it.
		limit = max(limit, now-int64(maxDrainLag))
		next := int64(-1)
		for s.timeouts.len() > 0 {
			if d := s.timeouts.front().deadline; d > limit {
				next = d
				break
			}
			to := s.timeouts.pop()
			sl := &s.slots[to.slot]
			if !sl.live || sl.gen != to.gen || testSet(s.resolvedBits(to.slot), to.num) {
				continue
			}
			out = s.settle(to.slot, out)
		}
		s.mu.Unlock()
		out = s.deliver(out)
		if next < 0 {
			select {
			case <-s.kick:
				continue
			case <-ctx.Done():
				return
			}
		}
		// Wake at most every reapTick: timeouts are reaped a little late
		// rather than costing a wakeup per request.
		timer.Reset(max(time.Duration(next-now), reapTick))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
	}
}

// event is a received ICMP message that verified, ready to apply under mu.
type event struct {
	e       echo
	src     netip.Addr
	unreach string // empty for an echo reply
	wrong   bool   // verified only against the slot's address, not the source
	at      int64  // arrival on the sweep's clock
}

// receiver reads c in batches until c is closed.
func (s *sweep) receiver(c *conn) {
	defer s.wg.Done()
	fam := 0
	if c.v6 {
		fam = 1
	}
	bufSize := max(512, icmpHeaderLen+s.payload+128)
	ms := make([]ipv4.Message, batchMax)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, bufSize)}
		ms[i].OOB = make([]byte, oobSize)
	}
	var (
		evs []event
		out []job.Result
	)
	for {
		// The deadline wakes an idle receiver every reapTick to say the
		// socket was empty: the reaper waits for that before timing out.
		t0 := s.now()
		_ = c.pc.SetReadDeadline(s.epoch.Add(time.Duration(t0) + reapTick))
		n, err := c.b.ReadBatch(ms, 0)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				// The deadline may have passed before the read even began
				// (a busy machine): ask the socket whether it is empty.
				t1 := s.now()
				if c.empty() {
					s.mu.Lock()
					s.drained[fam] = t1
					s.mu.Unlock()
				}
			default:
				time.Sleep(time.Millisecond) // a transient error must not spin
			}
			continue
		}
		wall, mono := time.Now().UnixNano(), s.now()
		evs = evs[:0]
		for i := range ms[:n] {
			if ev, ok := s.parse(c, &ms[i], arrival(&ms[i], wall, mono)); ok {
				evs = append(evs, ev)
			}
		}
		s.mu.Lock()
		for _, ev := range evs {
			out = s.apply(ev, out)
		}
		if n < len(ms) {
			// The read took all there was: every reply that arrived
			// before t0 has been applied.
			s.drained[fam] = t0
		}
		s.mu.Unlock()
		out = s.deliver(out)
	}
}

// oobSize holds one SCM_TIMESTAMPNS control message.
var oobSize = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// arrival is when the kernel received m (SO_TIMESTAMPNS), on the sweep's
// clock; mono (read at wall) when the kernel gave no timestamp. RTTs and
// timeouts are judged by arrival, not by when a busy receiver got to it.
func arrival(m *ipv4.Message, wall, mono int64) int64 {
	oob := m.OOB[:m.NN]
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			if age := wall - ts.Nano(); age >= 0 && age < int64(time.Minute) {
				return mono - age
			}
			break
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
	return mono
}

// parse reads one message: an echo reply or an ICMP error quoting one of
// our requests. Anything else is counted as foreign and dropped.
func (s *sweep) parse(c *conn, m *ipv4.Message, at int64) (event, bool) {
	b := m.Buffers[0][:m.N]
	var src netip.Addr
	if c.raw && !c.v6 {
		if len(b) < 20 || b[0]>>4 != 4 {
			s.stats.foreign.Add(1)
			return event{}, false
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		b = b[int(b[0]&0x0f)*4:]
	} else {
		src = addrOf(m.Addr)
	}
	if len(b) < icmpHeaderLen {
		s.stats.foreign.Add(1)
		return event{}, false
	}
	typ := b[0]
	switch {
	case (!c.v6 && typ == v4EchoReply) || (c.v6 && typ == v6EchoReply):
		if c.raw && binary.BigEndian.Uint16(b[4:]) != s.id {
			s.stats.foreign.Add(1)
			return event{}, false
		}
		e, ok := parseEcho(b)
		if !ok {
			break
		}
		ev := event{e: e, src: src, at: at}
		// When it does not verify against its source it may still be ours,
		// answered from another address: apply decides, knowing what we probed.
		ev.wrong = !s.key.valid(e, src)
		return ev, true
	case !c.v6 && (typ == v4Unreachable || typ == v4TimeExceed):
		q := b[icmpHeaderLen:]
		if len(q) < 20 || q[0]>>4 != 4 || q[9] != 1 {
			break
		}
		dst := netip.AddrFrom4([4]byte(q[16:20]))
		q = q[int(q[0]&0x0f)*4:]
		if len(q) < icmpHeaderLen || q[0] != v4EchoRequest {
			break
		}
		if e, ok := parseEcho(q); ok && s.key.valid(e, dst) {
			return event{e: e, src: dst, unreach: icmpError(false, typ, b[1], src)}, true
		}
	case c.v6 && (typ == v6Unreachable || typ == v6TimeExceed):
		q := b[icmpHeaderLen:]
		if len(q) < 40 || q[0]>>4 != 6 || q[6] != 58 {
			break
		}
		dst := netip.AddrFrom16([16]byte(q[24:40]))
		q = q[40:]
		if len(q) < icmpHeaderLen || q[0] != v6EchoRequest {
			break
		}
		if e, ok := parseEcho(q); ok && s.key.valid(e, dst) {
			return event{e: e, src: dst, unreach: icmpError(true, typ, b[1], src)}, true
		}
	}
	s.stats.foreign.Add(1)
	return event{}, false
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	v, _ := netip.AddrFromSlice(ip)
	return v.Unmap()
}

// apply counts a verified message toward its target; mu is held.
func (s *sweep) apply(ev event, out []job.Result) []job.Result {
	p := ev.e.p
	i := p.slot
	if int(i) >= len(s.slots) {
		s.stats.foreign.Add(1)
		return out
	}
	sl := &s.slots[i]
	if ev.wrong {
		// Valid only if it verifies against the address we probed.
		if !sl.live || sl.t.Index != p.index || int(p.num) >= int(sl.sent) ||
			!s.key.valid(ev.e, sl.addr) {
			s.stats.foreign.Add(1)
			return out
		}
		s.stats.wrongSource.Add(1)
		return out
	}
	// ev.src has no zone: a link-local target's replies match it without.
	if !sl.live || sl.t.Index != p.index || sl.addr.WithZone("") != ev.src || int(p.num) >= int(sl.sent) {
		s.stats.late.Add(1) // its target has finished; the slot may hold another
		return out
	}
	if ev.unreach != "" {
		s.stats.unreachable.Add(1)
		if testSet(s.resolvedBits(i), p.num) {
			return out
		}
		if sl.unreach == "" {
			sl.unreach = ev.unreach
		}
		return s.settle(i, out)
	}
	if w, m := p.num/64, uint64(1)<<(p.num%64); s.answeredBits(i)[w]&m != 0 {
		s.stats.duplicate.Add(1)
		return out
	} else if s.resolvedBits(i)[w]&m != 0 || ev.at > p.sent+s.timeout {
		s.stats.late.Add(1) // came after its timeout, reaped or not yet
		return out
	}
	testSet(s.answeredBits(i), p.num)
	testSet(s.resolvedBits(i), p.num)
	rtt := max(time.Duration(ev.at-p.sent), time.Microsecond/10)
	s.stats.replies.Add(1)
	sl.recv++
	sl.rttSum += rtt
	if sl.recv == 1 || rtt < sl.rttMin {
		sl.rttMin = rtt
	}
	if rtt > sl.rttMax {
		sl.rttMax = rtt
	}
	return s.settle(i, out)
}

func icmpError(v6 bool, typ, code byte, from netip.Addr) string {
	var what string
	switch {
	case !v6 && typ == v4TimeExceed, v6 && typ == v6TimeExceed:
		what = "time exceeded"
	case !v6 && code == 0, v6 && code == 0:
		what = "network unreachable"
	case !v6 && code == 1, v6 && code == 3:
		what = "host unreachable"
	case !v6 && code == 13, v6 && code == 1:
		what = "administratively prohibited"
	default:
		what = fmt.Sprintf("destination unreachable (code %d)", code)
	}
	return fmt.Sprintf("%s from %s", what, from)
}
