package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
	"github.com/fanout/fanout/target"
)

// No test reads this machine's /etc/ssh/ssh_config: one that wants a
// system-wide file names it in Config.SystemSSHConfig.
func init() { sshconfig.DefaultSystemFile = "none" }

// writeFile writes text to dir/name (directories made) and returns the path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The system-wide file is read after the user's: the first value obtained
// wins, -o beats both, -F FILE and -F none replace both, and a sweep uses
// what only the system file says (Port, IdentityFile).
func TestSystemSSHConfigPrecedence(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(priv.Public())
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	h := newHome(t, fleet.KnownHostsLine())
	writeKey(t, filepath.Join(h.dir, "sys_key"), priv, "")
	// web01 is dialled with this timeout: long, so a loaded machine does not trip it.
	writeFile(t, h.dir, ".ssh/config", "Host web*\n  User alice\n  ConnectTimeout 600\n")
	sys := writeFile(t, t.TempDir(), "ssh_config", fmt.Sprintf(`Host web*
  HostName 127.2.9.7
  User root
Host *
  Port %d
  ConnectTimeout 7
  IdentityFile ~/sys_key
  IdentitiesOnly yes
`, fleet.Port))

	j := newJob(t, Config{Command: "hostname", SystemSSHConfig: sys}, h.env())
	hs := settingsOf(t, j, target.Target{Host: "web01"})
	if hs.user != "alice" || hs.connect != 600*time.Second || hs.hostname != "127.2.9.7" || hs.port != fleet.Port ||
		!hs.onlyIDs || len(hs.identities) != 1 || hs.identities[0] != filepath.Join(h.dir, "sys_key") {
		t.Errorf("web01: %+v; want user and timeout from ~/.ssh/config, the rest from %s", hs, sys)
	}
	if hs = settingsOf(t, j, target.Target{Host: "db1"}); hs.user != "tester" || hs.connect != 7*time.Second || hs.port != fleet.Port {
		t.Errorf("db1: %+v; want the local user, timeout and port of %s", hs, sys)
	}
	// The fleet accepts only sys_key, named by the system file alone.
	if r := j.Run(context.Background(), target.Target{Host: "web01"}); r.Status != job.Up || string(r.Stdout) != "127.2.9.7\n" {
		t.Errorf("web01 through the system file: %s/%s %q stdout %q", r.Status, r.Class, r.Error, r.Stdout)
	}

	j = newJob(t, Config{Command: "true", SystemSSHConfig: sys, Options: map[string]string{"User": "ops"}}, h.env())
	if hs = settingsOf(t, j, target.Target{Host: "web01"}); hs.user != "ops" {
		t.Errorf("-o User: %q, want ops", hs.user)
	}
	// -F FILE: that file only.
	other := writeFile(t, h.dir, "other_config", "Host *\n  User carol\n")
	j = newJob(t, Config{Command: "true", SSHConfig: other, SystemSSHConfig: sys}, h.env())
	if hs = settingsOf(t, j, target.Target{Host: "web01"}); hs.user != "carol" || hs.port != 22 || hs.hostname != "web01" {
		t.Errorf("-F %s: %+v, want nothing of %s", other, hs, sys)
	}
	// -F none: neither file.
	j = newJob(t, Config{Command: "true", SSHConfig: "none", SystemSSHConfig: sys}, h.env())
	if hs = settingsOf(t, j, target.Target{Host: "web01"}); hs.user != "tester" || hs.port != 22 || hs.hostname != "web01" {
		t.Errorf("-F none: %+v, want no file read", hs)
	}
}

// debianSSHConfig is Debian 12's /etc/ssh/ssh_config, verbatim but for its
// Include, which the test points into its own directory (ETC).
const debianSSHConfig = `
# This is the ssh client system-wide configuration file.  See
# ssh_config(5) for more information.  This file provides defaults for
# users, and the values can be changed in per-user configuration files
# or on the command line.

# Configuration data is parsed as follows:
#  1. command line options
#  2. user-specific file
#  3. system-wide file
# Any configuration value is only changed the first time it is set.
# Thus, host-specific definitions should be at the beginning of the
# configuration file, and defaults at the end.

# Site-wide defaults for some commonly used options.  For a comprehensive
# list of available options, their meanings and defaults, please see the
# ssh_config(5) man page.

Include ETC/ssh_config.d/*.conf

Host *
#   ForwardAgent no
#   ForwardX11 no
#   ForwardX11Trusted yes
#   PasswordAuthentication yes
#   HostbasedAuthentication no
#   GSSAPIAuthentication no
#   GSSAPIDelegateCredentials no
#   GSSAPIKeyExchange no
#   GSSAPITrustDNS no
#   BatchMode no
#   CheckHostIP yes
#   AddressFamily any
#   ConnectTimeout 0
#   StrictHostKeyChecking ask
#   IdentityFile ~/.ssh/id_rsa
#   IdentityFile ~/.ssh/id_dsa
#   IdentityFile ~/.ssh/id_ecdsa
#   IdentityFile ~/.ssh/id_ed25519
#   Port 22
#   Ciphers aes128-ctr,aes192-ctr,aes256-ctr,aes128-cbc,3des-cbc
#   MACs hmac-md5,hmac-sha1,umac-64@openssh.com
#   EscapeChar ~
#   Tunnel no
#   TunnelDevice any:any
#   PermitLocalCommand no
#   VisualHostKey no
#   ProxyCommand ssh -q -W %h:%p gateway.example.com
#   RekeyLimit 1G 1h
#   UserKnownHostsFile ~/.ssh/known_hosts.d/%k
    SendEnv LANG LC_*
    HashKnownHosts yes
    GSSAPIAuthentication yes
`

// A distribution's system file parses cleanly and a sweep runs through it:
// Debian's (Include of ssh_config.d, SendEnv, HashKnownHosts,
// GSSAPIAuthentication), Fedora-style drop-ins ("Match final all", an
// Include of the crypto policy whose KexAlgorithms lists exchanges
// x/crypto lacks), and a Match fanout cannot evaluate, skipped with a
// warning naming its file and line.
func TestSystemSSHConfigDistributionFiles(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	h := newHome(t, fleet.KnownHostsLine())
	etc := t.TempDir()
	sys := writeFile(t, etc, "ssh_config", strings.ReplaceAll(debianSSHConfig, "ETC", etc))
	writeFile(t, etc, "crypto-policies/openssh.config", `Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-ctr
GSSAPIKexAlgorithms gss-curve25519-sha256-,gss-nistp256-sha256-
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,ecdh-sha2-nistp256,diffie-hellman-group18-sha512
RequiredRSASize 2048
`)
	writeFile(t, etc, "ssh_config.d/50-redhat.conf", fmt.Sprintf(`# The options here are in the "Match final block" to be applied as the last
# options and could be potentially overwritten by the user configuration
Match final all
	# Follow system-wide Crypto Policy, if defined:
	Include %s/crypto-policies/openssh.config

	GSSAPIAuthentication yes
	ForwardX11Trusted yes
	SendEnv LANG LC_CTYPE LC_NUMERIC
`, etc))
	site := writeFile(t, etc, "ssh_config.d/10-site.conf", fmt.Sprintf(`Match host 10.* exec "test -f /nonexistent"
  User nobody
Match host 127.2.*,!127.2.0.9 localuser tester
  Port %d
`, fleet.Port))

	var warn strings.Builder
	env := h.env()
	env.Warn = &warn
	j := newJob(t, Config{Command: "echo hi", SystemSSHConfig: sys}, env)
	if want, kex := []string{"curve25519-sha256", "ecdh-sha2-nistp256"}, settingsOf(t, j, at(1, fleet.Port)).kex; strings.Join(kex, ",") != strings.Join(want, ",") {
		t.Errorf("kex %v, want the crypto policy's without what x/crypto lacks: %v", kex, want)
	}
	// Match exec is not run: an error for the hosts that reach it only.
	if _, err := j.settings(target.Target{Host: "10.1.2.3"}); err == nil || !strings.Contains(err.Error(), site+" line 1: Match exec") {
		t.Errorf("a host reaching Match exec: %v, want an error naming %s line 1", err, site)
	}
	for i, wantPort := range map[int]int{1: fleet.Port, 9: 22} {
		if hs := settingsOf(t, j, target.Target{Host: host(i).String()}); hs.port != wantPort || hs.user != "tester" {
			t.Errorf("%s: port %d user %q, want %d and the local user", host(i), hs.port, hs.user, wantPort)
		}
	}
	if r := j.Run(context.Background(), target.Target{Host: host(1).String()}); r.Status != job.Up || string(r.Stdout) != "hi\n" {
		t.Errorf("sweep through the system files: %s/%s %q", r.Status, r.Class, r.Error)
	}
}

// Bad input in the system file, or in a file it includes, is an error
// naming that file and line; so is a Match fanout cannot evaluate in the
// user's own file (which the user can fix).
func TestSystemSSHConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string // under the test's etc dir; "ssh_config" is the system file
		user  string            // ~/.ssh/config
		want  []string          // in the error, after ETC is replaced
	}{
		{"no value", map[string]string{"ssh_config": "Host *\n  SendEnv LANG\n  Port\n"}, "",
			[]string{"ETC/ssh_config", "line 3", "Port"}},
		{"in an included file", map[string]string{
			"ssh_config":            "Include ssh_config.d/*.conf\n",
			"ssh_config.d/bad.conf": "# site\nStrictHostKeyChecking maybe\n"}, "",
			[]string{"ETC/ssh_config.d/bad.conf", "line 2", "maybe"}},
		{"bad yes/no, in a block for other hosts", map[string]string{"ssh_config": "Host db*\n  HashKnownHosts maybe\n"}, "",
			[]string{"ETC/ssh_config", "line 2", "HashKnownHosts", "maybe"}},
		{"bad yes/no in the user's file", nil, "Host *\n  User root\n  IdentitiesOnly sure\n",
			[]string{".ssh/config", "line 3", "IdentitiesOnly", "sure"}},
		{"kex of nobody", map[string]string{"ssh_config": "KexAlgorithms sntrup761x25519-sha512\n"}, "",
			[]string{"ETC/ssh_config", "line 1", "none of them"}},
		{"kex typo", map[string]string{"ssh_config": "Host *\nKexAlgorithms curve25519-sha265\n"}, "",
			[]string{"ETC/ssh_config", "line 2", "curve25519-sha265"}},
		{"include loop", map[string]string{"ssh_config": "Include ssh_config\n"}, "",
			[]string{"ETC/ssh_config", "line 1", "nested"}},
		{"Match exec in the user's file", map[string]string{"ssh_config": ""}, "User x\n\nMatch exec true\n",
			[]string{".ssh/config", "line 3", "Match exec", "not supported"}},
		{"Match without criteria", map[string]string{"ssh_config": "Match\n"}, "",
			[]string{"ETC/ssh_config", "line 1", "Match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHome(t, "")
			etc := t.TempDir()
			sys := filepath.Join(etc, "ssh_config")
			for name, text := range tt.files {
				writeFile(t, etc, name, text)
			}
			if tt.user != "" {
				writeFile(t, h.dir, ".ssh/config", tt.user)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "ETC", etc))
			}
			newFails(t, Config{Command: "true", SystemSSHConfig: sys}, h.env(), want...)
		})
	}
	// A missing system file is no error unless it was named.
	h := newHome(t, "")
	if j, err := New(Config{Command: "true", SystemSSHConfig: filepath.Join(h.dir, "none-such")}, h.env()); err == nil {
		j.Close()
		t.Errorf("a named system file that does not exist: no error")
	}
}

// Include resolves relative paths as OpenSSH does: under ~/.ssh for the
// user's file (Env.Home, not the process's HOME), beside the system file
// for it; Include inside a Host block applies to that block only.
func TestSSHConfigInclude(t *testing.T) {
	t.Parallel()
	h := newHome(t, "")
	etc := t.TempDir()
	writeFile(t, h.dir, ".ssh/config", "Host web*\n  Include conf.d/web.conf\nHost *\n  Include ~/extra.conf\n")
	writeFile(t, h.dir, ".ssh/conf.d/web.conf", "User webuser\nPort 2201\n")
	writeFile(t, h.dir, "extra.conf", "Host db*\n  User dbuser\nHost *\n  Port 2202\n")
	sys := writeFile(t, etc, "ssh_config", "Include site.d/*.conf\n")
	writeFile(t, etc, "site.d/a.conf", "User siteuser\nConnectTimeout 4\n")
	writeFile(t, etc, "site.d/b.conf", "User later\n")
	j := newJob(t, Config{Command: "true", SystemSSHConfig: sys}, h.env())
	tests := []struct {
		alias, user string
		port        int
	}{
		{"web1", "webuser", 2201},
		{"db1", "dbuser", 2202},
		{"other", "siteuser", 2202},
	}
	for _, tt := range tests {
		hs := settingsOf(t, j, target.Target{Host: tt.alias})
		if hs.user != tt.user || hs.port != tt.port || hs.connect != 4*time.Second {
			t.Errorf("%s: user %q port %d timeout %v, want %q %d 4s", tt.alias, hs.user, hs.port, hs.connect, tt.user, tt.port)
		}
	}
}

// settingsOf resolves t's settings, failing the test on an error.
func settingsOf(t *testing.T, j *Job, tg target.Target) hostSettings {
	t.Helper()
	hs, err := j.settings(tg)
	if err != nil {
		t.Fatalf("settings of %s: %v", tg.Name(), err)
	}
	return hs
}
