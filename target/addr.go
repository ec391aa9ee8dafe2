package target

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
)

// u128 is an address as a 128-bit number; IPv4 addresses use lo only.
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{math.MaxUint64, math.MaxUint64}

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) add(x uint64) u128 {
	lo, c := bits.Add64(a.lo, x, 0)
	return u128{a.hi + c, lo}
}

func (a u128) sub(b u128) u128 {
	lo, br := bits.Sub64(a.lo, b.lo, 0)
	return u128{a.hi - b.hi - br, lo}
}

func u128From16(b [16]byte) u128 {
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) addr6() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return netip.AddrFrom16(b)
}

func addr4(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// u32 is an IPv4 address as a number.
type u32 uint32

// num is an address family's number: u32 (IPv4), u128 (IPv6). The
// intervals of IPv4 addresses are then 8 bytes, not 32: a host file of
// millions of scattered addresses holds millions of them.
type num[A any] interface {
	comparable
	cmp(A) int
	inc() A // +1, wrapping
	dec() A // -1, wrapping
	isMax() bool
	plus(k uint64) A
	// count is a - lo + 1, saturated at MaxUint64.
	count(lo A) (n uint64, saturated bool)
	bigCount(lo A) *big.Int
}

func (a u32) cmp(b u32) int               { return cmp.Compare(a, b) }
func (a u32) inc() u32                    { return a + 1 }
func (a u32) dec() u32                    { return a - 1 }
func (a u32) isMax() bool                 { return a == math.MaxUint32 }
func (a u32) plus(k uint64) u32           { return a + u32(k) }
func (a u32) count(lo u32) (uint64, bool) { return uint64(a-lo) + 1, false }
func (a u32) bigCount(lo u32) *big.Int    { return new(big.Int).SetUint64(uint64(a-lo) + 1) }
func (a u128) inc() u128                  { return a.add(1) }
func (a u128) dec() u128                  { return a.sub(u128{0, 1}) }
func (a u128) isMax() bool                { return a == maxU128 }
func (a u128) plus(k uint64) u128         { return a.add(k) }
func (a u128) count(lo u128) (uint64, bool) {
	d := a.sub(lo)
	if d.hi != 0 || d.lo == math.MaxUint64 {
		return math.MaxUint64, true
	}
	return d.lo + 1, false
}
func (a u128) bigCount(lo u128) *big.Int {
	d := a.sub(lo)
	n := new(big.Int).Lsh(new(big.Int).SetUint64(d.hi), 64)
	n.Add(n, new(big.Int).SetUint64(d.lo))
	return n.Add(n, big.NewInt(1))
}

// span is an inclusive range of addresses of one family.
type span[A num[A]] struct{ lo, hi A }

type (
	span4 = span[u32]
	span6 = span[u128]
)

// size is the number of addresses in iv, saturated at MaxUint64 (an IPv6
// range can hold up to 2^128 addresses).
func (iv span[A]) size() (n uint64, saturated bool) { return iv.hi.count(iv.lo) }

// appendSpan adds iv to ivs, extending the last span when iv continues
// it: node-sets such as 10.0.[0-255].[0-255] then stay one span.
func appendSpan[A num[A]](ivs []span[A], iv span[A]) []span[A] {
	if n := len(ivs); n > 0 {
		last := &ivs[n-1]
		if iv.lo.cmp(last.lo) >= 0 && (last.hi.isMax() || iv.lo.cmp(last.hi.inc()) <= 0) {
			if iv.hi.cmp(last.hi) > 0 {
				last.hi = iv.hi
			}
			return ivs
		}
	}
	return append(ivs, iv)
}

// merge sorts ivs and joins overlapping and adjacent spans, so that an
// address given twice counts once.
func merge[A num[A]](ivs []span[A]) []span[A] {
	if len(ivs) < 2 {
		return ivs
	}
	slices.SortFunc(ivs, func(a, b span[A]) int { return a.lo.cmp(b.lo) })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if last.hi.isMax() || iv.lo.cmp(last.hi.inc()) <= 0 {
			if iv.hi.cmp(last.hi) > 0 {
				last.hi = iv.hi
			}
			continue
		}
		out = append(out, iv)
	}
	return slices.Clip(out)
}

// subtract removes ex from ivs; both are sorted and merged.
func subtract[A num[A]](ivs, ex []span[A]) []span[A] {
	if len(ex) == 0 {
		return ivs
	}
	var out []span[A]
	j := 0
	for _, iv := range ivs {
		cur := iv
		alive := true
		for j < len(ex) && ex[j].hi.cmp(cur.lo) < 0 {
			j++
		}
		for k := j; k < len(ex) && ex[k].lo.cmp(cur.hi) <= 0; k++ {
			e := ex[k]
			if e.lo.cmp(cur.lo) > 0 {
				out = append(out, span[A]{cur.lo, e.lo.dec()})
			}
			if e.hi.cmp(cur.hi) >= 0 {
				alive = false
				break
			}
			cur.lo = e.hi.inc()
		}
		if alive {
			out = append(out, cur)
		}
	}
	return out
}

// within reports whether v is in one of ivs (sorted and merged).
func within[A num[A]](ivs []span[A], v A) bool {
	j := sort.Search(len(ivs), func(j int) bool { return ivs[j].hi.cmp(v) >= 0 })
	return j < len(ivs) && ivs[j].lo.cmp(v) <= 0
}

// set is the Set Parse returns. Canonical order: IPv4 addresses ascending,
// then IPv6 addresses ascending, then names (and entries: zoned addresses,
// targets with a port or user) in first-seen order.
type set struct {
	v4     []span4
	v6     []span6
	s4, s6 []uint64 // index of each span's first address within its family
	n4, n6 uint64
	names  nameList
}

var _ Set = (*set)(nil)

func (s *set) Len() uint64 { return s.n4 + s.n6 + uint64(s.names.n) }

// At is O(log #intervals) and does not allocate.
func (s *set) At(i uint64) Target {
	if i < s.n4 {
		j := search(s.s4, i)
		return Target{Index: i, Addr: addr4(uint64(s.v4[j].lo) + (i - s.s4[j]))}
	}
	k := i - s.n4
	if k < s.n6 {
		j := search(s.s6, k)
		return Target{Index: i, Addr: s.v6[j].lo.plus(k - s.s6[j]).addr6()}
	}
	k -= s.n6
	if k < uint64(s.names.n) {
		name := s.names.at(int(k))
		if isEntry(name) {
			t := parseEntry(name)
			t.Index = i
			return t
		}
		return Target{Index: i, Host: name}
	}
	panic(fmt.Sprintf("target: index %d out of range [0,%d)", i, s.Len()))
}

// Counts reports how many IPv4 addresses, IPv6 addresses and names s holds,
// in that (canonical) order.
func (s *set) Counts() (v4, v6, names uint64) { return s.n4, s.n6, uint64(s.names.n) }

// search is the largest j with starts[j] <= i; starts[0] is 0.
func search(starts []uint64, i uint64) int {
	lo, hi := 0, len(starts)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if starts[m] <= i {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// starts are the cumulative first indexes of ivs and their total; ok is false
// when the total does not fit in limit.
func starts[A num[A]](ivs []span[A], limit uint64) (st []uint64, total uint64, ok bool) {
	st = make([]uint64, len(ivs))
	for j, iv := range ivs {
		st[j] = total
		n, sat := iv.size()
		if sat || n > limit-total {
			return nil, 0, false
		}
		total += n
	}
	return st, total, true
}

// singles collects the addresses of one family given one at a time (a host
// file): a run of consecutive ones (an ascending file) becomes one span,
// the others are kept at their own size, 4 bytes for IPv4 and 16 for
// IPv6, and become spans, sorted, at the end (flush).
type singles[A num[A]] struct {
	run   span[A]
	inRun bool
	one   []A
}

// add adds v; a run that ends goes to ivs.
func (s *singles[A]) add(v A, ivs *[]span[A]) {
	if s.inRun && v.cmp(s.run.lo) >= 0 && (s.run.hi.isMax() || v.cmp(s.run.hi.inc()) <= 0) {
		if v.cmp(s.run.hi) > 0 {
			s.run.hi = v
		}
		return
	}
	s.end(ivs)
	s.run, s.inRun = span[A]{v, v}, true
}

// end closes the current run.
func (s *singles[A]) end(ivs *[]span[A]) {
	switch {
	case !s.inRun:
	case s.run.lo != s.run.hi:
		*ivs = append(*ivs, s.run)
	default:
		if len(s.one) == cap(s.one) {
			// Double: append's 1.25x steps for large slices would allocate
			// five times the final size along the way.
			s.one = slices.Grow(s.one, max(len(s.one), 256))
		}
		s.one = append(s.one, s.run.lo)
	}
	s.inRun = false
}

// flush appends the addresses collected to ivs as spans.
func (s *singles[A]) flush(ivs *[]span[A]) {
	s.end(ivs)
	slices.SortFunc(s.one, A.cmp)
	runs := 0 // room for exactly the spans to come: no regrowth, no slack
	for i, v := range s.one {
		if i == 0 || v.cmp(s.one[i-1].inc()) > 0 && !s.one[i-1].isMax() {
			runs++
		}
	}
	*ivs = slices.Grow(*ivs, runs)
	var run span[A]
	in := false
	for _, v := range s.one {
		if in && (v.cmp(run.hi) <= 0 || v == run.hi.inc()) {
			if v.cmp(run.hi) > 0 {
				run.hi = v
			}
			continue
		}
		if in {
			*ivs = append(*ivs, run)
		}
		run, in = span[A]{v, v}, true
	}
	if in {
		*ivs = append(*ivs, run)
	}
	s.one = nil
}
