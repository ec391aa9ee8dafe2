package ssh

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// The configs that failed open when fanout read host-key settings once per
// sweep from the "Host *" blocks, run against a real sshd whose key no
// known_hosts file holds (or only the one a host's own UserKnownHostsFile
// names): every host the config keeps strict fails with class hostkey, as
// `ssh -F cfg HOST` fails, and every host it relaxes connects, as ssh
// does. The warning for the relaxed ones names the config's line.
func TestOpenSSHConfigPerHostHostKeys(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	legacy := startSSHD(t, []ssh.PublicKey{home.pub}, "KexAlgorithms diffie-hellman-group14-sha1")
	trusted := filepath.Join(home.dir, "trusted_known_hosts")
	os.WriteFile(trusted, []byte(d.knownHosts()), 0o600)
	key := filepath.Join(home.dir, ".ssh", "id_ed25519")
	// Every alias reaches d (legacy* reaches the sshd that offers only
	// diffie-hellman-group14-sha1), as root with the test's key, and reads
	// no known_hosts but the ones named.
	common := fmt.Sprintf(`Host legacy*
  Port %d
Host *
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s
  IdentitiesOnly yes
  BatchMode yes
  GlobalKnownHostsFile none
  UserKnownHostsFile EMPTY
`, legacy.port, d.port, key)
	tests := []struct {
		name   string
		config string // before common
		up     []string
		strict []string // fail with hostkey
		failed []string // fail otherwise (kex)
		warn   string   // in the warnings: the line that relaxed checking
	}{
		{"strict host, relaxed rest", "Host web1\n  StrictHostKeyChecking yes\nHost *\n  StrictHostKeyChecking no\n",
			[]string{"web2", "db1"}, []string{"web1"}, nil, "line 4: StrictHostKeyChecking no, under Host *"},
		{"relaxed but prod*", "Host * !prod*\n  StrictHostKeyChecking no\n",
			[]string{"dev1"}, []string{"prod1", "prod2"}, nil, "line 2: StrictHostKeyChecking no, under Host * !prod*"},
		{"per-host UserKnownHostsFile", fmt.Sprintf("Host known1\n  UserKnownHostsFile %s\n", trusted),
			[]string{"known1"}, []string{"other1"}, nil, ""},
		{"per-host KexAlgorithms", "Host legacy1\n  KexAlgorithms +diffie-hellman-group14-sha1\nHost *\n  StrictHostKeyChecking no\n",
			[]string{"legacy1"}, nil, []string{"legacy2"}, "line 4"},
		{"Match host after HostName", "Host *\n  HostName 127.0.0.1\nMatch host 127.0.0.1 originalhost lax*\n  StrictHostKeyChecking no\n",
			[]string{"lax1"}, []string{"tight1"}, nil, "line 4: StrictHostKeyChecking no, under Match host 127.0.0.1 originalhost lax*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// ssh's StrictHostKeyChecking no adds the keys it meets: each
			// case starts from an empty file, its strict hosts first.
			dir := t.TempDir()
			empty := filepath.Join(dir, "empty_known_hosts")
			os.WriteFile(empty, nil, 0o600)
			cfg := filepath.Join(dir, "config")
			os.WriteFile(cfg, []byte(tt.config+strings.ReplaceAll(common, "EMPTY", empty)), 0o600)
			var warn strings.Builder
			env := rootEnv(home)
			env.Warn = &warn
			j := newJob(t, Config{Command: "echo ok", SSHConfig: cfg}, env)
			check := func(host string, wantUp bool, wantClass job.Class) {
				r := j.Run(context.Background(), target.Target{Host: host})
				switch {
				case wantUp && (r.Status != job.Up || string(r.Stdout) != "ok\n"):
					t.Errorf("%s: %s/%s %q, want up", host, r.Status, r.Class, r.Error)
				case !wantUp && r.Status == job.Up:
					t.Errorf("%s: up, want a %s failure (the config keeps it strict)", host, wantClass)
				case !wantUp && wantClass != "" && r.Class != wantClass:
					t.Errorf("%s: %s/%s %q, want class %s", host, r.Status, r.Class, r.Error, wantClass)
				}
				// OpenSSH's client agrees.
				if _, err := exec.LookPath("ssh"); err == nil {
					out, err := exec.Command("ssh", "-F", cfg, host, "echo ok").CombinedOutput()
					if (err == nil) != wantUp {
						t.Errorf("%s: ssh -F cfg: %v %q, fanout up %v", host, err, out, wantUp)
					}
				}
			}
			for _, h := range tt.strict {
				check(h, false, job.ClassHostKey)
			}
			for _, h := range tt.up {
				check(h, true, "")
			}
			for _, h := range tt.failed {
				check(h, false, "")
			}
			if tt.warn != "" && !strings.Contains(warn.String(), cfg+" "+tt.warn) {
				t.Errorf("warnings %q, want one naming %s %s", warn.String(), cfg, tt.warn)
			}
			if tt.warn == "" && strings.Contains(warn.String(), "WARNING") {
				t.Errorf("warnings %q, want none", warn.String())
			}
		})
	}
}

// ProxyJump as users write it: a chain a,b is reached hop by hop (b
// through a, the target through b), in the URI form too; "none" in a
// host's own block beats a later Host * jump; a config whose jump host
// jumps through itself is an error, not a hang; ProxyCommand is refused
// for the host that uses it, never a direct connection.
func TestOpenSSHConfigProxyJumpChain(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	a := startSSHD(t, []ssh.PublicKey{home.pub})
	b := startSSHD(t, []ssh.PublicKey{home.pub})
	inner := startSSHD(t, []ssh.PublicKey{home.pub}, "ListenAddress 127.0.0.2")
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	os.WriteFile(kh, []byte(a.knownHosts()+b.knownHosts()+
		fmt.Sprintf("[127.0.0.2]:%d %s", inner.port, ssh.MarshalAuthorizedKey(inner.hostKey))), 0o600)
	conf := fmt.Sprintf(`Host chain
  HostName 127.0.0.2
  Port %d
  ProxyJump hopa,ssh://root@hopb:%d
Host direct
  HostName 127.0.0.1
  Port %d
  ProxyJump none
Host loop
  HostName 127.0.0.1
  Port %d
  ProxyJump loop
Host viacmd
  HostName 127.0.0.1
  Port %d
  ProxyCommand nc %%h %%p
Host hopa
  HostName 127.0.0.1
  Port %d
Host hopb
  HostName 127.0.0.1
Host *
  User root
Host * !hop*
  ProxyJump hopa
`, inner.port, b.port, a.port, a.port, a.port, a.port)
	os.WriteFile(filepath.Join(home.dir, ".ssh", "config"), []byte(conf), 0o600)
	// fanout itself may dial a only: b is reached through a, the target
	// through b, or not at all.
	env := rootEnv(home)
	var direct []string
	var mu sync.Mutex
	env.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		direct = append(direct, addr)
		mu.Unlock()
		if addr != fmt.Sprintf("127.0.0.1:%d", a.port) {
			return nil, fmt.Errorf("test: direct dial of %s refused", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	j := newJob(t, Config{Command: "echo $SSH_CONNECTION"}, env)
	r := j.Run(context.Background(), target.Target{Host: "chain"})
	if r.Status != job.Up || !strings.HasSuffix(strings.TrimSpace(string(r.Stdout)), fmt.Sprintf("127.0.0.2 %d", inner.port)) {
		mu.Lock()
		t.Errorf("chain: %s/%s %q stdout %q (direct dials %q)", r.Status, r.Class, r.Error, r.Stdout, direct)
		mu.Unlock()
	}
	if r := j.Run(context.Background(), target.Target{Host: "direct"}); r.Status != job.Up {
		t.Errorf("ProxyJump none: %s/%s %q", r.Status, r.Class, r.Error)
	}
	mu.Lock()
	if n := len(direct); n != 2 {
		t.Errorf("direct dials %q, want a's twice (the first hop, then the host with ProxyJump none)", direct)
	}
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := j.Run(ctx, target.Target{Host: "loop"}); r.Status == job.Up || !strings.Contains(r.Error, "loop") {
		t.Errorf("a jump host through itself: %s/%s %q, want a loop error", r.Status, r.Class, r.Error)
	}
	if r := j.Run(ctx, target.Target{Host: "viacmd"}); r.Status == job.Up || !strings.Contains(r.Error, "ProxyCommand") || !strings.Contains(r.Error, "line 16") {
		t.Errorf("ProxyCommand: %s/%s %q, want a refusal naming the line", r.Status, r.Class, r.Error)
	}
}
