package target

import (
	"errors"
	"io"
)

// ParseOptions tune Parse.
type ParseOptions struct {
	Excludes   []string  // specs removed from the set (same syntax)
	MaxTargets uint64    // refuse sets larger than this; 0 = DefaultMaxTargets
	AllowHuge  bool      // accept IPv6 prefixes of /64 and larger
	Stdin      io.Reader // read for the spec "-"
}

// Parse turns target specs into a Set. Stub: the target owner replaces it.
func Parse(specs []string, opts ParseOptions) (Set, error) {
	return nil, errors.New("target.Parse: not implemented")
}

// Shuffle is a pseudo-random full-cycle permutation of [0, n), reproducible
// from seed, in O(1) memory. Stub: the target owner replaces it.
func Shuffle(n, seed uint64) Order { return Identity(n) }

// Shard is the i-th (0-based) of n disjoint contiguous slices of o; the
// slices cover o exactly.
func Shard(o Order, i, n uint64) Order {
	lo := o.Len() * i / n
	hi := o.Len() * (i + 1) / n
	return Slice(o, lo, hi)
}
