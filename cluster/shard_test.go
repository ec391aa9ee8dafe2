package cluster

import (
	"context"
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
	rec, err := c.Submit(ctx, spec, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Emit: k.emit}); err != nil {
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
