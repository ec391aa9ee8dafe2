package target

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// takesAll lets targets carry a port and a user, as ssh does.
var takesAll = Takes{Port: true, User: true}

// plain reports whether t is a bare address, as kept in the address
// intervals: no name, zone, port or user.
func plain(t Target) bool {
	return t.Host == "" && t.Port == 0 && t.User == "" && t.Addr.Zone() == ""
}

// checkSet verifies the Set invariants: Len agrees with At, every
// At(i).Index == i, bare addresses ascend within a family before names and
// entries, targets are distinct, and every target's Spec parses back to
// itself.
func checkSet(t *testing.T, s Set) {
	t.Helper()
	n := s.Len()
	if n == 0 {
		t.Fatal("Parse returned an empty Set without an error")
	}
	idx := func(yield func(uint64) bool) {
		for i := uint64(0); i < n; i++ {
			if n > 2048 && i == 1024 {
				i = n - 1024
			}
			if !yield(i) {
				return
			}
		}
	}
	var prev Target
	seen := map[string]bool{}
	for i := range idx {
		tg := s.At(i)
		if tg.Index != i {
			t.Fatalf("At(%d).Index = %d", i, tg.Index)
		}
		if tg.Host == "" && !tg.Addr.IsValid() {
			t.Fatalf("At(%d) = %+v: want a host or an address", i, tg)
		}
		if i > 0 && prev.Index == i-1 {
			switch {
			case !plain(prev) && plain(tg):
				t.Fatalf("At(%d) = %s: an address after the names", i, tg.Spec())
			case plain(prev) && plain(tg) && prev.Addr.Is4() == tg.Addr.Is4() && prev.Addr.Compare(tg.Addr) >= 0:
				t.Fatalf("At(%d) = %s after %s: not ascending", i, tg.Name(), prev.Name())
			case plain(prev) && plain(tg) && prev.Addr.Is6() && tg.Addr.Is4():
				t.Fatalf("At(%d) = %s after %s: IPv4 after IPv6", i, tg.Name(), prev.Name())
			}
		}
		prev = tg
		if k := strings.ToLower(strings.TrimSuffix(tg.Spec(), ".")); seen[k] {
			t.Fatalf("At(%d) = %s: duplicate", i, tg.Spec())
		} else {
			seen[k] = true
		}
		r, err := Parse([]string{tg.Spec()}, ParseOptions{Takes: takesAll})
		if err != nil {
			t.Fatalf("At(%d).Spec() = %q does not parse: %v", i, tg.Spec(), err)
		}
		if r.Len() != 1 || r.At(0) != (Target{Host: tg.Host, Addr: tg.Addr, Port: tg.Port, User: tg.User}) {
			t.Fatalf("Parse(%q) = %d targets, first %+v", tg.Spec(), r.Len(), r.At(0))
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatalf("At(Len=%d) did not panic", n)
		}
	}()
	s.At(n)
}

func FuzzParse(f *testing.F) {
	for _, seed := range []struct{ spec, exclude string }{
		{"10.0.0.0/24", ""},
		{"10.0.0.1-10.0.0.50", "10.0.0.7"},
		{"10.0.0.1-50", ""},
		{"web[01-20].example.com", "web[05-06].example.com"},
		{"db[1-3,7].dc[1-2]", ""},
		{"fd00::/120", "fd00::10-20"},
		{"[::1]", ""},
		{"[fd00::]/126", ""},
		{"host.example.com", ""},
		{"10.0.0.300/24", ""},
		{"10.0.0.9-3", ""},
		{"a,b,10.0.[0-1].[1-2]", "b"},
		{"127.0.0.[1-5]", ""},
		{"fd00::ffff:ffff:ffff:ffff-fd00:0:0:1::1", ""},
		{"10.0.0.0/28,10.0.0.8-20,h[1-3]", "10.0.0.[3-9],h2"},
		{"fd00::[1-2]:[8-9],::1", "::/0"},
		{"n[08-11].x,N09.x.", "n[09-10].X"},
		{"255.255.255.250-255", "0.0.0.0/0"},
		{"::ffff:10.0.0.1,[fd00::]/126", "fd00::1-2"},
		{"fe80::1%eth0,[fe80::2%lo],fd00::[1-2]%eth1", "fe80::2"},
		{"[::1]:2222,host:22,root@host,root@[fe80::1%eth0]:22", "host"},
		{"admin@web[01-03].example.com:2222,10.0.0.1:22", "admin@web02.example.com:2222"},
		{"fe80::%eth0/64", ""},
		{"root@10.0.0.0/24", ""},
		{"node[1-10/2]!node5,n[01-03]&n[02-09]^n07", "node3"},
		{"127.0.1-3.5,127.0.0.*", "127.0.0.1-254"},
		{"10.0-3.0.1-254", "10.1.0.*"},
		{"web1=10.0.0.5,deploy@web2=[fd00::1]:2222", "10.0.0.5"},
		{"web1 ansible_host=10.0.0.5 ansible_port=2222 ansible_user=deploy", ""},
	} {
		f.Add(seed.spec, seed.exclude)
	}
	f.Fuzz(func(t *testing.T, spec, exclude string) {
		if strings.HasPrefix(spec, "@") || strings.HasPrefix(exclude, "@") || strings.Contains(spec+exclude, ",@") {
			t.Skip("@FILE would read the fuzzer's choice of file")
		}
		for _, takes := range []Takes{{}, takesAll} {
			fuzzParse(t, spec, exclude, takes)
		}
	})
}

func fuzzParse(t *testing.T, spec, exclude string, takes Takes) {
	opts := ParseOptions{MaxTargets: 1 << 16, Takes: takes}
	if exclude != "" {
		opts.Excludes = []string{exclude}
	}
	s, err := Parse([]string{spec}, opts)
	if err != nil {
		if err.Error() == "" {
			t.Fatal("empty error")
		}
		return
	}
	checkSet(t, s)
	// The same spec as a one-line file gives the same Set.
	if !strings.ContainsAny(spec, "#\r\n") && strings.TrimSpace(spec) == spec {
		opts.Stdin = strings.NewReader("# file\n\n" + spec + "\n")
		if exclude == "-" {
			opts.Excludes = nil
		}
		f, err := Parse([]string{"-"}, opts)
		if err != nil || f.Len() != s.Len() || f.At(0) != s.At(0) || f.At(s.Len()-1) != s.At(s.Len()-1) {
			t.Fatalf("as a file: %v", err)
		}
	}
	// Names fold back into specs that parse to the same names (names
	// only: a port or user is not in a Name).
	if s.Len() <= 512 && !carries(s) {
		want := sortedNames(t, s)
		folded := Fold(want)
		r, err := Parse([]string{folded}, ParseOptions{MaxTargets: 1 << 16})
		if err != nil {
			t.Fatalf("Parse(Fold(%q) = %q): %v", want, folded, err)
		}
		if got := sortedNames(t, r); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("Parse(Fold(x)) != x\n   x: %q\nfold: %q\n got: %q", want, folded, got)
		}
	}
}

// carries reports whether a target of s has a port or user.
func carries(s Set) bool {
	for i := uint64(0); i < s.Len(); i++ {
		if tg := s.At(i); tg.Port != 0 || tg.User != "" {
			return true
		}
	}
	return false
}

func FuzzShuffle(f *testing.F) {
	for _, n := range []uint16{0, 1, 2, 3, 255, 256, 257, 4096, 65535} {
		f.Add(n, uint64(n)*7919)
	}
	f.Fuzz(func(t *testing.T, n uint16, seed uint64) {
		checkPermutation(t, Shuffle(uint64(n), seed), uint64(n))
	})
}

// FuzzFold folds random sets of names (the fuzzer's, and a seeded
// generator's of names that differ in one or more numbers) and parses the
// fold back to the same names; every range it writes keeps one width, as
// ClusterShell requires.
func FuzzFold(f *testing.F) {
	f.Add("node01.dc1 node02.dc1 node03.dc2", uint64(1), uint8(20))
	f.Add("n8 n9 n10 n098 n099 n100", uint64(2), uint8(0))
	f.Add("a1b2c3 a1b2c4 a2b2c3 x", uint64(3), uint8(100))
	f.Add("127.0.0.1 127.0.1.1 web", uint64(4), uint8(255))
	f.Fuzz(func(t *testing.T, given string, seed uint64, n uint8) {
		var in []string
		for _, name := range strings.Fields(given) {
			if checkHostname(name) == nil && !onlyDigitsDotsDash(name) {
				in = append(in, name)
			}
		}
		rng := rand.New(rand.NewPCG(seed, uint64(n)))
		patterns := []string{"node%02d.dc%d", "r%dn%d", "n%d", "web%03d", "c%d-%d.ib%d", "x%02dy", "%d.h%d"}
		for range int(n) {
			p := patterns[rng.IntN(len(patterns))]
			args := make([]any, strings.Count(p, "%"))
			for k := range args {
				args[k] = rng.IntN([]int{3, 12, 130, 1100}[rng.IntN(4)])
			}
			in = append(in, fmt.Sprintf(p, args...))
		}
		if len(in) == 0 {
			return
		}
		s, err := Parse(in, ParseOptions{MaxTargets: 1 << 16})
		if err != nil {
			t.Skip(err) // not names this fuzzer folds
		}
		want := sortedNames(t, s)
		folded := Fold(want)
		checkWidths(t, folded)
		r, err := Parse([]string{folded}, ParseOptions{MaxTargets: 1 << 16})
		if err != nil {
			t.Fatalf("Parse(Fold(%q) = %q): %v", want, folded, err)
		}
		if got := sortedNames(t, r); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("Parse(Fold(x)) != x\n   x: %q\nfold: %q\n got: %q", want, folded, got)
		}
	})
}

// checkWidths fails when a range a-b inside brackets of folded mixes
// widths as ClusterShell refuses: a padded start and an end of another
// length.
func checkWidths(t *testing.T, folded string) {
	t.Helper()
	for rest := folded; ; {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			return
		}
		j := strings.IndexByte(rest[i:], ']')
		for _, item := range strings.Split(rest[i+1:i+j], ",") {
			lo, hi, ok := strings.Cut(item, "-")
			if ok && len(lo) > 1 && lo[0] == '0' && len(hi) != len(lo) {
				t.Fatalf("Fold wrote %q: range %s mixes widths (ClusterShell refuses it)", folded, item)
			}
		}
		rest = rest[i+j:]
	}
}
