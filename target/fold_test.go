package target

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

func TestFold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"web01", "web02", "web03", "db1"}, "db1,web[01-03]"},
		{[]string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}, "127.0.0.[1-5]"},
		{[]string{"web03", "web01", "web02", "web01"}, "web[01-03]"},
		{[]string{"n1", "n2", "n3", "n5", "n7", "n8"}, "n[1-3,5,7-8]"},
		{[]string{"n08", "n09", "n10", "n11"}, "n[08-11]"},
		{[]string{"n8", "n9", "n10"}, "n[8-10]"},
		{[]string{"n1", "n01", "n2", "n02"}, "n[01-02,1-2]"},
		{[]string{"db1.dc1", "db1.dc2", "db2.dc1", "db2.dc2", "db3.dc1", "db3.dc2"}, "db[1-3].dc[1-2]"},
		{[]string{"db1.dc1", "db1.dc2", "db2.dc1"}, "db1.dc[1-2],db2.dc1"},
		{[]string{"10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"}, "10.0.[0-1].[1-2]"},
		{[]string{"rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2", "login"}, "login,rack[1-2]-node[1-2]"},
		{[]string{"h12345678901234567890", "h12345678901234567891"}, "h12345678901234567890,h12345678901234567891"},
		{[]string{"fd00::1", "fd00::2", "::1"}, "::1,fd00::[1-2]"},
		{[]string{"1::1", "1::2", "2::1", "2::2"}, "[1-2]::[1-2]"}, // a node-set, not the literal [1-2]
	}
	for _, tt := range tests {
		if got := Fold(tt.in); got != tt.want {
			t.Errorf("Fold(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// sortedNames are the Set's names, sorted.
func sortedNames(t testing.TB, s Set) []string {
	n := names(t, s)
	sort.Strings(n)
	return n
}

func checkFoldRoundTrip(t testing.TB, in []string) {
	t.Helper()
	orig, err := Parse(in, ParseOptions{})
	if err != nil {
		t.Fatalf("Parse(%q): %v", in, err)
	}
	want := sortedNames(t, orig)
	folded := Fold(want)
	s, err := Parse([]string{folded}, ParseOptions{})
	if err != nil {
		t.Fatalf("Parse(Fold(%q) = %q): %v", want, folded, err)
	}
	if got := sortedNames(t, s); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Parse(Fold(x)) != x\n   x: %q\nfold: %q\n got: %q", want, folded, got)
	}
}

func TestFoldRoundTrip(t *testing.T) {
	t.Parallel()
	checkFoldRoundTrip(t, []string{"1::1", "1::2", "2::1", "2::2"})
	checkFoldRoundTrip(t, []string{"web[01-20].example.com", "db[1-3,7].dc[1-2]", "10.0.0.0/28", "fd00::[8-17]", "login"})
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"web", "db", "n", "rack", "x-", "a.b", "10.0.", "fd00::", "h_"}
	for round := 0; round < 300; round++ {
		var in []string
		for k := rng.IntN(40); k >= 0; k-- {
			w := words[rng.IntN(len(words))]
			num := rng.IntN(30)
			var name string
			switch {
			case w == "10.0.":
				name = w + itoa(rng.IntN(3)) + "." + itoa(num)
			case rng.IntN(3) == 0 && w != "fd00::":
				name = w + pad2(num) + ".dc" + itoa(rng.IntN(3))
			default:
				name = w + itoa(num)
			}
			in = append(in, name)
		}
		checkFoldRoundTrip(t, in)
	}
}

func itoa(n int) string { return string(appendPadded(nil, uint64(n), 0)) }
func pad2(n int) string { return string(appendPadded(nil, uint64(n), 2)) }
