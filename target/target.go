// Package target turns target specs (CIDRs, ranges, node-sets, names, files)
// into a Set: an indexable, lazy list in one canonical order, and provides the
// orders a sweep visits it in (identity, shuffled, sharded, sliced).
package target

import (
	"net/netip"
)

// DefaultMaxTargets is the largest Set accepted without --max-targets: a /8.
const DefaultMaxTargets = 1 << 24

// Target is one entry of a Set.
type Target struct {
	Index uint64     // position in the Set's canonical order
	Host  string     // the name as given; empty when the target is a bare address
	Addr  netip.Addr // valid when known without resolving (address specs)
	Port  uint16     // 0 unless the spec named one; the job's default applies
	User  string     // empty unless the spec named one (user@host); the job's default applies
}

// Name is how the target is shown: its name, or its address (with its zone).
func (t Target) Name() string {
	if t.Host != "" {
		return t.Host
	}
	return t.Addr.String()
}

// Set is an indexable list of targets in canonical order (for Parse's sets:
// IPv4 ascending, then IPv6 ascending, then names in first-seen order). At must be cheap
// and must not allocate per call for address targets; it panics when i >= Len.
type Set interface {
	Len() uint64
	At(i uint64) Target
}

// Order is the sequence in which a sweep visits a Set: the k-th visit is
// index At(k). Every Order is a bijection from [0, Len) to a subset of the
// Set's indexes, computed in O(1) memory.
type Order interface {
	Len() uint64
	At(k uint64) uint64
}

// Identity visits indexes 0..n-1 in canonical order.
func Identity(n uint64) Order { return identity(n) }

type identity uint64

func (o identity) Len() uint64        { return uint64(o) }
func (o identity) At(k uint64) uint64 { return k }

// Slice visits positions [lo, hi) of o: a cluster task or a resumed range.
func Slice(o Order, lo, hi uint64) Order {
	if hi > o.Len() {
		hi = o.Len()
	}
	if lo > hi {
		lo = hi
	}
	return slice{o, lo, hi - lo}
}

type slice struct {
	o     Order
	lo, n uint64
}

func (s slice) Len() uint64        { return s.n }
func (s slice) At(k uint64) uint64 { return s.o.At(s.lo + k) }
