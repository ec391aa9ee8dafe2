package target

import (
	"strings"
	"testing"
)

// The node-set and range syntax that ClusterShell and nmap users write, row
// by row: the same text means the same hosts here as there.
func TestPeerSyntax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		want string // names in canonical order, space-separated
	}{
		// ClusterShell steps: a-b/step.
		{"step", "node[1-10/2]", "node1 node3 node5 node7 node9"},
		{"step padded", "n[01-10/3]", "n01 n04 n07 n10"},
		{"step past the end", "n[1-6/4]", "n1 n5"},
		{"step 1", "n[1-3/1]", "n1 n2 n3"},
		{"step and list", "n[1-5/2,8]", "n1 n3 n5 n8"},
		// ClusterShell set operations, left to right.
		{"difference", "a,b!b", "a"},
		{"union then difference", "n[1-5]!n3,n9", "n1 n2 n4 n5 n9"},
		{"difference of the union", "n[1-5],n[7-9]!n[4-8]", "n1 n2 n3 n9"},
		{"intersection", "n[1-5]&n[3-9]", "n3 n4 n5"},
		{"left to right, no precedence", "n[1-5],n[7-8]&n[2-7]", "n2 n3 n4 n5 n7"},
		{"symmetric difference", "n[1-5]^n[3-9]", "n1 n2 n6 n7 n8 n9"},
		{"names case-insensitive", "web[1-3]!WEB2", "web1 web3"},
		{"addresses", "127.0.0.0/29!127.0.0.2-5", "127.0.0.0 127.0.0.1 127.0.0.6 127.0.0.7"},
		{"address intersection", "127.0.0.0/29&127.0.0.6-10", "127.0.0.6 127.0.0.7"},
		{"address symmetric difference", "127.0.0.0/30^127.0.0.2/31,127.0.0.9", "127.0.0.0 127.0.0.1 127.0.0.9"},
		{"mixed", "127.0.0.[1-3],h[1-3]!127.0.0.2!h2", "127.0.0.1 127.0.0.3 h1 h3"},
		// nmap octet ranges.
		{"octet range inside", "127.0.1-3.5", "127.0.1.5 127.0.2.5 127.0.3.5"},
		{"octet star", "127.0.0.*", strings.Join(seq("127.0.0.", 0, 255, ""), " ")},
		{"octet ranges", "127.0-1.0.1-3", "127.0.0.1 127.0.0.2 127.0.0.3 127.1.0.1 127.1.0.2 127.1.0.3"},
		{"octet list", "127.0.0.1,3-4", "127.0.0.1 127.0.0.3 127.0.0.4"},
		{"octet list duplicates", "127.0.0.1-3,2-5", "127.0.0.1 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5"},
		{"octet open start", "127.0.0.-2", "127.0.0.0 127.0.0.1 127.0.0.2"},
		{"octet open end", "127.0.0.254-", "127.0.0.254 127.0.0.255"},
		{"octet dash alone", "127.0.0-1.-", strings.Join(append(seq("127.0.0.", 0, 255, ""), seq("127.0.1.", 0, 255, "")...), " ")},
		{"last octet range as before", "127.0.0.1-3", "127.0.0.1 127.0.0.2 127.0.0.3"},
		{"whole-address range as before", "127.0.0.254-127.0.1.1", "127.0.0.254 127.0.0.255 127.0.1.0 127.0.1.1"},
		{"octets in a set operation", "127.0.0.*!127.0.0.1-254", "127.0.0.0 127.0.0.255"},
		// 0x: a name unless it is a valid range (nmap resolves these as names).
		{"0x name", "0x7f.0.0.1", "0x7f.0.0.1"},
		{"0x name last octet", "127.0.0.0x1", "127.0.0.0x1"},
		{"0x in a hostname", "web0x1.example.com", "web0x1.example.com"},
		{"hex ipv6 range stays a range", "fd00::a-c", "fd00::a fd00::b fd00::c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse([]string{tt.spec}, ParseOptions{})
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if got := strings.Join(names(t, s), " "); got != tt.want {
				t.Errorf("Parse(%q) = %s\nwant %s", tt.spec, got, tt.want)
			}
		})
	}
}

func TestPeerSyntaxBad(t *testing.T) {
	t.Parallel()
	tests := []struct{ spec, want string }{
		{"n[1-10/0]", `parse "n[1-10/0]": [1-10/0]: step 0 (want a step of 1 or more, as in [1-10/2])`},
		{"n[5/2]", `parse "n[5/2]": [5/2]: a step goes with a range (want [1-10/2])`},
		{"n[1-10/x]", `parse "n[1-10/x]": [1-10/x]: "x" is not a number (want [1-3] or [1,4,7-9])`},
		{"a!!b", `parse "a!!b": empty operand at byte 2 (want a,b!c&d^e: union ',', difference '!', intersection '&', symmetric difference '^')`},
		{"a!", `parse "a!": empty operand at byte 2 ...`},
		{"!a", `parse "!a": empty operand at byte 0 ...`},
		{"a!@hosts", `parse "a!@hosts": @ goes alone, not in a set operation`},
		{"a&b c", `parse "b c": ' ' is not allowed in a hostname; ...`},
		{"127.0.0.5-1", `parse "127.0.0.5-1": octet range "5-1": range end before start`},
		{"127.0.0.1,", `parse "127.0.0.1,": octet "1,": empty item in a list (want 1,3-5)`},
		{"127.0.*.1*", `parse "127.0.*.1*": octet "1*": '*' stands alone for 0-255`},
		{"127.0.0.1-300", `parse "127.0.0.1-300": octet 300 out of range`},
		{"127.0.0.01-3", `parse "127.0.0.01-3": octet "01" has a leading zero (ambiguous: octal or decimal?)`},
		{"127.0..*", `parse "127.0..*": empty octet (want a.b.c.d where each octet is a number, a-b, * or a list 1,3-5)`},
		{"*.*.*.*", `too many targets: 4294967296 targets is more than the limit of 16777216; raise it with --max-targets N`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			s, err := Parse([]string{tt.spec}, ParseOptions{})
			if err == nil {
				t.Fatalf("Parse(%q) = %d targets, want error %q", tt.spec, s.Len(), tt.want)
			}
			if !matches(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error\n got: %s\nwant: %s", tt.spec, err, tt.want)
			}
		})
	}
}

// Rows of Fold that ClusterShell reads back: one width per range, every
// number of a name folded.
func TestFoldPeer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"widths split", seqPad("node", 1, 128, 2, ""), "node[01-99,100-128]"},
		{"padded 3 into 4 digits", seqPad("n", 1, 1001, 3, ""), "n[001-999,1000-1001]"},
		{"padded to its full length", seqPad("n", 998, 1001, 4, ""), "n[0998-1001]"},
		{"same length joins", []string{"n099", "n100"}, "n[099-100]"},
		{"unpadded grows", []string{"n8", "n9", "n10"}, "n[8-10]"},
		{"not the last number", seqPad("node", 1, 20, 2, ".dc1"), "node[01-20].dc1"},
		{"middle number", []string{"r1n1x", "r1n2x", "r1n3x"}, "r1n[1-3]x"},
		{"first of three", []string{"a1b7c9", "a2b7c9", "a3b7c9"}, "a[1-3]b7c9"},
		{"two axes", []string{"db1.dc1", "db1.dc2", "db2.dc1", "db2.dc2"}, "db[1-2].dc[1-2]"},
		{"rest apart", []string{"node01.dc1", "node02.dc1", "node01.dc2"}, "node01.dc[1-2],node02.dc1"},
		{"ips on the third octet", []string{"10.0.1.5", "10.0.2.5", "10.0.3.5"}, "10.0.[1-3].5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Fold(tt.in); got != tt.want {
				t.Errorf("Fold(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkFoldRoundTrip(t, tt.in)
		})
	}
}

// seqPad is prefix+n+suffix for n in [lo, hi], n zero-padded to width.
func seqPad(prefix string, lo, hi, width int, suffix string) []string {
	var out []string
	for i := lo; i <= hi; i++ {
		out = append(out, prefix+string(appendPadded(nil, uint64(i), width))+suffix)
	}
	return out
}

// SkipNetworkBroadcast leaves out the network and broadcast addresses of
// IPv4 CIDRs of /30 and wider, as fping -g does; the set stays intervals.
func TestSkipNetworkBroadcast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		specs    []string
		excludes []string
		want     string
	}{
		{"/30", []string{"127.0.0.0/30"}, nil, "127.0.0.1 127.0.0.2"},
		{"/29", []string{"127.0.0.8/29"}, nil, "127.0.0.9 127.0.0.10 127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14"},
		{"/31 keeps both", []string{"127.0.0.0/31"}, nil, "127.0.0.0 127.0.0.1"},
		{"/32 keeps it", []string{"127.0.0.0/32"}, nil, "127.0.0.0"},
		{"range keeps all", []string{"127.0.0.0-3"}, nil, "127.0.0.0 127.0.0.1 127.0.0.2 127.0.0.3"},
		{"octet range keeps all", []string{"127.0.0-1.0-1"}, nil, "127.0.0.0 127.0.0.1 127.0.1.0 127.0.1.1"},
		{"ipv6 keeps all", []string{"fd00::/127"}, nil, "fd00:: fd00::1"},
		{"address given keeps it", []string{"127.0.0.0/30", "127.0.0.3"}, nil, "127.0.0.1 127.0.0.2 127.0.0.3"},
		{"exclude CIDR removes all", []string{"127.0.0.0/29"}, []string{"127.0.0.4/30"}, "127.0.0.1 127.0.0.2 127.0.0.3"},
		{"difference operand selects", []string{"127.0.0.0/29!127.0.0.4/30"}, nil, "127.0.0.1 127.0.0.2 127.0.0.3"},
		{"union operand adds", []string{"127.0.0.0/30,127.0.0.4/30"}, nil, "127.0.0.1 127.0.0.2 127.0.0.5 127.0.0.6"},
		{"node-set of CIDRs", []string{"127.0.[0-1].0/30"}, nil, "127.0.0.1 127.0.0.2 127.0.1.1 127.0.1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse(tt.specs, ParseOptions{SkipNetworkBroadcast: true, Excludes: tt.excludes})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(t, s), " "); got != tt.want {
				t.Errorf("Parse(%q) = %s, want %s", tt.specs, got, tt.want)
			}
			s, err = Parse(tt.specs, ParseOptions{Excludes: tt.excludes})
			if err != nil {
				t.Fatal(err)
			}
			if all := names(t, s); tt.name == "/30" && len(all) != 4 {
				t.Errorf("without SkipNetworkBroadcast, %q = %q", tt.specs, all)
			}
		})
	}
	// A /8 stays one interval: Len and At are arithmetic, no list.
	s, err := Parse([]string{"10.0.0.0/8"}, ParseOptions{SkipNetworkBroadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1<<24-2 || s.At(0).Name() != "10.0.0.1" || s.At(s.Len()-1).Name() != "10.255.255.254" {
		t.Errorf("10.0.0.0/8: Len %d, first %s, last %s", s.Len(), s.At(0).Name(), s.At(s.Len()-1).Name())
	}
	if v4 := s.(*set).v4; len(v4) != 1 {
		t.Errorf("10.0.0.0/8: %d intervals, want 1", len(v4))
	}
}
