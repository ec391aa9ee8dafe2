package target

import (
	"encoding/binary"
	"fmt"
	"math"
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

// interval is an inclusive range of addresses of one family.
type interval struct{ lo, hi u128 }

// size is the number of addresses in iv, saturated at MaxUint64 (an IPv6
// range can hold up to 2^128 addresses).
func (iv interval) size() (n uint64, saturated bool) {
	d := iv.hi.sub(iv.lo)
	if d.hi != 0 || d.lo == math.MaxUint64 {
		return math.MaxUint64, true
	}
	return d.lo + 1, false
}

// appendInterval adds iv to ivs, extending the last interval when iv
// continues it: node-sets such as 10.0.[0-255].[0-255] then stay one interval.
func appendInterval(ivs []interval, iv interval) []interval {
	if n := len(ivs); n > 0 {
		last := &ivs[n-1]
		if iv.lo.cmp(last.lo) >= 0 && (last.hi == maxU128 || iv.lo.cmp(last.hi.add(1)) <= 0) {
			if iv.hi.cmp(last.hi) > 0 {
				last.hi = iv.hi
			}
			return ivs
		}
	}
	return append(ivs, iv)
}

// merge sorts ivs and joins overlapping and adjacent intervals, so that an
// address given twice counts once.
func merge(ivs []interval) []interval {
	if len(ivs) < 2 {
		return ivs
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].lo.cmp(ivs[j].lo) < 0 })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if last.hi == maxU128 || iv.lo.cmp(last.hi.add(1)) <= 0 {
			if iv.hi.cmp(last.hi) > 0 {
				last.hi = iv.hi
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// subtract removes ex from ivs; both are sorted and merged.
func subtract(ivs, ex []interval) []interval {
	if len(ex) == 0 {
		return ivs
	}
	var out []interval
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
				out = append(out, interval{cur.lo, e.lo.sub(u128{0, 1})})
			}
			if e.hi.cmp(cur.hi) >= 0 {
				alive = false
				break
			}
			cur.lo = e.hi.add(1)
		}
		if alive {
			out = append(out, cur)
		}
	}
	return out
}

// set is the Set Parse returns. Canonical order: IPv4 addresses ascending,
// then IPv6 addresses ascending, then names (and entries: zoned addresses,
// targets with a port or user) in first-seen order.
type set struct {
	v4, v6 []interval
	s4, s6 []uint64 // index of each interval's first address within its family
	n4, n6 uint64
	names  nameList
}

var _ Set = (*set)(nil)

func (s *set) Len() uint64 { return s.n4 + s.n6 + uint64(s.names.n) }

// At is O(log #intervals) and does not allocate.
func (s *set) At(i uint64) Target {
	if i < s.n4 {
		j := search(s.s4, i)
		return Target{Index: i, Addr: addr4(s.v4[j].lo.lo + (i - s.s4[j]))}
	}
	k := i - s.n4
	if k < s.n6 {
		j := search(s.s6, k)
		return Target{Index: i, Addr: s.v6[j].lo.add(k - s.s6[j]).addr6()}
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
func starts(ivs []interval, limit uint64) (st []uint64, total uint64, ok bool) {
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
// file): a run of consecutive ones (an ascending file) becomes one
// interval, the others are kept at their own size, 4 bytes for IPv4 and 16
// for IPv6 rather than an interval's 32, and become intervals, sorted, at
// the end (flush).
type singles struct {
	run   interval
	inRun bool
	one4  []uint32
	one6  []u128
}

// add adds v, an IPv4 address when v4.
func (s *singles) add(v u128, v4 bool, ivs *[]interval) {
	if s.inRun && v.cmp(s.run.lo) >= 0 && (s.run.hi == maxU128 || v.cmp(s.run.hi.add(1)) <= 0) {
		if v.cmp(s.run.hi) > 0 {
			s.run.hi = v
		}
		return
	}
	s.end(v4, ivs)
	s.run, s.inRun = interval{v, v}, true
}

// end closes the current run.
func (s *singles) end(v4 bool, ivs *[]interval) {
	switch {
	case !s.inRun:
	case s.run.lo != s.run.hi:
		*ivs = append(*ivs, s.run)
	case v4:
		s.one4 = append(s.one4, uint32(s.run.lo.lo))
	default:
		s.one6 = append(s.one6, s.run.lo)
	}
	s.inRun = false
}

// flush appends the addresses collected to ivs as intervals.
func (s *singles) flush(v4 bool, ivs *[]interval) {
	s.end(v4, ivs)
	var run interval
	in := false
	push := func(v u128) { // v ascending
		if in && (v.cmp(run.hi) <= 0 || v == run.hi.add(1)) {
			if v.cmp(run.hi) > 0 {
				run.hi = v
			}
			return
		}
		if in {
			*ivs = append(*ivs, run)
		}
		run, in = interval{v, v}, true
	}
	if v4 {
		slices.Sort(s.one4)
		for _, a := range s.one4 {
			push(u128{0, uint64(a)})
		}
	} else {
		slices.SortFunc(s.one6, u128.cmp)
		for _, a := range s.one6 {
			push(a)
		}
	}
	if in {
		*ivs = append(*ivs, run)
	}
	s.one4, s.one6 = nil, nil
}
