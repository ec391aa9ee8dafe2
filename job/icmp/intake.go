// The intake: how targets reach the sender. The feed goroutine moves the
// engine's targets into the intake queue; a target given by name goes to a
// lookup goroutine (started by the sender) and comes back through the queue
// with its address. The sender takes the queue in batches (send.go).

package icmp

import (
	"context"
	"sync"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

const resolvers = 32 // concurrent name lookups

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

// feed moves targets from in to the intake queue until in is closed.
func (s *sweep) feed(ctx context.Context, in <-chan target.Target) {
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
