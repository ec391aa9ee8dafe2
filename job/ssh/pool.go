package ssh

import (
	"container/list"
	"sync"
	"time"
)

// A pool keeps each host's authenticated connection open between Runs on
// that host (Config.KeepConnections), so that a watch's rounds after the
// first open only a session each: no TCP connect, no key exchange, no
// authentication, which are most of what a command costs the server and the
// client. The job owns it; the engine knows nothing of it.
//
// Bounded: at most Config.MaxConnections kept (lent out and idle), the least
// recently used idle one closed first; an idle one unused for
// Config.IdleTimeout is closed. Idle connections are kept alive: their
// server's requests (OpenSSH's ClientAliveInterval probes) are answered, and
// a keepalive@openssh.com request goes out every keepaliveEvery, which
// finds a dead peer (no answer in keepaliveWait: closed) and keeps
// firewalls' and NATs' state. A connection that ended while idle leaves the
// pool; one found broken when a session is opened on it is redialled by the
// caller, as a new host would be.
type pool struct {
	max       int           // kept connections at most (lent + idle); 0 = no bound
	idleFor   time.Duration // an idle connection unused this long is closed
	keepalive time.Duration // between keepalives of an idle connection
	wait      time.Duration // for a keepalive's answer
	tick      time.Duration // how often idle connections are looked after

	mu     sync.Mutex
	byKey  map[string]*list.Element // idle, by host key; values *pooled
	lru    list.List                // idle, most recently used first
	lent   int                      // taken from the pool, not yet back
	closed bool
	stop   chan struct{} // non-nil while the janitor runs
	wg     sync.WaitGroup
}

// pooled is an idle connection.
type pooled struct {
	key  string
	l    *link
	last time.Time // back in the pool
	kept time.Time // last keepalive answered (or last use)
	st   sessionState
	busy bool // a keepalive is in flight
}

// Defaults of the pool.
const (
	DefaultIdleTimeout = 15 * time.Minute
	keepaliveEvery     = 30 * time.Second
	keepaliveWait      = 15 * time.Second
	idleTick           = time.Second
	// maxKeepalives bounds the keepalives in flight (one goroutine each).
	maxKeepalives = 64
)

func newPool(max int, idle time.Duration) *pool {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	return &pool{max: max, idleFor: idle, keepalive: keepaliveEvery, wait: keepaliveWait, tick: idleTick, byKey: map[string]*list.Element{}}
}

// get lends the idle connection kept for key, if any.
func (p *pool) get(key string) *link {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byKey[key]
	if !ok {
		return nil
	}
	pc := p.remove(e)
	p.lent++
	pc.l.pooled = true
	return pc.l
}

// put takes back a connection whose session ended cleanly (lent by get, or
// dialled for this Run), to keep for the next Run on key.
func (p *pool) put(key string, l *link) {
	p.mu.Lock()
	if l.pooled {
		l.pooled = false
		p.lent--
	}
	_, dup := p.byKey[key] // the same host twice in one round: keep one
	if p.closed || dup || (p.max > 0 && p.lent >= p.max) {
		p.mu.Unlock()
		l.conn.Close()
		return
	}
	now := time.Now()
	pc := &pooled{key: key, l: l, last: now, kept: now}
	pc.st.chans, pc.st.reqs = l.chans, l.reqs
	p.byKey[key] = p.lru.PushFront(pc)
	var evict []*link
	for p.max > 0 && p.lru.Len()+p.lent > p.max {
		evict = append(evict, p.remove(p.lru.Back()).l)
	}
	if p.stop == nil {
		p.stop = make(chan struct{})
		p.wg.Add(1)
		go p.janitor(p.stop)
	}
	p.mu.Unlock()
	for _, l := range evict {
		l.conn.Close()
	}
}

// drop forgets a lent connection found broken, and closes it.
func (p *pool) drop(l *link) {
	p.mu.Lock()
	if l.pooled {
		l.pooled = false
		p.lent--
	}
	p.mu.Unlock()
	l.conn.Close()
}

// remove takes e out of the idle list (under mu).
func (p *pool) remove(e *list.Element) *pooled {
	pc := p.lru.Remove(e).(*pooled)
	delete(p.byKey, pc.key)
	return pc
}

// idle is the number of idle connections.
func (p *pool) idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// close closes every idle connection and stops the janitor; connections
// lent out are closed as they come back.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*link
	for p.lru.Len() > 0 {
		all = append(all, p.remove(p.lru.Front()).l)
	}
	stop := p.stop
	p.stop = nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	closeAll(all) // before the wait: a keepalive in flight then ends at once
	p.wg.Wait()
}

// janitor looks after the idle connections every tick until stop, or
// until the pool has none.
func (p *pool) janitor(stop chan struct{}) {
	defer p.wg.Done()
	t := time.NewTicker(p.tick)
	defer t.Stop()
	sem := make(chan struct{}, maxKeepalives)
	var doomed []*link
	var probe []*pooled
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		p.mu.Lock()
		for e := p.lru.Front(); e != nil; {
			next := e.Next()
			pc := e.Value.(*pooled)
			// Answer what the server asked meanwhile, as reply slots allow.
			for (pc.st.slots == nil || len(pc.st.slots) < cap(pc.st.slots)) && pc.st.serve(false, nil) {
			}
			switch {
			case pc.st.chans == nil || pc.st.reqs == nil: // the connection ended
				doomed = append(doomed, p.remove(e).l)
			case now.Sub(pc.last) >= p.idleFor:
				doomed = append(doomed, p.remove(e).l)
			case !pc.busy && now.Sub(pc.kept) >= p.keepalive:
				pc.busy = true
				probe = append(probe, pc)
			}
			e = next
		}
		if p.lru.Len() == 0 && p.lent == 0 && p.stop == stop {
			p.stop = nil // the next put starts another
			p.mu.Unlock()
			closeAll(doomed)
			return
		}
		p.mu.Unlock()
		closeAll(doomed)
		doomed = doomed[:0]
		for _, pc := range probe {
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			p.wg.Add(1)
			go p.keepAlive(pc, sem)
		}
		clear(probe)
		probe = probe[:0]
	}
}

// keepAlive sends one keepalive on pc's connection; no answer in time
// closes it (the janitor then sees it ended).
func (p *pool) keepAlive(pc *pooled, sem chan struct{}) {
	defer p.wg.Done()
	defer func() { <-sem }()
	cut := time.AfterFunc(p.wait, func() { pc.l.conn.Close() })
	_, _, err := pc.l.conn.SendRequest("keepalive@openssh.com", true, nil)
	cut.Stop()
	p.mu.Lock()
	pc.busy = false
	if err == nil {
		pc.kept = time.Now()
	}
	p.mu.Unlock()
	if err != nil {
		pc.l.conn.Close()
	}
}

func closeAll(ls []*link) {
	for i, l := range ls {
		l.conn.Close()
		ls[i] = nil
	}
}
