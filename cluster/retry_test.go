package cluster

import (
	"testing"
	"time"

	"github.com/fanout/fanout/internal/backoff"
)

// The cluster's waits follow internal/backoff's one rule: doubling from
// their base to their cap, each jittered in [d/2, 3d/2) (the reconnect
// delay used to add up to a quarter, never less than its nominal wait).
func TestClusterRetryPolicies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		p          backoff.Policy
		first, max time.Duration
	}{
		{"reconnect", reconnectRetry, 250 * time.Millisecond, 5 * time.Second},
		{"refused task", refuseRetry, 50 * time.Millisecond, time.Second},
		{"failed fetch", fetchRetry, 250 * time.Millisecond, 2 * time.Second},
		{"collector read", collectRetry, 100 * time.Millisecond, 2 * time.Second},
	} {
		if got := c.p.Nominal(1); got != c.first {
			t.Errorf("%s: first wait %v, want %v", c.name, got, c.first)
		}
		if got := c.p.Nominal(1000); got != c.max {
			t.Errorf("%s: wait capped at %v, want %v", c.name, got, c.max)
		}
		below := false
		for n := 1; n <= 200; n++ {
			d, nom := c.p.Delay(n), c.p.Nominal(n)
			if d < nom/2 || d >= nom*3/2 {
				t.Fatalf("%s: Delay(%d) = %v, outside [%v, %v)", c.name, n, d, nom/2, nom*3/2)
			}
			below = below || d < nom
		}
		if !below {
			t.Errorf("%s: 200 waits, none below the nominal wait: not jittered both ways", c.name)
		}
	}
}
