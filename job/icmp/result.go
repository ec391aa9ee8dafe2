// Results: what a finished target reports, built under sweep.mu by the
// goroutine that settles it (slots.go), or by the sender for a target that
// failed before any request left.

package icmp

import (
	"fmt"
	"math"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

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
		r.RTTStddev = stddev(sl.rttSq, sl.rttSum, sl.recv)
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

// stddev is the population standard deviation of n RTTs from their sum
// and the sum of their squares (ping's mdev); 0 for one reply.
func stddev(sq float64, sum time.Duration, n int32) time.Duration {
	if n < 2 {
		return 0
	}
	mean := float64(sum) / float64(n)
	v := sq/float64(n) - mean*mean
	if v <= 0 {
		return 0
	}
	return time.Duration(math.Sqrt(v))
}

// errorsOnly: every request failed to leave.
func errorsOnly(sl *slot) bool { return sl.fails == sl.sent }

// localError is the Result of a target that failed on this machine before
// any request left (no socket, no such interface).
func localError(t target.Target, start time.Time, err error) job.Result {
	r := job.For(t, Kind)
	r.Start, r.End, r.Attempts = start, time.Now(), 1
	r.Status, r.Class, r.Error = job.Error, job.ClassLocal, err.Error()
	return r
}
