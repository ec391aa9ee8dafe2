package sshconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t testing.TB, text string) (*Config, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Options{UserFile: p}, Env{Home: "/home/u", User: "u", UID: "1000", Hostname: "here.example"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c, p
}

func TestSplitArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // args joined by |
		ok   bool
	}{
		{`a b`, `a|b`, true},
		{`a#b c`, `a#b|c`, true},
		{`a #b c`, `a`, true},
		{`"a b" c`, `a b|c`, true},
		{`'a b'c`, `a bc`, true},
		{`a\ b`, `a b`, true},
		{`a\"b`, `a"b`, true},
		{`a\qb`, `a\qb`, true},
		{`"open`, ``, false},
		{"a\tb", `a|b`, true},
	}
	for _, tt := range tests {
		got, ok := splitArgs(tt.in)
		if ok != tt.ok || (ok && strings.Join(got, "|") != tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseValues(t *testing.T) {
	t.Parallel()
	times := map[string]time.Duration{"10": 10 * time.Second, "1m30s": 90 * time.Second, "2h": 2 * time.Hour, "1w": 7 * 24 * time.Hour, "0": 0}
	for in, want := range times {
		if got, none, err := ParseTime(in); err != nil || none || got != want {
			t.Errorf("ParseTime(%q) = %v, %v, %v; want %v", in, got, none, err, want)
		}
	}
	for _, bad := range []string{"", "5x", "m", "-1", "99999999999"} {
		if _, _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q): no error", bad)
		}
	}
	if _, none, err := ParseTime("none"); !none || err != nil {
		t.Errorf("ParseTime(none): none %v, %v", none, err)
	}
	ports := map[string]int{"22": 22, "65535": 65535, "http": 80, "ssh": 22}
	for in, want := range ports {
		if got, err := ParsePort(in); err != nil || got != want {
			t.Errorf("ParsePort(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "65536", "abc", "", "-1", "99999999999999999999"} {
		if _, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q): no error", bad)
		}
	}
}

func TestParseJump(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"bastion", "bastion"},
		{"admin@bastion:2222", "admin@bastion:2222"},
		{"ssh://admin@bastion:2200", "admin@bastion:2200"},
		{"ssh://bastion", "bastion"},
		{"a,b@c:23,ssh://d", "a b@c:23 d"},
		{"[::1]:2200", "[::1]:2200"},
		{"u@[fe80::1%eth0]", "u@[fe80::1%eth0]"},
		{"bastion#comment", "bastion"},
		{"none", ""},
		{"NONE", ""},
	}
	for _, tt := range tests {
		hops, err := ParseJump(tt.in)
		var got []string
		for _, h := range hops {
			got = append(got, h.String())
		}
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("ParseJump(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"@host", "a,,b", "host:0", "host:abc", "ssh://h/path", "[::1", "::1:22", ""} {
		if _, err := ParseJump(bad); err == nil {
			t.Errorf("ParseJump(%q): no error", bad)
		}
	}
}

func TestExpandTokens(t *testing.T) {
	t.Parallel()
	vals := map[byte]string{'h': "web1", 'p': "22"}
	if got, err := expandTokens("%h:%p %%h", "hp", vals); err != nil || got != "web1:22 %h" {
		t.Errorf("expandTokens = %q, %v", got, err)
	}
	for _, bad := range []string{"%z", "%p", "trailing%"} {
		if _, err := expandTokens(bad, "h", vals); err == nil {
			t.Errorf("expandTokens(%q) with only %%h allowed: no error", bad)
		}
	}
	env := func(k string) string { return map[string]string{"A": "x"}[k] }
	if got, err := expandEnv("${A}/y", env); err != nil || got != "x/y" {
		t.Errorf("expandEnv = %q, %v", got, err)
	}
	if _, err := expandEnv("${B}", env); err == nil {
		t.Errorf("expandEnv of an unset variable: no error")
	}
}

// Resolutions are cached by (host, port, user): the same query is
// evaluated once, another one again.
func TestResolveCached(t *testing.T) {
	t.Parallel()
	c, _ := load(t, "Host web*\n  User w\nHost *\n  Port 2222\n")
	a, err := c.Resolve(Query{Host: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Resolve(Query{Host: "web1"})
	if a != b {
		t.Errorf("the same query resolved twice")
	}
	d, _ := c.Resolve(Query{Host: "web1", User: "root"})
	if d == a || d.User != "root" || a.User != "w" || d.Port != 2222 {
		t.Errorf("another user: %+v (first %+v)", d, a)
	}
}

// A Match exec is refused for the hosts that reach it only, naming its
// line; the others resolve.
func TestMatchExecOnlyWhereReached(t *testing.T) {
	t.Parallel()
	c, p := load(t, "Host *\n  User x\nMatch host db* exec \"true\"\n  User y\n")
	if r, err := c.Resolve(Query{Host: "web1"}); err != nil || r.User != "x" {
		t.Errorf("web1: %+v, %v", r, err)
	}
	if _, err := c.Resolve(Query{Host: "db1"}); err == nil || !strings.Contains(err.Error(), p+" line 3") {
		t.Errorf("db1: %v, want an error naming %s line 3", err, p)
	}
}

// The final pass: Host lines see the final host name, and values already
// taken stay.
func TestFinalPass(t *testing.T) {
	t.Parallel()
	c, _ := load(t, "Host short\n  HostName Long.Example.ORG\nHost *.example.org\n  User domain\n  Port 2200\nMatch final\n  Port 2300\n")
	r, err := c.Resolve(Query{Host: "short"})
	if err != nil || r.HostName != "long.example.org" || r.User != "domain" || r.Port != 2200 {
		t.Errorf("short: %+v, %v", r, err)
	}
}

// Whatever the bytes of a config, Load and Resolve return, never panic.
func FuzzConfig(f *testing.F) {
	f.Add("Host a\n  HostName %h.x\nMatch host a final\n  User u\n", "a")
	f.Add("Include /nonexistent/*\nIgnoreUnknown x\nx y\nProxyJump ssh://u@[::1]:2,b\n", "b")
	f.Add("Host \"a b\" !c\n  Port http\n  ConnectTimeout 1m\n  UserKnownHostsFile ~/%h ${HOME}\n", "a b")
	f.Fuzz(func(t *testing.T, text, host string) {
		p := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(Options{UserFile: p}, Env{Home: "/h", User: "u"})
		if err != nil {
			return
		}
		c.Resolve(Query{Host: host})
	})
}

// BenchmarkResolve is one host's resolution against a config of a few
// dozen blocks, each host distinct (the cache does not help): what a sweep
// pays per target on top of its handshake.
func BenchmarkResolve(b *testing.B) {
	var text strings.Builder
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&text, "Host web%d* db%d\n  User u%d\n  Port %d\n", i, i, i, 2000+i)
	}
	text.WriteString("Match host *.internal final\n  StrictHostKeyChecking yes\nHost *\n  IdentityFile ~/.ssh/%h\n  UserKnownHostsFile ~/.ssh/kh_%h\n")
	c, _ := load(b, text.String())
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Resolve(Query{Host: fmt.Sprintf("host%d.internal", i)}); err != nil {
			b.Fatal(err)
		}
	}
}
