// The sender goroutine: it takes targets from the intake, gives each a
// slot, and schedules its requests (first requests, then resends in send
// order), which it writes in sendmmsg batches (sendmmsg.go); a request that
// cannot leave is settled at once (senderr.go). It also opens the sockets,
// starting a receiver for each, and starts the name lookups.

package icmp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// outgoing is a request on its way into a sendmmsg batch.
type outgoing struct {
	slot uint32
	p    probe
	seq  uint16
	addr netip.Addr
}

// resend is a target's next request, also due in send order.
type resend struct {
	slot uint32
	gen  uint32
	due  int64
}

// sender starts queued targets and sends due resends, in sendmmsg batches.
// It never blocks on anything but its queue, the rate limiter and the socket.
func (s *sweep) sender(ctx context.Context) {
	defer s.wg.Done()
	var (
		items    = s.spare.items // taken from the intake; items[pos:] are to start
		pos      int
		news     []fresh
		out      []job.Result
		batch    = make([]outgoing, 0, batchMax)
		sendBufs = s.spare.send
		timer    = time.NewTimer(time.Hour)
		ad       = addressing{sem: make(chan struct{}, resolvers)}
		closed   bool
	)
	if sendBufs == nil {
		sendBufs = newSendBufs(s.payload)
	}
	timer.Stop()
	defer func() {
		s.spare.items, s.spare.send = items, sendBufs
		ad.wg.Wait() // lookups end with ctx, or have all come back
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
			news, out = s.start(ctx, items[pos], &ad, news, out)
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
		// closed was read with the queue, which was empty.
		if !s.idle(ctx, timer, closed && ad.lookups == 0) {
			return
		}
	}
}

// addressing is what the sender keeps to find the address a target's
// requests go to: its name lookups and the interfaces of IPv6 zones.
type addressing struct {
	lookups int               // names being resolved
	sem     chan struct{}     // bounds concurrent lookups
	wg      sync.WaitGroup    // the lookups' goroutines
	zones   map[string]string // IPv6 zone as given -> its interface's name
}

// start takes item it from the intake: a target to send to goes onto news,
// a name to a lookup, and a target that cannot be pinged onto out.
func (s *sweep) start(ctx context.Context, it item, ad *addressing, news []fresh, out []job.Result) ([]fresh, []job.Result) {
	switch {
	case it.looked:
		ad.lookups--
		if it.err != nil {
			return news, append(out, job.ResolveFailed(ctx, it.t, Kind, it.start, it.err))
		}
		return append(news, fresh{t: it.t, addr: it.t.Addr}), out
	case !it.t.Addr.IsValid():
		ad.lookups++
		ad.wg.Add(1)
		go s.resolve(ctx, it.t, ad.sem, &ad.wg)
		return news, out
	}
	it.t.Addr = it.t.Addr.Unmap()
	addr, err := sendZone(it.t.Addr, &ad.zones)
	if err != nil {
		return news, append(out, localError(it.t, time.Now(), err))
	}
	return append(news, fresh{t: it.t, addr: addr}), out
}

// idle waits, when there is nothing to send now, for a target, a name, or
// the next resend. It reports false, at once, when ended (the intake is
// closed and empty, no name is being resolved) and no resend is queued:
// the sender is done.
func (s *sweep) idle(ctx context.Context, timer *time.Timer, ended bool) bool {
	s.mu.Lock()
	next := int64(-1)
	if s.resends.len() > 0 {
		next = s.resends.front().due
	}
	s.mu.Unlock()
	if ended && next < 0 {
		return false
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
	return true
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
		fam := family(f.addr.Is6())
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
			out = append(out, localError(t, s.epoch.Add(time.Duration(now)), err))
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
