// The reaper goroutine: it times requests out in send order, from the
// queue of deadlines the sender fills (sweep.stamp), once every receiver
// has read what arrived before them.

package icmp

import (
	"context"
	"time"

	"github.com/fanout/fanout/job"
)

// maxDrainLag bounds how long timeouts wait for a lagging receiver.
const maxDrainLag = 10 * time.Second

// timeout is a request's deadline, queued in send order: every request waits
// the same Timeout, so the queue is sorted and reaping is O(1) per probe.
type timeout struct {
	slot     uint32
	gen      uint32
	num      uint16
	deadline int64
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
