package target

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// names lists every target of s by Name, in canonical order.
func names(t testing.TB, s Set) []string {
	t.Helper()
	out := make([]string, 0, s.Len())
	for i := uint64(0); i < s.Len(); i++ {
		tg := s.At(i)
		if tg.Index != i {
			t.Fatalf("At(%d).Index = %d", i, tg.Index)
		}
		out = append(out, tg.Name())
	}
	return out
}

func seq(prefix string, lo, hi int, suffix string) []string {
	var out []string
	for i := lo; i <= hi; i++ {
		out = append(out, fmt.Sprintf("%s%d%s", prefix, i, suffix))
	}
	return out
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		specs []string
		opts  ParseOptions
		want  []string
	}{
		{"ipv4", []string{"10.0.0.1"}, ParseOptions{}, []string{"10.0.0.1"}},
		{"ipv4 cidr", []string{"192.168.2.0/30"}, ParseOptions{}, seq("192.168.2.", 0, 3, "")},
		{"ipv4 cidr host bits masked", []string{"192.168.2.7/30"}, ParseOptions{}, seq("192.168.2.", 4, 7, "")},
		{"ipv4 /32", []string{"127.0.0.1/32"}, ParseOptions{}, []string{"127.0.0.1"}},
		{"ipv4 cidr crosses octets", []string{"10.0.0.254/31", "10.0.1.0/31"}, ParseOptions{}, []string{"10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"}},
		{"ipv4 top of space", []string{"255.255.255.254/31"}, ParseOptions{}, []string{"255.255.255.254", "255.255.255.255"}},
		{"ipv4 range", []string{"10.0.0.1-10.0.0.5"}, ParseOptions{}, seq("10.0.0.", 1, 5, "")},
		{"ipv4 range short", []string{"10.0.0.1-5"}, ParseOptions{}, seq("10.0.0.", 1, 5, "")},
		{"ipv4 range across octets", []string{"10.0.0.254-10.0.1.1"}, ParseOptions{}, []string{"10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"}},
		{"ipv4 range single", []string{"10.0.0.3-3"}, ParseOptions{}, []string{"10.0.0.3"}},
		{"ipv6", []string{"::1"}, ParseOptions{}, []string{"::1"}},
		{"ipv6 brackets", []string{"[::1]"}, ParseOptions{}, []string{"::1"}},
		{"ipv6 brackets cidr", []string{"[fd00::]/127"}, ParseOptions{}, []string{"fd00::", "fd00::1"}},
		{"ipv6 cidr", []string{"fd00::/126"}, ParseOptions{}, []string{"fd00::", "fd00::1", "fd00::2", "fd00::3"}},
		{"ipv6 cidr host bits masked", []string{"fd00::5/126"}, ParseOptions{}, []string{"fd00::4", "fd00::5", "fd00::6", "fd00::7"}},
		{"ipv6 range", []string{"fd00::fe-fd00::101"}, ParseOptions{}, []string{"fd00::fe", "fd00::ff", "fd00::100", "fd00::101"}},
		{"ipv6 range short", []string{"fd00::1-3"}, ParseOptions{}, []string{"fd00::1", "fd00::2", "fd00::3"}},
		{"ipv6 range across 64 bits", []string{"fd00::ffff:ffff:ffff:ffff-fd00:0:0:1::1"}, ParseOptions{}, []string{"fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::", "fd00:0:0:1::1"}},
		{"ipv6 /65 allowed", []string{"fd00::/65"}, ParseOptions{MaxTargets: 1 << 63}, nil},
		{"ipv4-mapped ipv6 stays ipv6", []string{"::ffff:10.0.0.1", "10.0.0.1"}, ParseOptions{}, []string{"10.0.0.1", "::ffff:10.0.0.1"}},
		{"hostname", []string{"host.example.com"}, ParseOptions{}, []string{"host.example.com"}},
		{"hostname underscore dash trailing dot", []string{"my_host-1.example.com."}, ParseOptions{}, []string{"my_host-1.example.com."}},
		{"localhost", []string{"localhost"}, ParseOptions{}, []string{"localhost"}},
		{"hostname with digits and dash", []string{"1-2-3.example.com"}, ParseOptions{}, []string{"1-2-3.example.com"}},
		{"node-set padded", []string{"web[01-03].example.com"}, ParseOptions{}, []string{"web01.example.com", "web02.example.com", "web03.example.com"}},
		{"node-set padding past width", []string{"n[08-10]"}, ParseOptions{}, []string{"n08", "n09", "n10"}},
		{"node-set unpadded", []string{"n[8-10]"}, ParseOptions{}, []string{"n8", "n9", "n10"}},
		{"node-set list", []string{"db[1-3,7].dc[1-2]"}, ParseOptions{}, []string{
			"db1.dc1", "db1.dc2", "db2.dc1", "db2.dc2", "db3.dc1", "db3.dc2", "db7.dc1", "db7.dc2"}},
		{"node-set single", []string{"[7]x"}, ParseOptions{}, []string{"7x"}},
		{"node-set of addresses", []string{"127.0.[0-1].[1-2]"}, ParseOptions{}, []string{"127.0.0.1", "127.0.0.2", "127.0.1.1", "127.0.1.2"}},
		{"node-set of cidrs", []string{"10.0.[0-1].0/31"}, ParseOptions{}, []string{"10.0.0.0", "10.0.0.1", "10.0.1.0", "10.0.1.1"}},
		{"node-set of ipv6", []string{"fd00::[1-2]"}, ParseOptions{}, []string{"fd00::1", "fd00::2"}},
		{"comma list", []string{"b,a,web[1-2]"}, ParseOptions{}, []string{"b", "a", "web1", "web2"}},
		{"canonical order", []string{"h2", "::2", "10.0.0.2", "h1", "::1", "10.0.0.1"}, ParseOptions{}, []string{"10.0.0.1", "10.0.0.2", "::1", "::2", "h2", "h1"}},
		{"overlapping cidrs count once", []string{"10.0.0.0/30", "10.0.0.0/31", "10.0.0.2-10.0.0.5", "10.0.0.3"}, ParseOptions{}, seq("10.0.0.", 0, 5, "")},
		{"adjacent ranges", []string{"10.0.0.4-7", "10.0.0.0-3"}, ParseOptions{}, seq("10.0.0.", 0, 7, "")},
		{"duplicate names dropped", []string{"b", "a", "B", "a.", "b"}, ParseOptions{}, []string{"b", "a"}},
		{"duplicate names across node-sets", []string{"WEB2", "web[1-3]", "w[1-2]", "Web1."}, ParseOptions{}, []string{"WEB2", "web1", "web3", "w1", "w2"}},
		{"exclude address", []string{"10.0.0.0/29"}, ParseOptions{Excludes: []string{"10.0.0.3"}}, []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"}},
		{"exclude range and cidr", []string{"10.0.0.0/28"}, ParseOptions{Excludes: []string{"10.0.0.0/30", "10.0.0.6-10.0.0.13", "10.0.0.15"}}, []string{"10.0.0.4", "10.0.0.5", "10.0.0.14"}},
		{"exclude bigger than set", []string{"10.0.0.5", "h"}, ParseOptions{Excludes: []string{"0.0.0.0/0"}}, []string{"h"}},
		{"exclude ipv6 /48 needs no allow-huge", []string{"fd00::1", "fd01::1"}, ParseOptions{Excludes: []string{"fd00::/48"}}, []string{"fd01::1"}},
		{"exclude names and node-sets", []string{"web[1-5]", "db1"}, ParseOptions{Excludes: []string{"WEB[2-3]", "db1."}}, []string{"web1", "web4", "web5"}},
		{"exclude unknown is fine", []string{"a"}, ParseOptions{Excludes: []string{"b"}}, []string{"a"}},
		{"exactly max targets", []string{"10.0.0.0/30"}, ParseOptions{MaxTargets: 4}, seq("10.0.0.", 0, 3, "")},
		{"max targets after excludes", []string{"10.0.0.0/24"}, ParseOptions{MaxTargets: 1, Excludes: []string{"10.0.0.1-255"}}, []string{"10.0.0.0"}},
		{"max uint64 targets", []string{"fd00::-fd00::ffff:ffff:ffff:fffe"}, ParseOptions{MaxTargets: 1<<64 - 1}, nil},
		{"allow huge ipv6 /64 with max", []string{"fd00::/64"}, ParseOptions{AllowHuge: true, MaxTargets: 2, Excludes: []string{"fd00::2-fd00::ffff:ffff:ffff:ffff"}}, []string{"fd00::", "fd00::1"}},
		{"stdin", []string{"-"}, ParseOptions{Stdin: strings.NewReader("# hosts\n\n10.0.0.1\n  h1  # the first\nh2\n")}, []string{"10.0.0.1", "h1", "h2"}},
		{"stdin excludes", []string{"h[1-3]"}, ParseOptions{Excludes: []string{"-"}, Stdin: strings.NewReader("h2\n")}, []string{"h1", "h3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse(tt.specs, tt.opts)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.specs, err)
			}
			if tt.want == nil {
				return
			}
			if got := names(t, s); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Parse(%q) = %q, want %q", tt.specs, got, tt.want)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		specs []string
		opts  ParseOptions
		want  string // the whole error, or a prefix of it when it ends in "..."
	}{
		{[]string{"10.0.0.300/24"}, ParseOptions{}, `parse "10.0.0.300/24": octet 300 out of range`},
		{[]string{"10.0.0.9-3"}, ParseOptions{}, `parse "10.0.0.9-3": octet range "9-3": range end before start`},
		{[]string{"10.0.0.9-10.0.0.3"}, ParseOptions{}, `parse "10.0.0.9-10.0.0.3": range end before start`},
		{[]string{"10.0.0.1-300"}, ParseOptions{}, `parse "10.0.0.1-300": octet 300 out of range`},
		{[]string{"10.0.0.1-2-3"}, ParseOptions{}, `parse "10.0.0.1-2-3": octet "1-2-3": want one '-' (a-b, a-, -b)`},
		{[]string{"10.0.0"}, ParseOptions{}, `parse "10.0.0": "10.0.0" is not an IPv4 address (want 4 octets, a.b.c.d)`},
		{[]string{"10.0.0.1.2"}, ParseOptions{}, `parse "10.0.0.1.2": "10.0.0.1.2" is not an IPv4 address (want 4 octets, a.b.c.d)`},
		{[]string{"123"}, ParseOptions{}, `parse "123": "123" is not an IPv4 address (want 4 octets, a.b.c.d)`},
		{[]string{"10..0.1"}, ParseOptions{}, `parse "10..0.1": empty octet (want a.b.c.d)`},
		{[]string{"10.0.0.010"}, ParseOptions{}, `parse "10.0.0.010": octet "010" has a leading zero (ambiguous: octal or decimal?)`},
		{[]string{"10.0.0.1234"}, ParseOptions{}, `parse "10.0.0.1234": octet 1234 out of range`},
		{[]string{"10.0.0.0/33"}, ParseOptions{}, `parse "10.0.0.0/33": prefix length 33 out of range (want 0-32)`},
		{[]string{"10.0.0.0/"}, ParseOptions{}, `parse "10.0.0.0/": prefix length "" is not a number (want 0-32)`},
		{[]string{"10.0.0.0/x"}, ParseOptions{}, `parse "10.0.0.0/x": prefix length "x" is not a number (want 0-32)`},
		{[]string{"10.0.0.0/-1"}, ParseOptions{}, `parse "10.0.0.0/-1": prefix length "-1" is not a number (want 0-32)`},
		{[]string{"10.0.0.0/24/8"}, ParseOptions{}, `parse "10.0.0.0/24/8": prefix length "24/8" is not a number (want 0-32)`},
		{[]string{"host/24"}, ParseOptions{}, `parse "host/24": "host" is not an address (want a CIDR such as 10.0.0.0/24 or fd00::/120)`},
		{[]string{"fd00::/129"}, ParseOptions{}, `parse "fd00::/129": prefix length 129 out of range (want 0-128)`},
		{[]string{"fd00::g"}, ParseOptions{}, `parse "fd00::g": "fd00::g" is not an IPv6 address: ...`},
		{[]string{"host:22"}, ParseOptions{}, `parse "host:22": this job takes no port (targets are hosts, addresses, CIDRs, ranges, node-sets)`},
		{[]string{"10.0.0.1:22"}, ParseOptions{}, `parse "10.0.0.1:22": this job takes no port ...`},
		{[]string{"fd00::9-3"}, ParseOptions{}, `parse "fd00::9-3": range end before start`},
		{[]string{"fd00::9-fffff"}, ParseOptions{}, `parse "fd00::9-fffff": range end "fffff": want an IPv6 address or a last hextet (1 to 4 hex digits)`},
		{[]string{"fd00::9-xyz"}, ParseOptions{}, `parse "fd00::9-xyz": range end "xyz": want an IPv6 address or a last hextet (1 to 4 hex digits)`},
		{[]string{"fd00::/64"}, ParseOptions{}, `parse "fd00::/64": an IPv6 /64 has 2^64 or more addresses; pass --allow-huge to accept IPv6 prefixes of /64 and shorter`},
		{[]string{"::/0"}, ParseOptions{}, `parse "::/0": an IPv6 /0 has 2^64 or more addresses; pass --allow-huge ...`},
		{[]string{"fd00::-fd00:0:0:1::"}, ParseOptions{}, `parse "fd00::-fd00:0:0:1::": the range has 2^64 or more addresses; pass --allow-huge ...`},
		{[]string{"::/0"}, ParseOptions{AllowHuge: true}, `too many targets: 340282366920938463463374607431768211456 targets is more than the limit of 16777216; raise it with --max-targets N`},
		{[]string{"fd00::/64"}, ParseOptions{AllowHuge: true, MaxTargets: 1<<64 - 1}, `too many targets: 18446744073709551616 targets is more than the limit of 18446744073709551615; raise it with --max-targets N`},
		{[]string{"0.0.0.0/0", "fd00::-fd00::ffff:ffff:ffff:fffe"}, ParseOptions{MaxTargets: 1<<64 - 1}, `too many targets: 18446744078004518911 targets is more than the limit of 18446744073709551615; raise it with --max-targets N`},
		{[]string{"fd00::-fd00::ffff:ffff:ffff:fffe", "h"}, ParseOptions{MaxTargets: 1<<64 - 1}, `too many targets: 18446744073709551616 targets is more than the limit of 18446744073709551615; raise it with --max-targets N`},
		{[]string{"0.0.0.0/0"}, ParseOptions{}, `too many targets: 4294967296 targets is more than the limit of 16777216; raise it with --max-targets N`},
		{[]string{"10.0.0.0/7"}, ParseOptions{}, `too many targets: 33554432 targets is more than the limit of 16777216; raise it with --max-targets N`},
		{[]string{"10.0.0.0/8", "11.0.0.0"}, ParseOptions{}, `too many targets: 16777217 targets is more than the limit of 16777216; raise it with --max-targets N`},
		{[]string{"10.0.0.0/30", "h"}, ParseOptions{MaxTargets: 4}, `too many targets: 5 targets is more than the limit of 4; raise it with --max-targets N`},
		{[]string{"h[1-5]"}, ParseOptions{MaxTargets: 4}, `parse "h[1-5]": too many targets: node-set expands to 5 names, more than the limit of 4; raise it with --max-targets N`},
		{[]string{"h[1-2]", "g[1-3]"}, ParseOptions{MaxTargets: 4}, `parse "g[1-3]": g3: too many targets: more than 4 targets is more than the limit of 4; raise it with --max-targets N`},
		{[]string{"h[1-999999999999999999]x[1-999999999999999999]"}, ParseOptions{}, `parse "h[1-999999999999999999]x[1-999999999999999999]": too many targets: node-set expands to more than 18446744073709551615 names, ...`},
		{nil, ParseOptions{}, `no targets: give addresses, CIDRs, ranges, node-sets, hostnames, @FILE or -`},
		{[]string{"-"}, ParseOptions{Stdin: strings.NewReader("# nothing\n\n")}, `no targets: ...`},
		{[]string{"10.0.0.0/30"}, ParseOptions{Excludes: []string{"10.0.0.0/24"}}, `no targets: the excludes remove every target`},
		{[]string{""}, ParseOptions{}, `parse "": empty target; want an address ...`},
		{[]string{"a b"}, ParseOptions{}, `parse "a b": ' ' is not allowed in a hostname; want an address (10.0.0.1, ::1, [::1], fe80::1%eth0), ...`},
		{[]string{"a;rm"}, ParseOptions{}, `parse "a;rm": ';' is not allowed in a hostname; ...`},
		{[]string{"héllo"}, ParseOptions{}, `parse "héllo": 'é' is not allowed in a hostname; ...`},
		{[]string{"a..b"}, ParseOptions{}, `parse "a..b": empty label in hostname (want name.example.com)`},
		{[]string{".a"}, ParseOptions{}, `parse ".a": empty label in hostname (want name.example.com)`},
		{[]string{"-a"}, ParseOptions{}, `parse "-a": hostname label "-a" starts with '-'`},
		{[]string{strings.Repeat("a", 64) + ".com"}, ParseOptions{}, `parse "` + strings.Repeat("a", 64) + `.com": hostname label "` + strings.Repeat("a", 64) + `" longer than 63 characters`},
		{[]string{strings.Repeat("abcdefg.", 32) + "com"}, ParseOptions{}, `parse "` + strings.Repeat("abcdefg.", 32) + `com": hostname longer than 253 characters`},
		{[]string{"a,,b"}, ParseOptions{}, `parse "a,,b": empty item in a comma-separated list`},
		{[]string{"web[1-"}, ParseOptions{}, `parse "web[1-": unclosed '[' (want a node-set such as web[01-20].example.com)`},
		{[]string{"web1-3]"}, ParseOptions{}, `parse "web1-3]": unmatched ']' (want a node-set such as web[01-20].example.com)`},
		{[]string{"web[1-[3]]"}, ParseOptions{}, `parse "web[1-[3]]": nested '[' (want a node-set such as web[01-20].example.com)`},
		{[]string{"web[]"}, ParseOptions{}, `parse "web[]": empty '[]' (want [1-3] or [1,4,7-9])`},
		{[]string{"web[3-1]"}, ParseOptions{}, `parse "web[3-1]": [3-1]: range end before start`},
		{[]string{"web[a-c]"}, ParseOptions{}, `parse "web[a-c]": [a-c]: "a" is not a number (want [1-3] or [1,4,7-9])`},
		{[]string{"web[1,,2]"}, ParseOptions{}, `parse "web[1,,2]": []: empty number (want [1-3] or [1,4,7-9])`},
		{[]string{"web[1-2-3]"}, ParseOptions{}, `parse "web[1-2-3]": [1-2-3]: "2-3" is not a number (want [1-3] or [1,4,7-9])`},
		{[]string{"web[1234567890123456789]"}, ParseOptions{}, `parse "web[1234567890123456789]": [1234567890123456789]: number 1234567890123456789 has more than 18 digits`},
		{[]string{"10.0.0.[250-256]"}, ParseOptions{}, `parse "10.0.0.[250-256]": 10.0.0.256: octet 256 out of range`},
		{[]string{"[::1]x"}, ParseOptions{}, `parse "[::1]x": [::1]: "::1" is not a number (want [1-3] or [1,4,7-9])`},
		{[]string{"[fd00::/120]"}, ParseOptions{}, `parse "[fd00::/120]": want an IPv6 address inside [ ], as in [::1] or [fd00::]/120`},
		{[]string{"[::g]"}, ParseOptions{}, `parse "[::g]": "::g" is not an IPv6 address: ...`},
		{[]string{"@"}, ParseOptions{}, `parse "@": want @FILE, a file of specs one a line`},
		{[]string{"@/nonexistent/hosts.txt"}, ParseOptions{}, `@/nonexistent/hosts.txt: open: no such file or directory`},
		{[]string{"-"}, ParseOptions{}, `"-": no standard input to read targets from`},
		{[]string{"-", "-"}, ParseOptions{Stdin: strings.NewReader("a\n")}, `"-": standard input was already read by an earlier "-"`},
		{[]string{"-"}, ParseOptions{Stdin: strings.NewReader("a\n\nb c\n")}, `stdin:3: parse "b c": ' ' is not allowed in a hostname; ...`},
		{[]string{"-"}, ParseOptions{Stdin: strings.NewReader("@other\n")}, `stdin:1: parse "@other": @ inside a file is not supported (one level only)`},
		{[]string{"a"}, ParseOptions{Excludes: []string{"10.0.0.300"}}, `exclude: parse "10.0.0.300": octet 300 out of range`},
		{[]string{"a"}, ParseOptions{Excludes: []string{"@/nonexistent"}}, `exclude: @/nonexistent: open: no such file or directory`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.specs, " "), func(t *testing.T) {
			t.Parallel()
			s, err := Parse(tt.specs, tt.opts)
			if err == nil {
				t.Fatalf("Parse(%q) = %d targets, want error %q", tt.specs, s.Len(), tt.want)
			}
			if !matches(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error\n got: %s\nwant: %s", tt.specs, err, tt.want)
			}
		})
	}
}

// matches compares got with want, or with want's prefix when want ends in "...".
func matches(got, want string) bool {
	if p, ok := strings.CutSuffix(want, "..."); ok {
		return strings.HasPrefix(got, p)
	}
	return got == want
}

func TestParseErrorsAreTyped(t *testing.T) {
	t.Parallel()
	if _, err := Parse(nil, ParseOptions{}); !errors.Is(err, ErrNoTargets) {
		t.Errorf("empty set: %v, want ErrNoTargets", err)
	}
	if _, err := Parse([]string{"0.0.0.0/0"}, ParseOptions{}); !errors.Is(err, ErrTooMany) {
		t.Errorf("a /0: %v, want ErrTooMany", err)
	}
	if _, err := Parse([]string{"h[1-9]"}, ParseOptions{MaxTargets: 3}); !errors.Is(err, ErrTooMany) {
		t.Errorf("big node-set: %v, want ErrTooMany", err)
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	hosts := writeFile(t, "hosts.txt", "# lab hosts\n127.0.0.1\n\n  127.0.0.2-3 \nweb[1-2] # web tier\n\t::1\nlocalhost\n")
	excl := writeFile(t, "excl.txt", "127.0.0.2\nweb2\n")
	s, err := Parse([]string{"@" + hosts, "db"}, ParseOptions{Excludes: []string{"@" + excl}})
	if err != nil {
		t.Fatal(err)
	}
	want := "127.0.0.1 127.0.0.3 ::1 web1 localhost db"
	if got := strings.Join(names(t, s), " "); got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	bad := writeFile(t, "bad.txt", "127.0.0.1\n# ok\n\nweb1\n\n\n10.0.0.300\n")
	_, err = Parse([]string{"@" + bad}, ParseOptions{})
	if want := bad + `:7: parse "10.0.0.300": octet 300 out of range`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}

	nested := writeFile(t, "nested.txt", "a\n@"+hosts+"\n")
	_, err = Parse([]string{"@" + nested}, ParseOptions{})
	if want := nested + `:2: parse "@` + hosts + `": @ inside a file is not supported (one level only)`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}

	long := writeFile(t, "long.txt", strings.Repeat("a", 2<<20)+"\n")
	if _, err = Parse([]string{"@" + long}, ParseOptions{}); err == nil || !strings.HasPrefix(err.Error(), long+":1: read: ") {
		t.Errorf("a 2 MB line: %v, want a read error naming the file and line", err)
	}
}

// TestParseMissingFileRelative: the error names the file as the user wrote it.
func TestParseMissingFileRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := Parse([]string{"@hosts.txt"}, ParseOptions{}); err == nil || err.Error() != "@hosts.txt: open: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
}

// TestParseLazy shows that a /8 costs no memory per address and that At
// does not allocate for addresses.
func TestParseLazy(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s, err := Parse([]string{"10.0.0.0/8", "fd00::/104"}, ParseOptions{MaxTargets: 1 << 25})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("Parse of a /8 and an IPv6 /104 allocated %d bytes, want a few hundred", n)
	}
	if s.Len() != 1<<25 {
		t.Fatalf("Len = %d, want %d", s.Len(), 1<<25)
	}
	checks := map[uint64]string{0: "10.0.0.0", 1<<24 - 1: "10.255.255.255", 1 << 24: "fd00::", 1<<25 - 1: "fd00::ff:ffff", 12345678: "10.188.97.78"}
	for i, want := range checks {
		if got := s.At(i); got.Name() != want || got.Host != "" || !got.Addr.IsValid() {
			t.Errorf("At(%d) = %+v, want address %s", i, got, want)
		}
	}
	var sink Target
	if n := testing.AllocsPerRun(1000, func() { sink = s.At(1<<24 + 77) }); n != 0 {
		t.Errorf("At allocates %v times per call, want 0", n)
	}
	_ = sink
}

// TestParseNamesCompact: names from a node-set live in one arena, not one
// string and one map entry each, and At does not allocate for them either.
func TestParseNamesCompact(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s, err := Parse([]string{"web[000000-199999].example.com", "WEB000007.example.com."}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// 200,000 names of 22 bytes: 4.4 MB of text, ~4 MB of index.
	if n := after.TotalAlloc - before.TotalAlloc; n > 20<<20 {
		t.Errorf("Parse of 200,000 names allocated %d MB, want < 20", n>>20)
	}
	if s.Len() != 200000 {
		t.Fatalf("Len = %d, want 200000 (the upper-case duplicate dropped)", s.Len())
	}
	for i, want := range map[uint64]string{0: "web000000.example.com", 7: "web000007.example.com", 199999: "web199999.example.com"} {
		if got := s.At(i); got.Host != want || got.Addr.IsValid() {
			t.Errorf("At(%d) = %+v, want host %s", i, got, want)
		}
	}
	var sink Target
	if n := testing.AllocsPerRun(1000, func() { sink = s.At(12345) }); n != 0 {
		t.Errorf("At allocates %v times per call for a name, want 0", n)
	}
	_ = sink
}

func TestAtPanicsOutOfRange(t *testing.T) {
	t.Parallel()
	s, err := Parse([]string{"10.0.0.1", "h"}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("At(Len) did not panic")
		}
	}()
	s.At(s.Len())
}

// TestAtManyIntervals checks At's binary search against a plain list.
func TestAtManyIntervals(t *testing.T) {
	t.Parallel()
	var specs, want []string
	for i := 0; i < 300; i += 3 { // 100 disjoint ranges of 1 or 2 addresses
		a := netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i % 256)})
		specs = append(specs, a.String())
		want = append(want, a.String())
		if i%2 == 0 {
			b := a.Next()
			specs = append(specs, b.String())
			want = append(want, b.String())
		}
	}
	// Given in reverse to exercise sorting.
	for i, j := 0, len(specs)-1; i < j; i, j = i+1, j-1 {
		specs[i], specs[j] = specs[j], specs[i]
	}
	s, err := Parse(specs, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, s); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	s, err := Parse([]string{"10.0.0.0/30", "::1", "h", "g"}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v4, v6, n := s.(interface {
		Counts() (uint64, uint64, uint64)
	}).Counts()
	if v4 != 4 || v6 != 1 || n != 2 {
		t.Errorf("Counts = %d %d %d, want 4 1 2", v4, v6, n)
	}
}

func TestInline(t *testing.T) {
	t.Parallel()
	hosts := writeFile(t, "hosts.txt", "# c\n127.0.0.1\n\nweb[1-2] # x\n")
	got, err := Inline([]string{"a", "@" + hosts, "-", "b"}, strings.NewReader("s1\n s2 \n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "a 127.0.0.1 web[1-2] s1 s2 b"; strings.Join(got, " ") != want {
		t.Errorf("Inline = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		specs []string
		stdin string
		want  string
	}{
		{[]string{"@/nonexistent"}, "", "@/nonexistent: open: no such file or directory"},
		{[]string{"-"}, "x\n@y\n", `stdin:2: parse "@y": @ inside a file is not supported (one level only)`},
		{[]string{"-"}, "-\n", `stdin:1: parse "-": - inside a file is not supported (one level only)`},
		{[]string{"-", "-"}, "x\n", `"-": standard input was already read by an earlier "-"`},
	} {
		if _, err := Inline(tt.specs, strings.NewReader(tt.stdin)); err == nil || err.Error() != tt.want {
			t.Errorf("Inline(%q) error %v, want %s", tt.specs, err, tt.want)
		}
	}
	// Inlined specs parse to the same set as the originals.
	orig := []string{"@" + hosts, "10.0.0.0/30"}
	a, err := Parse(orig, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := Inline(orig, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(in, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if x, y := strings.Join(names(t, a), " "), strings.Join(names(t, b), " "); x != y {
		t.Errorf("Parse(Inline(x)) = %s, Parse(x) = %s", y, x)
	}
}
