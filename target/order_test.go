package target

import (
	"fmt"
	"testing"
)

// checkPermutation verifies exhaustively that o visits each of [0, n) once.
func checkPermutation(t testing.TB, o Order, n uint64) {
	t.Helper()
	if o.Len() != n {
		t.Fatalf("Len = %d, want %d", o.Len(), n)
	}
	seen := make([]uint64, (n+63)/64)
	for k := uint64(0); k < n; k++ {
		v := o.At(k)
		if v >= n {
			t.Fatalf("n=%d: At(%d) = %d, out of range", n, k, v)
		}
		if seen[v/64]&(1<<(v%64)) != 0 {
			t.Fatalf("n=%d: At(%d) = %d, visited twice", n, k, v)
		}
		seen[v/64] |= 1 << (v % 64)
	}
}

func TestShuffleBijectiveSmall(t *testing.T) {
	t.Parallel()
	for n := uint64(0); n <= 1100; n++ {
		for _, seed := range []uint64{0, 1, 0xdeadbeef} {
			checkPermutation(t, Shuffle(n, seed), n)
		}
	}
}

func TestShuffleBijectiveSpecial(t *testing.T) {
	t.Parallel()
	ns := []uint64{2, 3, 7, 251, 257, 65521, 65536, 65537, 1<<20 - 1, 1 << 20, 1<<20 + 1, 1000003}
	if !testing.Short() && !raceEnabled {
		ns = append(ns, 1<<24)
	}
	for _, n := range ns {
		checkPermutation(t, Shuffle(n, 42), n)
	}
}

// TestShuffleBijectiveHuge samples sizes too large to check exhaustively:
// no two of many positions may share an index.
func TestShuffleBijectiveHuge(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{1 << 32, 1<<32 + 15, 1<<40 + 7, 1 << 63, 1<<63 + 1, 1<<64 - 1} {
		o := Shuffle(n, 7)
		seen := make(map[uint64]uint64, 200000)
		check := func(k uint64) {
			v := o.At(k)
			if v >= n {
				t.Fatalf("n=%d: At(%d) = %d, out of range", n, k, v)
			}
			if j, dup := seen[v]; dup && j != k {
				t.Fatalf("n=%d: At(%d) = At(%d) = %d", n, j, k, v)
			}
			seen[v] = k
		}
		samples := uint64(100000)
		if raceEnabled {
			samples = 10000
		}
		for k := uint64(0); k < samples; k++ {
			check(k)
			check(n - 1 - k)
		}
	}
}

func TestShuffleReproducible(t *testing.T) {
	t.Parallel()
	const n = 100000
	a, b, c := Shuffle(n, 1), Shuffle(n, 1), Shuffle(n, 2)
	same, fixed := 0, 0
	for k := uint64(0); k < n; k++ {
		if a.At(k) != b.At(k) {
			t.Fatalf("same seed, At(%d) differs: %d vs %d", k, a.At(k), b.At(k))
		}
		if a.At(k) == c.At(k) {
			same++
		}
		if a.At(k) == k {
			fixed++
		}
	}
	// A random permutation agrees with another, or fixes a point, about once.
	if same > 20 {
		t.Errorf("seeds 1 and 2 agree on %d of %d positions", same, n)
	}
	if fixed > 20 {
		t.Errorf("%d of %d positions are fixed points: not shuffled", fixed, n)
	}
}

// TestShuffleSpreadsSubnets: the first 256 visits of a shuffled /16 must not
// stay in a few /24s (identity order would touch 1).
func TestShuffleSpreadsSubnets(t *testing.T) {
	t.Parallel()
	s, err := Parse([]string{"10.1.0.0/16"}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{0, 1, 99, 1 << 40} {
		o := Shuffle(s.Len(), seed)
		subnets := map[byte]bool{}
		prev := -1
		adjacent := 0
		for k := uint64(0); k < 256; k++ {
			a := s.At(o.At(k)).Addr.As4()
			subnets[a[2]] = true
			if int(a[2]) == prev {
				adjacent++
			}
			prev = int(a[2])
		}
		// 256 random draws from 256 subnets hit about 162 distinct ones.
		if len(subnets) < 120 {
			t.Errorf("seed %d: first 256 visits touch %d /24s, want >= 120", seed, len(subnets))
		}
		if adjacent > 10 {
			t.Errorf("seed %d: %d consecutive visits in the same /24, want few", seed, adjacent)
		}
	}
}

func TestShuffleOutOfRangePanics(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{0, 1, 10} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("n=%d: At(%d) did not panic", n, n)
				}
			}()
			Shuffle(n, 0).At(n)
		}()
	}
}

func TestShard(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{0, 1, 2, 7, 100, 1009} {
		for _, shards := range []uint64{1, 2, 3, 7, 16, 200} {
			for _, shuffled := range []bool{false, true} {
				t.Run(fmt.Sprintf("n=%d/shards=%d/shuffle=%v", n, shards, shuffled), func(t *testing.T) {
					var o Order = Identity(n)
					if shuffled {
						o = Shuffle(n, 5)
					}
					seen := make(map[uint64]uint64, n)
					var pos, total uint64
					for i := uint64(0); i < shards; i++ {
						sh := Shard(o, i, shards)
						// Sizes differ by at most one.
						if min, max := n/shards, (n+shards-1)/shards; sh.Len() < min || sh.Len() > max {
							t.Errorf("shard %d has %d, want %d..%d", i, sh.Len(), min, max)
						}
						for k := uint64(0); k < sh.Len(); k++ {
							v := sh.At(k)
							if w := o.At(pos); v != w {
								t.Fatalf("shard %d At(%d) = %d, want the order's At(%d) = %d", i, k, v, pos, w)
							}
							if j, dup := seen[v]; dup {
								t.Fatalf("index %d in shards %d and %d", v, j, i)
							}
							seen[v] = i
							pos++
						}
						total += sh.Len()
					}
					if total != n || uint64(len(seen)) != n {
						t.Errorf("shards cover %d (%d distinct), want %d", total, len(seen), n)
					}
				})
			}
		}
	}
}

func TestShardHuge(t *testing.T) {
	t.Parallel()
	// Len*i overflows uint64 here; the shards must still tile the order.
	n := uint64(1<<64 - 1)
	o := Identity(n)
	var next uint64
	for i := uint64(0); i < 1000; i++ {
		sh := Shard(o, i, 1000)
		if sh.Len() > 0 && sh.At(0) != next {
			t.Fatalf("shard %d starts at %d, want %d", i, sh.At(0), next)
		}
		next += sh.Len()
	}
	if next != n {
		t.Errorf("shards cover %d, want %d", next, n)
	}
	if got := Shard(o, 3, 3).Len(); got != 0 {
		t.Errorf("Shard(i >= n) has %d, want 0", got)
	}
	if got := Shard(o, 0, 0).Len(); got != n {
		t.Errorf("Shard(n == 0) has %d, want the whole order", got)
	}
}

func TestParseShard(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		i, n uint64
	}{{"1/3", 1, 3}, {"3/3", 3, 3}, {"1/1", 1, 1}, {"17/1000", 17, 1000}}
	for _, tt := range good {
		i, n, err := ParseShard(tt.in)
		if err != nil || i != tt.i || n != tt.n {
			t.Errorf("ParseShard(%q) = %d, %d, %v; want %d, %d", tt.in, i, n, err, tt.i, tt.n)
		}
	}
	for _, in := range []string{"0/3", "4/3", "x", "", "1/", "/3", "1/0", "0/0", "-1/3", "1/3/5", "a/b", " 1/3", "1.5/3"} {
		if _, _, err := ParseShard(in); err == nil {
			t.Errorf("ParseShard(%q) accepted", in)
		} else if want := fmt.Sprintf("shard %q: want i/n with 1 <= i <= n, as in 1/3", in); err.Error() != want {
			t.Errorf("ParseShard(%q) error %q, want %q", in, err, want)
		}
	}
}
