package target

// Position is the inverse of an Order: the k with o.At(k) == i, and whether
// there is one. It is O(1) for the orders this package builds (identity,
// Shuffle, Slice and Shard of them), which is how a cluster collector checks
// that a Result's index belongs to the sweep, and to the task it came in,
// without a table of the sweep's indexes. An Order of another package is
// searched linearly.
func Position(o Order, i uint64) (uint64, bool) {
	switch o := o.(type) {
	case identity:
		return i, i < uint64(o)
	case *shuffle:
		return o.position(i)
	case slice:
		k, ok := Position(o.o, i)
		if !ok || k < o.lo || k-o.lo >= o.n {
			return 0, false
		}
		return k - o.lo, true
	}
	for k := uint64(0); k < o.Len(); k++ {
		if o.At(k) == i {
			return k, true
		}
	}
	return 0, false
}

// position walks the cycle of At backwards: At applies permute until the
// value falls inside [0, n), so its inverse applies unpermute until it does.
func (s *shuffle) position(i uint64) (uint64, bool) {
	if i >= s.n {
		return 0, false
	}
	if s.n == 1 {
		return 0, true
	}
	x := i
	for {
		x = s.unpermute(x)
		if x < s.n {
			return x, true
		}
	}
}

// unpermute is permute's inverse: the rounds undone in reverse order.
func (s *shuffle) unpermute(x uint64) uint64 {
	// An even number of rounds leaves the widths as they started.
	lb, rb := s.lbits, s.rbits
	l, r := x>>rb, x&(1<<rb-1)
	for i := len(s.keys) - 1; i >= 0; i-- {
		// Forward: (l, r) -> (r, l ^ F(r)), widths swapped. Back: the new
		// left was the old right; the old left is the new right ^ F(it).
		l, r = (r^mix(l^s.keys[i]))&(1<<rb-1), l
		lb, rb = rb, lb
	}
	return l<<rb | r
}
