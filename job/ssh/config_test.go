package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

func TestBadInputBeforeTheSweep(t *testing.T) {
	t.Parallel()
	encrypted := func(t *testing.T, h *testHome) string {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		p := filepath.Join(h.dir, "enc_key")
		writeKey(t, p, priv, "s3cret")
		return p
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, h *testHome) (Config, Env)
		want  []string // substrings of the error
	}{
		{"no command", func(t *testing.T, h *testHome) (Config, Env) {
			return Config{}, h.env()
		}, []string{"no command"}},
		{"no auth method", func(t *testing.T, h *testHome) (Config, Env) {
			os.Remove(filepath.Join(h.dir, ".ssh", "id_ed25519"))
			return Config{Command: "true"}, h.env()
		}, []string{"no authentication method", "SSH_AUTH_SOCK", "id_ed25519"}},
		{"missing -i", func(t *testing.T, h *testHome) (Config, Env) {
			return Config{Command: "true", Identities: []string{h.dir + "/nope"}}, h.env()
		}, []string{"identity file", "/nope", "no such file"}},
		{"unparsable -i", func(t *testing.T, h *testHome) (Config, Env) {
			p := filepath.Join(h.dir, "garbage")
			os.WriteFile(p, []byte("not a key\n"), 0o600)
			return Config{Command: "true", Identities: []string{p}}, h.env()
		}, []string{"identity file", "garbage"}},
		{"encrypted -i without terminal", func(t *testing.T, h *testHome) (Config, Env) {
			return Config{Command: "true", Identities: []string{encrypted(t, h)}}, h.env()
		}, []string{"enc_key", "encrypted", "no terminal"}},
		{"wrong passphrase", func(t *testing.T, h *testHome) (Config, Env) {
			e := h.env()
			e.Prompt = func(string) ([]byte, error) { return []byte("wrong"), nil }
			return Config{Command: "true", Identities: []string{encrypted(t, h)}}, e
		}, []string{"enc_key", "passphrase"}},
		{"malformed ssh config", func(t *testing.T, h *testHome) (Config, Env) {
			p := filepath.Join(h.dir, "cfg")
			os.WriteFile(p, []byte("Host a\n  User bob\n  Port\n"), 0o600)
			return Config{Command: "true", SSHConfig: p}, h.env()
		}, []string{"cfg", "line 3", "Port"}},
		{"bad host pattern in config", func(t *testing.T, h *testHome) (Config, Env) {
			p := filepath.Join(h.dir, "cfg")
			os.WriteFile(p, []byte("User x\nMatch exec true\n"), 0o600)
			return Config{Command: "true", SSHConfig: p}, h.env()
		}, []string{"cfg", "2"}},
		{"missing explicit ssh config", func(t *testing.T, h *testHome) (Config, Env) {
			return Config{Command: "true", SSHConfig: h.dir + "/none-such"}, h.env()
		}, []string{"none-such"}},
		{"encrypted IdentityFile in config names the line", func(t *testing.T, h *testHome) (Config, Env) {
			p := filepath.Join(h.dir, "cfg")
			os.WriteFile(p, []byte("Host *\n  User x\n  IdentityFile "+encrypted(t, h)+"\n"), 0o600)
			return Config{Command: "true", SSHConfig: p}, h.env()
		}, []string{"enc_key", "cfg line 3", "encrypted"}},
		{"unwritable known_hosts with accept-new", func(t *testing.T, h *testHome) (Config, Env) {
			blocker := filepath.Join(h.dir, "file")
			os.WriteFile(blocker, nil, 0o600)
			return Config{Command: "true", HostKey: HostKeyAcceptNew, KnownHosts: []string{blocker + "/known_hosts"}}, h.env()
		}, []string{"known_hosts", "cannot be written", "accept-new"}},
		{"bad policy", func(t *testing.T, h *testHome) (Config, Env) {
			return Config{Command: "true", HostKey: "maybe"}, h.env()
		}, []string{"maybe", "strict, accept-new or off"}},
		{"unknown -o", func(t *testing.T, h *testHome) (Config, Env) {
			return Config{Command: "true", Options: map[string]string{"Compression": "yes"}}, h.env()
		}, []string{"Compression", "not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHome(t, "")
			c, env := tt.setup(t, h)
			newFails(t, c, env, tt.want...)
		})
	}
}

func TestPassphraseAskedOnceForEncryptedKey(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	h := newHome(t, fleet.KnownHostsLine())
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	p := filepath.Join(h.dir, "enc")
	writeKey(t, p, priv, "s3cret")
	pub, _ := ssh.NewPublicKey(priv.Public())
	fleet2 := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	os.WriteFile(filepath.Join(h.dir, ".ssh", "known_hosts"), []byte(fleet2.KnownHostsLine()), 0o600)
	asked := 0
	env := h.env()
	env.Prompt = func(file string) ([]byte, error) {
		asked++
		if file != p {
			t.Errorf("asked for %s, want %s", file, p)
		}
		return []byte("s3cret"), nil
	}
	j := newJob(t, Config{Command: "echo hi", Identities: []string{p}, NoDefaultIdentities: true}, env)
	targets := make([]target.Target, 20)
	for i := range targets {
		targets[i] = at(i, fleet2.Port)
	}
	for _, r := range run(t, j, targets, 20) {
		if r.Status != job.Up {
			t.Errorf("%s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
	if asked != 1 {
		t.Errorf("passphrase asked %d times, want once", asked)
	}
}

func TestSSHConfigHostSettings(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(priv.Public())
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	h := newHome(t, fleet.KnownHostsLine())
	idFile := filepath.Join(h.dir, "web_key")
	writeKey(t, idFile, priv, "")
	conf := fmt.Sprintf(`# web hosts map onto the fleet
Host web*
  HostName 127.2.9.7
  Port %d
  User deploy
  IdentityFile ~/web_key
  ConnectTimeout 600

Host db1
  HostName 127.2.9.200
  Port %d
`, fleet.Port, fleet.Port)
	os.WriteFile(filepath.Join(h.dir, ".ssh", "config"), []byte(conf), 0o600)
	j := newJob(t, Config{Command: "hostname"}, h.env())

	hs := settingsOf(t, j, target.Target{Host: "web01"})
	if hs.hostname != "127.2.9.7" || hs.port != fleet.Port || hs.user != "deploy" || hs.connect != 600*time.Second ||
		len(hs.identities) != 1 || hs.identities[0] != idFile {
		t.Errorf("web01 settings %+v", hs)
	}
	if r := j.Run(context.Background(), target.Target{Host: "web01"}); r.Status != job.Up || string(r.Stdout) != "127.2.9.7\n" {
		t.Errorf("web01 via config: %s/%s %q stdout %q", r.Status, r.Class, r.Error, r.Stdout)
	}
	// db1 has no IdentityFile: the default key, which the fleet refuses.
	if r := j.Run(context.Background(), target.Target{Host: "db1"}); r.Class != job.ClassAuth {
		t.Errorf("db1 with the default key: %s/%s %q, want auth", r.Status, r.Class, r.Error)
	}
	// -l, -p and -o beat the config; the target's own port beats all.
	j2 := newJob(t, Config{Command: "hostname", User: "ops", Port: 2222, Options: map[string]string{"ConnectTimeout": "5"}}, h.env())
	hs = settingsOf(t, j2, target.Target{Host: "web01"})
	if hs.user != "ops" || hs.port != 2222 || hs.connect != 5*time.Second {
		t.Errorf("with -l -p -o: %+v", hs)
	}
	if hs = settingsOf(t, j2, target.Target{Host: "web01", Port: 2022}); hs.port != 2022 {
		t.Errorf("target port: %d, want 2022", hs.port)
	}
	// The target's own user (user@host) beats -l and the config.
	if hs = settingsOf(t, j2, target.Target{Host: "web01", User: "root"}); hs.user != "root" || hs.port != 2222 {
		t.Errorf("target user: %q port %d, want root, 2222", hs.user, hs.port)
	}
}

func TestConfigRoundTripsThroughRegistry(t *testing.T) {
	t.Parallel()
	c := Config{Command: "uptime", User: "u", Port: 2200, HostKey: HostKeyAcceptNew, Stdin: []byte{0, 1, 2},
		Options: map[string]string{"ConnectTimeout": "3"}, MaxHandshakes: 64, CommandTimeout: time.Second}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b) != string(b2) {
		t.Errorf("round trip:\n%s\n%s", b, b2)
	}
	if strings.Contains(strings.ToLower(string(b)), "pass") {
		t.Errorf("config JSON mentions a passphrase: %s", b)
	}
	// The registry builds the job (here: fails for want of keys in HOME, by name).
	if _, err := job.New(Kind, json.RawMessage(`{"command":""}`)); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Errorf("job.New with an empty command: %v", err)
	}
	if _, err := job.New(Kind, json.RawMessage(`{"command":1}`)); err == nil {
		t.Errorf("job.New with bad JSON: no error")
	}
}

func TestParseOption(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, key, val string
		err          bool
	}{
		{"User=bob", "User", "bob", false},
		{"Port 2222", "Port", "2222", false},
		{"StrictHostKeyChecking=accept-new", "StrictHostKeyChecking", "accept-new", false},
		{"Port=99999", "", "", true},
		{"StrictHostKeyChecking=maybe", "", "", true},
		{"Compression=yes", "", "", true},
		{"User=", "", "", true},
		{"=x", "", "", true},
	}
	for _, tt := range tests {
		k, v, err := ParseOption(tt.in)
		if (err != nil) != tt.err || (!tt.err && (k != tt.key || v != tt.val)) {
			t.Errorf("ParseOption(%q) = %q, %q, %v", tt.in, k, v, err)
		}
	}
}

func TestKexList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		first string
		n     int
		err   bool
	}{
		{"mlkem768x25519-sha256", "mlkem768x25519-sha256", 1, false},
		{"curve25519-sha256,ecdh-sha2-nistp256", "curve25519-sha256", 2, false},
		{"^mlkem768x25519-sha256", "mlkem768x25519-sha256", len(DefaultKex), false},
		{"-mlkem768x25519-sha256", "curve25519-sha256", len(DefaultKex) - 1, false},
		{"+diffie-hellman-group16-sha512", "curve25519-sha256", len(DefaultKex) + 1, false},
		{"sntrup761x25519-sha512@openssh.com", "", 0, true},
	}
	for _, tt := range tests {
		got, err := kexList(tt.in)
		if (err != nil) != tt.err || (!tt.err && (got[0] != tt.first || len(got) != tt.n)) {
			t.Errorf("kexList(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestConfigFileSweepSettings(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	h := newHome(t, "")
	kh := filepath.Join(h.dir, "fleet_known_hosts")
	os.WriteFile(kh, []byte(fleet.KnownHostsLine()), 0o600)
	conf := fmt.Sprintf("Host *\n  UserKnownHostsFile %s\n  KexAlgorithms mlkem768x25519-sha256\n", kh)
	os.WriteFile(filepath.Join(h.dir, ".ssh", "config"), []byte(conf), 0o600)
	j := newJob(t, Config{Command: "echo hi"}, h.env())
	if kex := settingsOf(t, j, at(1, fleet.Port)).kex; len(kex) != 1 || kex[0] != "mlkem768x25519-sha256" {
		t.Errorf("kex %v, want the config's", kex)
	}
	if r := j.Run(context.Background(), at(1, fleet.Port)); r.Status != job.Up {
		t.Errorf("with the config's known_hosts: %s/%s %q", r.Status, r.Class, r.Error)
	}
}

func TestHostKeyOffWarns(t *testing.T) {
	t.Parallel()
	h := newHome(t, "")
	var warn strings.Builder
	env := h.env()
	env.Warn = &warn
	j := newJob(t, Config{Command: "true", HostKey: HostKeyOff}, env)
	if !strings.Contains(warn.String(), "WARNING") || !strings.Contains(warn.String(), "host key checking is off") {
		t.Errorf("--host-key off warned %q", warn.String())
	}
	hs := settingsOf(t, j, target.Target{Host: "127.0.0.1"})
	if err := hs.hostKeyCallback()("127.0.0.1:22", nil, h.pub); err != nil {
		t.Errorf("off: check = %v, want nil", err)
	}
}

// newFails checks that New refuses c with an error containing each of want.
func newFails(t *testing.T, c Config, env Env, want ...string) {
	t.Helper()
	j, err := New(c, env)
	if err == nil {
		j.Close()
		t.Fatalf("New: no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}
