package target

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// feistelRounds is even so that the halves end where they started.
const feistelRounds = 4

// Shuffle is a pseudo-random permutation of [0, n), reproducible from seed,
// in O(1) memory: a keyed Feistel network over the smallest power of two
// >= n, with cycle-walking to stay inside [0, n). Neighbouring positions map
// to unrelated indexes, so a shuffled /16 does not visit one /24 at a time.
func Shuffle(n, seed uint64) Order {
	s := &shuffle{n: n}
	if n <= 1 {
		return s
	}
	b := uint(bits.Len64(n - 1)) // bits of the domain [0, 2^b)
	s.lbits = (b + 1) / 2
	s.rbits = b / 2
	x := seed
	for r := range s.keys {
		s.keys[r] = splitmix(&x)
	}
	return s
}

type shuffle struct {
	n            uint64
	lbits, rbits uint // widths of the left and right halves; they swap each round
	keys         [feistelRounds]uint64
}

func (s *shuffle) Len() uint64 { return s.n }

// At is a few Feistel evaluations: fewer than 2 on average, since the domain
// is less than twice n.
func (s *shuffle) At(k uint64) uint64 {
	if k >= s.n {
		panic(fmt.Sprintf("target: shuffle position %d out of range [0,%d)", k, s.n))
	}
	if s.n == 1 {
		return 0
	}
	x := k
	for {
		x = s.permute(x)
		if x < s.n {
			return x
		}
	}
}

// permute is a bijection of [0, 2^(lbits+rbits)).
func (s *shuffle) permute(x uint64) uint64 {
	lb, rb := s.lbits, s.rbits
	l, r := x>>rb, x&(1<<rb-1)
	for _, key := range s.keys {
		// (l, r) -> (r, l ^ F(r)): invertible whatever F is; widths swap.
		l, r = r, (l^mix(r^key))&(1<<lb-1)
		lb, rb = rb, lb
	}
	return l<<rb | r
}

// mix is the splitmix64 finalizer: every input bit flips about half the
// output bits.
func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func splitmix(x *uint64) uint64 {
	*x += 0x9e3779b97f4a7c15
	return mix(*x)
}

// Shard is the i-th (0-based) of n disjoint contiguous slices of o; the
// slices cover o exactly. n == 0 is o itself; i >= n is empty.
func Shard(o Order, i, n uint64) Order {
	if n == 0 {
		return o
	}
	if i >= n {
		return Slice(o, o.Len(), o.Len())
	}
	return Slice(o, mulDiv(o.Len(), i, n), mulDiv(o.Len(), i+1, n))
}

// mulDiv is a*b/c without overflow, for b <= c.
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// ParseShard reads the CLI's 1-based "i/n" (1/3 .. 3/3) and returns i and n
// as written, 1-based as fanout.Spec stores them; Shard wants i-1.
func ParseShard(s string) (i, n uint64, err error) {
	is, ns, ok := strings.Cut(s, "/")
	if ok {
		i, err = strconv.ParseUint(is, 10, 64)
		if err == nil {
			n, err = strconv.ParseUint(ns, 10, 64)
		}
	}
	if !ok || err != nil || i < 1 || i > n {
		return 0, 0, fmt.Errorf("shard %q: want i/n with 1 <= i <= n, as in 1/3", s)
	}
	return i, n, nil
}
