package target

import "testing"

// Position inverts every order this package builds, and says no for an
// index the order does not visit.
func TestPositionInvertsOrders(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{0, 1, 2, 3, 7, 64, 1000, 4097} {
		orders := map[string]Order{
			"identity":       Identity(n),
			"shuffle":        Shuffle(n, 42),
			"shard 2/3":      Shard(Identity(n), 1, 3),
			"shuffled shard": Shard(Shuffle(n, 7), 2, 3),
			"slice":          Slice(Shuffle(n, 9), n/4, n/2),
		}
		for name, o := range orders {
			seen := map[uint64]bool{}
			for k := uint64(0); k < o.Len(); k++ {
				i := o.At(k)
				seen[i] = true
				got, ok := Position(o, i)
				if !ok || got != k {
					t.Fatalf("n=%d %s: Position(At(%d)=%d) = %d, %v", n, name, k, i, got, ok)
				}
			}
			for i := uint64(0); i < n+3; i++ {
				if _, ok := Position(o, i); ok != seen[i] {
					t.Fatalf("n=%d %s: Position(%d) ok=%v, visited=%v", n, name, i, ok, seen[i])
				}
			}
		}
	}
}
