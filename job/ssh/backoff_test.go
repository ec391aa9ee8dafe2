package ssh

import (
	"context"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// The ssh job's two retry waits: their first wait, their doubling, and a
// cap (neither had one before internal/backoff: a long retry chain waited
// hours, then overflowed).
func TestRetryPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		n      int
		got    time.Duration
		wanted time.Duration
	}{
		{"connect, first", 1, connectRetry.Nominal(1), 100 * time.Millisecond},
		{"connect, third", 3, connectRetry.Nominal(3), 400 * time.Millisecond},
		{"connect, capped", 40, connectRetry.Nominal(40), 30 * time.Second},
		{"banner, first", 1, bannerRetry.Nominal(1), 50 * time.Millisecond},
		{"banner, third", 3, bannerRetry.Nominal(3), 200 * time.Millisecond},
		{"banner, capped", 40, bannerRetry.Nominal(40), 30 * time.Second},
	} {
		if tc.got != tc.wanted {
			t.Errorf("%s: wait before retry %d = %v, want %v", tc.name, tc.n, tc.got, tc.wanted)
		}
	}
}

// Cancelling the context ends a long retry chain (minutes of waits), for
// both retry loops: connect retries (Retries) and banner retries
// (HandshakeRetries). That a wait itself ends on cancel is
// internal/backoff's TestSleepCancel: here the wait in progress is too short
// to tell from one waited out without a wall-clock bound.
func TestRetryWaitCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"connect retries", Config{Command: "true", Retries: 100, HandshakeRetries: -1}},
		{"banner retries", Config{Command: "true", HandshakeRetries: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port, resets := flakyListener(t, 0, math.MaxInt) // resets every connection
			j := newJob(t, tc.cfg, newHome(t, "").env())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan job.Result, 1)
			go func() {
				done <- j.Run(ctx, target.Target{Addr: netip.MustParseAddr("127.0.0.1"), Port: uint16(port)})
			}()
			// Wait for a retry: the chain has reached the backoff loop.
			for deadline := time.Now().Add(time.Minute); resets.Load() < 2; {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections in a minute, want 2", resets.Load())
				}
				select {
				case r := <-done:
					t.Fatalf("Run returned before it was cancelled: %s/%s %q", r.Status, r.Class, r.Error)
				case <-time.After(5 * time.Millisecond):
				}
			}
			cancel()
			select {
			case r := <-done:
				if r.Status == job.Up {
					t.Fatalf("cancelled Run: %s, want not up", r.Status)
				}
			case <-time.After(time.Minute):
				t.Fatal("Run still retrying a minute after its context was cancelled")
			}
		})
	}
}
