package cluster

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/fanout/fanout/target"
)

// A shuffled shard's results carry indexes of the whole set, beyond the
// shard's own count: the collector places each by its position in the
// order (it used to drop every index past the count, and wait forever).
func TestShuffledShardThroughCluster(t *testing.T) {
	t.Parallel()
	const n = 3000
	spec := sleepSpec(n, 1)
	spec.Shuffle, spec.Seed, spec.ShardI, spec.ShardN = true, 11, 3, 3
	_, order, err := spec.Visit()
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t)
	tc.worker("w1", 100, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, spec, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	if err := c.Collect(ctx, rec.ID, k.opts()); err != nil {
		t.Fatal(err)
	}
	byPos := map[uint64]int{}
	for i, v := range k.counts {
		p, ok := target.Position(order, i)
		if !ok {
			t.Fatalf("index %d is not in the shard", i)
		}
		byPos[p] += v
	}
	exactlyOnce(t, "shard 3/3", byPos, int(order.Len()))
}

// A result names its target by the target's name, or for an address
// target by its address in any spelling (ping shows a v4-mapped address
// unmapped); where the job connected (Addr) is not compared.
func TestSameHost(t *testing.T) {
	t.Parallel()
	named := target.Target{Host: "web1", Addr: netip.MustParseAddr("127.0.0.1")}
	mapped := target.Target{Addr: netip.MustParseAddr("::ffff:127.0.0.9")}
	v6 := target.Target{Addr: netip.MustParseAddr("::1")}
	for _, tc := range []struct {
		host string
		t    target.Target
		want bool
	}{
		{"web1", named, true},
		{"127.0.0.1", named, false},
		{"127.0.0.9", mapped, true},
		{"::ffff:127.0.0.9", mapped, true},
		{"127.0.0.8", mapped, false},
		{"::1", v6, true},
		{"0:0:0:0:0:0:0:1", v6, true},
		{"", v6, false},
		{"localhost", v6, false},
	} {
		if got := sameHost(tc.host, tc.t); got != tc.want {
			t.Errorf("sameHost(%q, %v) = %v, want %v", tc.host, tc.t, got, tc.want)
		}
	}
}
