package cli_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
)

// sshFleet starts the lab SSH fleet (127.2.0.7 exits 3, 127.2.0.8 sleeps
// when asked to) and returns the flags that reach it.
func sshFleet(t *testing.T) (flags []string, dir string) {
	t.Helper()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		Rewrite: func(h netip.Addr, cmd string) string {
			if h == netip.MustParseAddr("127.2.0.7") {
				return "exit 3"
			}
			return cmd
		},
	})
	dir = t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "cli test")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id")
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(key, pem.EncodeToMemory(blk), 0o600)
	os.WriteFile(kh, []byte(fleet.KnownHostsLine()), 0o600)
	return []string{"ssh", "-F", "none", "--no-agent", "-i", key, "--known-hosts", kh, "-p", strconv.Itoa(fleet.Port)}, dir
}

func TestSSHInline(t *testing.T) {
	t.Parallel()
	flags, _ := sshFleet(t)
	r := fanout(t, "", append(flags, "127.2.0.[1-5]", "--", "hostname")...)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	for i := 1; i <= 5; i++ {
		line := fmt.Sprintf("127.2.0.%d: 127.2.0.%d\n", i, i)
		if !strings.Contains(r.stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "\n"); n != 5 {
		t.Errorf("%d lines, want 5:\n%s", n, r.stdout)
	}
	// A failing host: its note on stderr, exit 1.
	r = fanout(t, "", append(flags, "127.2.0.7", "--", "hostname")...)
	if r.code != 1 || !strings.Contains(r.stderr, "127.2.0.7: [fanout] exit status 3") {
		t.Errorf("exit 3 host: exit %d, stderr %s", r.code, r.stderr)
	}
}

func TestSSHGather(t *testing.T) {
	t.Parallel()
	flags, _ := sshFleet(t)
	r := fanout(t, "", append(flags, "--gather", "127.2.0.[1-20]", "--", "echo", "hello", "world")...)
	if r.code != 1 {
		t.Fatalf("exit %d (want 1: one host exits 3), stderr %s", r.code, r.stderr)
	}
	for _, want := range []string{"\n127.2.0.[1-6,8-20] (19)\n", "\nhello world\n", "\n127.2.0.7 (1) [exit status 3]\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("gathered output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Count(r.stdout, "hello world") != 1 {
		t.Errorf("identical outputs not gathered once:\n%s", r.stdout)
	}
}

func TestSSHOutdirJSONLAndOptions(t *testing.T) {
	t.Parallel()
	flags, dir := sshFleet(t)
	out := filepath.Join(dir, "out")
	stdinFile := filepath.Join(dir, "in")
	os.WriteFile(stdinFile, []byte("from stdin\n"), 0o600)
	// -o is both the format and an ssh option.
	r := fanout(t, "", append(flags, "--outdir", out, "-o", "jsonl", "-o", "ConnectTimeout=5", "--stdin", stdinFile,
		"127.2.0.1", "127.2.0.2", "--", "cat")...)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	rs := results(t, r.stdout)
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2:\n%s", len(rs), r.stdout)
	}
	for _, res := range rs {
		if res.Job != "ssh" || res.Status != job.Up || string(res.Stdout) != "from stdin\n" || res.ExitCode == nil || *res.ExitCode != 0 || res.RTT <= 0 {
			t.Errorf("result %+v", res)
		}
		got, err := os.ReadFile(filepath.Join(out, res.Host+".stdout"))
		if err != nil || string(got) != "from stdin\n" {
			t.Errorf("%s.stdout: %q %v", res.Host, got, err)
		}
		if _, err := os.Stat(filepath.Join(out, res.Host+".stderr")); err != nil {
			t.Errorf("%s.stderr: %v", res.Host, err)
		}
	}
}

func TestSSHTimeoutCutsCommand(t *testing.T) {
	t.Parallel()
	flags, _ := sshFleet(t)
	// The command outlasts testwait.Hang (fanout's own deadline here): only
	// the cut ends it, so fanout returning at all shows the cut came.
	r := fanout(t, "", append(flags, "--timeout", "300ms", "-o", "jsonl", "127.2.0.1", "--", "sleep", "3600")...)
	rs := results(t, r.stdout)
	if r.code != 1 || len(rs) != 1 || rs[0].Class != job.ClassTimeout {
		t.Errorf("exit %d, results %+v, stderr %s", r.code, rs, r.stderr)
	}
}

func TestSSHBadInput(t *testing.T) {
	t.Parallel()
	flags, dir := sshFleet(t)
	cfg := filepath.Join(dir, "bad_config")
	os.WriteFile(cfg, []byte("Host *\n  Port\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", append(flags, "127.2.0.1"), "no command"},
		{"unknown option", append(flags, "-o", "Compression=yes", "127.2.0.1", "--", "true"), "Compression"},
		{"bad host key policy", append(flags, "--host-key", "sometimes", "127.2.0.1", "--", "true"), "sometimes"},
		{"missing identity", append(flags, "-i", filepath.Join(dir, "nope"), "127.2.0.1", "--", "true"), "nope"},
		{"malformed config", append(flags, "-F", cfg, "127.2.0.1", "--", "true"), "line 2"},
		{"gather and outdir", append(flags, "--gather", "--outdir", dir, "127.2.0.1", "--", "true"), "--gather"},
		{"missing stdin file", append(flags, "--stdin", filepath.Join(dir, "nope2"), "127.2.0.1", "--", "true"), "nope2"},
	}
	for _, tt := range tests {
		r := fanout(t, "", tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 naming %q", tt.name, r.code, r.stderr, tt.want)
		}
	}
}

// fanout ssh -G prints each target's resolved config in ssh -G's form,
// in the order given, without connecting; a target the config refuses
// exits 2 naming the file and line.
func TestSSHPrintConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("Host web1\n  HostName 127.0.0.9\n  Port 2222\n  User alice\n  StrictHostKeyChecking no\nHost px\n  ProxyCommand nc %h %p\n"), 0o600)
	r := fanout(t, "", "ssh", "-G", "-F", cfg, "web1", "bob@db[1-2]:2200")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"host web1\nuser alice\nhostname 127.0.0.9\nport 2222\n",
		"stricthostkeychecking false\n",
		"host db1\nuser bob\nhostname db1\nport 2200\n",
		"host db2\nuser bob\nhostname db2\nport 2200\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if i, j := strings.Index(r.stdout, "host web1"), strings.Index(r.stdout, "host db1"); i < 0 || j < i {
		t.Errorf("hosts not in the order given:\n%s", r.stdout)
	}
	r = fanout(t, "", "ssh", "-G", "-F", cfg, "px")
	if r.code != 2 || !strings.Contains(r.stderr, cfg+" line 7") || !strings.Contains(r.stderr, "ProxyCommand") {
		t.Errorf("ProxyCommand: exit %d, stderr %q; want exit 2 naming %s line 7", r.code, r.stderr, cfg)
	}
}
