// Package backoff is fanout's one rule for the wait between retries: the
// engine's retries of a target, and the ssh job's connect and handshake
// retries, all space their attempts with a Policy.
//
// The wait before retry n is Base doubled n-1 times, capped at Max, then
// jittered uniformly in [d/2, 3d/2) so that the retries of many targets that
// failed together do not come back together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

const (
	// DefaultBase is the first wait of a Policy whose Base is <= 0.
	DefaultBase = 100 * time.Millisecond
	// DefaultMax caps the doubling of a Policy whose Max is <= 0, so that a
	// long retry chain stays responsive.
	DefaultMax = 30 * time.Second
	// ceiling keeps 3d/2 within a Duration whatever Max says.
	ceiling = time.Duration(1<<63-1) / 3 * 2
)

// Policy is a doubling, capped, jittered backoff. The zero Policy is
// {DefaultBase, DefaultMax}. A Max below Base makes every wait Max.
type Policy struct {
	Base time.Duration // nominal wait before the first retry; <= 0: DefaultBase
	Max  time.Duration // nominal wait at most, before jitter; <= 0: DefaultMax
}

// Nominal is the wait before retry n (1-based; n < 1 counts as 1) before
// jitter: Base doubled n-1 times, capped at Max.
func (p Policy) Nominal(n int) time.Duration {
	d, hi := p.Base, p.Max
	if d <= 0 {
		d = DefaultBase
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	hi = min(hi, ceiling)
	d = min(d, hi)
	for i := 1; i < n && d < hi; i++ {
		if d > hi/2 {
			return hi // doubling would pass hi, or overflow
		}
		d *= 2
	}
	return d
}

// Delay is the wait before retry n (1-based): Nominal(n) jittered uniformly
// in [d/2, 3d/2). Safe for concurrent use.
func (p Policy) Delay(n int) time.Duration {
	d := p.Nominal(n)
	return d/2 + rand.N(d)
}

// Sleep waits d or until ctx is done, whichever comes first; false means
// ctx ended it (or had already ended: then it does not wait at all).
func Sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
