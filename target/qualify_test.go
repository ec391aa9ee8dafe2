package target

import (
	"net/netip"
	"strings"
	"testing"
)

// specs lists every target of s by Spec, in canonical order.
func specs(t testing.TB, s Set) []string {
	t.Helper()
	out := make([]string, 0, s.Len())
	for i := uint64(0); i < s.Len(); i++ {
		out = append(out, s.At(i).Spec())
	}
	return out
}

var ssh = ParseOptions{Takes: takesAll, Job: "ssh"}

func TestParseZonesPortsUsers(t *testing.T) {
	t.Parallel()
	exclude := func(opts ParseOptions, ex ...string) ParseOptions {
		opts.Excludes = ex
		return opts
	}
	tests := []struct {
		name  string
		specs []string
		opts  ParseOptions
		want  []string
	}{
		{"zone", []string{"fe80::1%eth0"}, ParseOptions{}, []string{"fe80::1%eth0"}},
		{"zone in brackets", []string{"[fe80::1%eth0]"}, ParseOptions{}, []string{"fe80::1%eth0"}},
		{"zone number", []string{"fe80::1%2"}, ParseOptions{}, []string{"fe80::1%2"}},
		{"zone canonical and once", []string{"FE80:0::1%eth0", "fe80::1%eth0", "fe80::1%eth1"}, ParseOptions{}, []string{"fe80::1%eth0", "fe80::1%eth1"}},
		{"zone is not the address", []string{"fe80::1%lo", "fe80::1"}, ParseOptions{}, []string{"fe80::1", "fe80::1%lo"}},
		{"zoned node-set", []string{"fe80::[1-2]%eth0"}, ParseOptions{}, []string{"fe80::1%eth0", "fe80::2%eth0"}},
		{"v6 port", []string{"[::1]:2222"}, ssh, []string{"[::1]:2222"}},
		{"zone port", []string{"[fe80::1%eth0]:22"}, ssh, []string{"[fe80::1%eth0]:22"}},
		{"host port", []string{"host:22"}, ssh, []string{"host:22"}},
		{"v4 port", []string{"10.0.0.1:22", "10.0.0.1"}, ssh, []string{"10.0.0.1", "10.0.0.1:22"}},
		{"user", []string{"root@host"}, ssh, []string{"root@host"}},
		{"user v6", []string{"root@::1", "root@[::1]"}, ssh, []string{"root@::1"}},
		{"user zone port", []string{"admin@[fe80::1%eth0]:2222"}, ssh, []string{"admin@[fe80::1%eth0]:2222"}},
		{"user with @ and $", []string{"me@corp@h", "HOST$@h"}, ssh, []string{"me@corp@h", "HOST$@h"}},
		{"node-set carries user and port", []string{"root@web[1-2].example.com:2222"}, ssh, []string{"root@web1.example.com:2222", "root@web2.example.com:2222"}},
		{"node-set of addresses with a port", []string{"10.0.0.[1-2]:22"}, ssh, []string{"10.0.0.1:22", "10.0.0.2:22"}},
		{"comma list", []string{"root@a:22,b:23,[::1]:24"}, ssh, []string{"root@a:22", "b:23", "[::1]:24"}},
		{"canonical order", []string{"h1", "root@h2", "::1", "10.0.0.1", "fe80::1%lo", "h1:22"}, ssh, []string{"10.0.0.1", "::1", "h1", "root@h2", "fe80::1%lo", "h1:22"}},
		{"same entry once", []string{"root@h:22", "root@H:22", "root@h:22"}, ssh, []string{"root@h:22"}},
		{"a port is not the host", []string{"h", "h:22", "h:23", "root@h"}, ssh, []string{"h", "h:22", "h:23", "root@h"}},
		{"exclude the entry", []string{"h:22", "h:23"}, exclude(ssh, "h:23"), []string{"h:22"}},
		{"exclude the host", []string{"root@h1:22", "h2:22", "h1"}, exclude(ssh, "H1"), []string{"h2:22"}},
		{"exclude the address", []string{"10.0.0.1:22", "10.0.1.1:22", "root@[fd00::1]:22", "fe80::1%eth0", "fe80::2%eth0", "[fe80::3%eth0]:22"},
			exclude(ssh, "10.0.0.0/24", "fd00::1", "fe80::2"), []string{"10.0.1.1:22", "fe80::1%eth0", "[fe80::3%eth0]:22"}},
		{"exclude a zone", []string{"fe80::1%eth0", "fe80::1%eth1"}, ParseOptions{Excludes: []string{"fe80::1%eth1"}}, []string{"fe80::1%eth0"}},
		{"exclude a link-local prefix", []string{"fe80::1%eth0", "::1"}, ParseOptions{Excludes: []string{"fe80::/10"}}, []string{"::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse(tt.specs, tt.opts)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.specs, err)
			}
			if got := specs(t, s); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("Parse(%q) = %q, want %q", tt.specs, got, tt.want)
			}
			checkSet(t, s)
		})
	}
}

// TestParseEntryFields: what the jobs read from a target with a zone, port
// or user.
func TestParseEntryFields(t *testing.T) {
	t.Parallel()
	s, err := Parse([]string{"admin@[fe80::1%eth0]:2222", "root@web1:22", "fe80::2%lo", "me@corp@10.0.0.1"}, ssh)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Index: 0, Addr: netip.MustParseAddr("fe80::1%eth0"), Port: 2222, User: "admin"},
		{Index: 1, Host: "web1", Port: 22, User: "root"},
		{Index: 2, Addr: netip.MustParseAddr("fe80::2%lo")},
		{Index: 3, Addr: netip.MustParseAddr("10.0.0.1"), User: "me@corp"},
	}
	for i, w := range want {
		if got := s.At(uint64(i)); got != w {
			t.Errorf("At(%d) = %+v, want %+v", i, got, w)
		}
	}
	if got := s.At(0).Name(); got != "fe80::1%eth0" {
		t.Errorf("Name = %q: the zone is part of the address", got)
	}
}

func TestParseZonesPortsUsersBad(t *testing.T) {
	t.Parallel()
	ping := ParseOptions{Job: "ping"}
	tcp := ParseOptions{Job: "tcp", Takes: Takes{Note: "its ports come from -p"}}
	exec := ParseOptions{Job: "exec", Takes: Takes{Port: true}}
	const are = " (targets are hosts, addresses, CIDRs, ranges, node-sets)"
	tests := []struct {
		spec string
		opts ParseOptions
		want string
	}{
		{"host:22", ping, `parse "host:22": ping takes no port` + are},
		{"[::1]:2222", ping, `parse "[::1]:2222": ping takes no port` + are},
		{"[fe80::1%eth0]:22", ping, `parse "[fe80::1%eth0]:22": ping takes no port` + are},
		{"10.0.0.[1-5]:22", ping, `parse "10.0.0.[1-5]:22": ping takes no port` + are},
		{"user@host", ping, `parse "user@host": ping takes no user` + are},
		{"root@h:22", ping, `parse "root@h:22": ping takes no user or port` + are},
		{"host:22", tcp, `parse "host:22": tcp takes no port: its ports come from -p` + are},
		{"root@host", tcp, `parse "root@host": tcp takes no user: its ports come from -p` + are},
		{"root@host:22", exec, `parse "root@host:22": exec takes no user` + are},
		{"a,b:22", ping, `parse "b:22": ping takes no port` + are},
		{"root@10.0.0.0/24", ssh, `parse "root@10.0.0.0/24": "10.0.0.0/24" is a CIDR: a user or port goes with one host or address (a node-set gives it to each of its hosts)`},
		{"10.0.0.1-5:22", ssh, `parse "10.0.0.1-5:22": "10.0.0.1-5" is a range: ...`},
		{"root@fd00::1-5", ssh, `parse "root@fd00::1-5": "fd00::1-5" is a range: ...`},
		{"root@10.0.[0-1].0/24", ssh, `parse "root@10.0.[0-1].0/24": 10.0.0.0/24: "10.0.0.0/24" is a CIDR: ...`},
		{"host:", ssh, `parse "host:": empty port after ':' (want host:22)`},
		{"host:0", ssh, `parse "host:0": port 0 out of range (want 1-65535)`},
		{"host:65536", ssh, `parse "host:65536": port 65536 out of range (want 1-65535)`},
		{"host:ssh", ssh, `parse "host:ssh": port "ssh" is not a number (want 1-65535)`},
		{"web[1-2]:[22-23]", ssh, `parse "web[1-2]:[22-23]": port "[22-23]" is not a number (want 1-65535)`},
		{"root@", ssh, `parse "root@": empty host (want user@host, host:22 or [fd00::1]:22)`},
		{"a,@h", ssh, `parse "@h": @FILE goes alone, not in a comma-separated list`},
		{"ro ot@h", ssh, `parse "ro ot@h": ' ' is not allowed in a user name (want letters, digits, '.', '_', '-')`},
		{"-l@h", ssh, `parse "-l@h": user "-l" starts with '-'`},
		{"root@h;x", ssh, `parse "root@h;x": ';' is not allowed in a hostname; ...`},
		{"root@10.0.0.300", ssh, `parse "root@10.0.0.300": octet 300 out of range`},
		{"fe80::%eth0/64", ParseOptions{}, `parse "fe80::%eth0/64": a CIDR takes no zone: %eth0 names the interface of one address, as in fe80::1%eth0; give fe80::/64`},
		{"[fe80::%eth0]/64", ParseOptions{}, `parse "[fe80::%eth0]/64": a CIDR takes no zone: ...`},
		{"fe80::1%eth0-5", ParseOptions{}, `parse "fe80::1%eth0-5": a range takes no zone: a zone (%eth0) names the interface of one address, as in fe80::1%eth0`},
		{"fe80::1%", ParseOptions{}, `parse "fe80::1%": "fe80::1%": empty zone after '%' (want fe80::1%eth0)`},
		{"fe80::1%eth0:22", ParseOptions{}, `parse "fe80::1%eth0:22": zone "eth0:22" is not an interface name or number (want fe80::1%eth0; a port goes after brackets, [fe80::1%eth0]:22)`},
		{"fe80::1%a_very_long_interface", ParseOptions{}, `parse "fe80::1%a_very_long_interface": zone "a_very_long_interface" longer than 15 characters ...`},
		{"10.0.0.1%eth0", ParseOptions{}, `parse "10.0.0.1%eth0": "10.0.0.1%eth0": only an IPv6 address takes a zone (as in fe80::1%eth0)`},
		{"root@" + strings.Repeat("a.", 126) + "b:22", ssh, `parse "root@` + strings.Repeat("a.", 126) + `b:22": "root@` + strings.Repeat("a.", 126) + `b:22" is longer than 255 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			s, err := Parse([]string{tt.spec}, tt.opts)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error %q", tt.spec, specs(t, s), tt.want)
			}
			if !matches(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error\n got: %s\nwant: %s", tt.spec, err, tt.want)
			}
		})
	}
}

// A host file in pssh's format, "host[:port] [user]", gives each line's
// user as user@host would for a job that takes users; lines of one field
// are read as before, and a job that takes no user refuses the line as
// before, naming it.
func TestParsePsshHostsFile(t *testing.T) {
	t.Parallel()
	f := writeFile(t, "pssh-hosts", "web1:2222 alice\nweb2 bob\n# comment\n[::1]:2200 carol\ndb1\nroot@db2:22\n  db3\tdave  \n")
	s, err := Parse([]string{"@" + f}, ssh)
	if err != nil {
		t.Fatal(err)
	}
	want := "alice@web1:2222 bob@web2 carol@[::1]:2200 db1 root@db2:22 dave@db3"
	if got := strings.Join(specs(t, s), " "); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = Parse([]string{"@" + f}, ParseOptions{Job: "ping"})
	if err == nil || !strings.Contains(err.Error(), f+":1:") || !strings.Contains(err.Error(), "web1:2222 alice") {
		t.Errorf("ping with a pssh hosts file: %v, want the line's error", err)
	}
	bad := writeFile(t, "pssh-bad", "web1 alice extra\n")
	if _, err := Parse([]string{"@" + bad}, ssh); err == nil || !strings.Contains(err.Error(), bad+":1:") {
		t.Errorf("three fields: %v, want an error naming the line", err)
	}
}
