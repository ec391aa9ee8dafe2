package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// sshd is a real OpenSSH server started for one test, with its own config,
// host key and authorized_keys, on a loopback port.
type sshd struct {
	port    int
	hostKey ssh.PublicKey
	dir     string
}

func needSSHD(t *testing.T) { t.Helper(); lab.NeedSSHD(t) }

// startSSHD runs sshd -D -e with a config trusting keys; extra lines are
// appended to its config.
func startSSHD(t *testing.T, keys []ssh.PublicKey, extra ...string) *sshd {
	t.Helper()
	return startSSHDCert(t, keys, nil, nil, extra...)
}

// startSSHDCert is startSSHD whose host key also has a certificate, which
// ca signs for principals, when ca is set.
func startSSHDCert(t *testing.T, keys []ssh.PublicKey, ca ssh.Signer, principals []string, extra ...string) *sshd {
	t.Helper()
	d := lab.StartSSHD(t, lab.SSHDOptions{Keys: keys, CA: ca, Principals: principals, Extra: extra})
	return &sshd{port: d.Port, hostKey: d.HostKey, dir: d.Dir}
}

func (s *sshd) knownHosts() string {
	return fmt.Sprintf("[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(s.hostKey))
}

func lo(port int) target.Target {
	return target.Target{Host: "127.0.0.1", Port: uint16(port)}
}

func rootEnv(h *testHome) Env {
	e := h.env()
	e.User = "root"
	return e
}

func TestOpenSSHKeyAuthExitCodesOutput(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(d.knownHosts()), 0o600)
	tests := []struct {
		name, cmd string
		max       int
		status    job.Status
		class     job.Class
		code      int
		stdout    string
		trunc     bool
	}{
		{"echo", "echo hello world", 0, job.Up, job.ClassNone, 0, "hello world\n", false},
		{"exit 7", "echo partial; exit 7", 0, job.Down, job.ClassExit, 7, "partial\n", false},
		{"stderr", "echo oops >&2", 0, job.Up, job.ClassNone, 0, "", false},
		{"large output", "head -c 3000000 /dev/zero | tr '\\0' x", 1 << 20, job.Up, job.ClassNone, 0, strings.Repeat("x", 1<<20), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t, Config{Command: tt.cmd, MaxOutput: tt.max}, rootEnv(home))
			r := j.Run(context.Background(), lo(d.port))
			if r.Status != tt.status || r.Class != tt.class {
				t.Fatalf("%s/%s %q, want %s/%s", r.Status, r.Class, r.Error, tt.status, tt.class)
			}
			if r.ExitCode == nil || *r.ExitCode != tt.code {
				t.Errorf("exit code %v, want %d", r.ExitCode, tt.code)
			}
			if string(r.Stdout) != tt.stdout {
				t.Errorf("stdout %d bytes %.40q, want %d bytes %.40q", len(r.Stdout), r.Stdout, len(tt.stdout), tt.stdout)
			}
			if r.Truncated != tt.trunc {
				t.Errorf("truncated %v, want %v", r.Truncated, tt.trunc)
			}
			if tt.name == "stderr" && string(r.Stderr) != "oops\n" {
				t.Errorf("stderr %q, want %q", r.Stderr, "oops\n")
			}
		})
	}
}

func TestOpenSSHCommandTimeout(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(d.knownHosts()), 0o600)
	// "sleep 30" would end up, not timed out, if the timeout did not cut
	// it: the class says the cut came, however long it took.
	j := newJob(t, Config{Command: "sleep 30", CommandTimeout: 500 * time.Millisecond}, rootEnv(home))
	r := j.Run(context.Background(), lo(d.port))
	if r.Status != job.Down || r.Class != job.ClassTimeout {
		t.Errorf("%s/%s %q, want down/timeout", r.Status, r.Class, r.Error)
	}
	// The same through the engine's deadline (ctx), once the command runs
	// (it says so in a file: sshd runs it here, as root): a deadline at a
	// fixed moment could pass during the handshake on a loaded machine.
	flag := filepath.Join(t.TempDir(), "running")
	j2 := newJob(t, Config{Command: fmt.Sprintf("touch %s; sleep 30", flag)}, rootEnv(home))
	ctx := testwait.ExpireOn(testwait.FileAppears(flag))
	if r := j2.Run(ctx, lo(d.port)); r.Class != job.ClassTimeout || !strings.Contains(r.Error, "command") {
		t.Errorf("ctx deadline: %s/%s %q, want a command timeout", r.Status, r.Class, r.Error)
	}
}

func TestOpenSSHAgentAuth(t *testing.T) {
	t.Parallel()
	needSSHD(t)
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skip("no ssh-agent (apt-get install openssh-client)")
	}
	keyHome := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{keyHome.pub})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
	testwait.For(t, "ssh-agent's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	add := exec.Command("ssh-add", filepath.Join(keyHome.dir, ".ssh", "id_ed25519"))
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	// A home without any key: only the agent can authenticate.
	empty := t.TempDir()
	os.MkdirAll(filepath.Join(empty, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(empty, ".ssh", "known_hosts"), []byte(d.knownHosts()), 0o600)
	env := Env{Home: empty, User: "root", AuthSock: sock}
	j := newJob(t, Config{Command: "echo via agent"}, env)
	if r := j.Run(context.Background(), lo(d.port)); r.Status != job.Up || string(r.Stdout) != "via agent\n" {
		t.Fatalf("agent auth: %s/%s %q stdout %q", r.Status, r.Class, r.Error, r.Stdout)
	}
	// Without the agent there is no key at all: refused before the sweep.
	if _, err := New(Config{Command: "true", NoAgent: true}, env); err == nil || !strings.Contains(err.Error(), "no authentication method") {
		t.Errorf("no agent, no key: err %v, want no authentication method", err)
	}
	// A key the server does not trust: auth.
	other := newHome(t, d.knownHosts())
	j2 := newJob(t, Config{Command: "true"}, rootEnv(other))
	if r := j2.Run(context.Background(), lo(d.port)); r.Status != job.Error || r.Class != job.ClassAuth {
		t.Errorf("untrusted key: %s/%s %q, want error/auth", r.Status, r.Class, r.Error)
	}
}

func TestOpenSSHKnownHosts(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")

	strict := newJob(t, Config{Command: "true"}, rootEnv(home))
	if r := strict.Run(context.Background(), lo(d.port)); r.Class != job.ClassHostKey {
		t.Fatalf("strict, unknown: %s/%s %q, want hostkey", r.Status, r.Class, r.Error)
	}
	accept := newJob(t, Config{Command: "true", HostKey: HostKeyAcceptNew}, rootEnv(home))
	if r := accept.Run(context.Background(), lo(d.port)); r.Status != job.Up {
		t.Fatalf("accept-new: %s/%s %q, want up", r.Status, r.Class, r.Error)
	}
	data, _ := os.ReadFile(kh)
	if !strings.Contains(string(data), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(d.hostKey)))) {
		t.Fatalf("accept-new did not record the key:\n%s", data)
	}
	// OpenSSH's own client accepts what fanout wrote.
	if _, err := exec.LookPath("ssh"); err == nil {
		out, err := exec.Command("ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+kh, "-i", filepath.Join(home.dir, ".ssh", "id_ed25519"),
			"-p", fmt.Sprint(d.port), "root@127.0.0.1", "echo ok").CombinedOutput()
		if err != nil || string(out) != "ok\n" {
			t.Errorf("ssh with the known_hosts fanout wrote: %v: %s", err, out)
		}
	}
	strict2 := newJob(t, Config{Command: "true"}, rootEnv(home))
	if r := strict2.Run(context.Background(), lo(d.port)); r.Status != job.Up {
		t.Fatalf("strict after accept-new: %s/%s %q", r.Status, r.Class, r.Error)
	}
	// Another server key on the same address: changed, whatever the policy.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", d.port, ssh.MarshalAuthorizedKey(otherPub))), 0o600)
	for _, policy := range []string{HostKeyStrict, HostKeyAcceptNew} {
		j := newJob(t, Config{Command: "true", HostKey: policy}, rootEnv(home))
		if r := j.Run(context.Background(), lo(d.port)); r.Class != job.ClassHostKey || !strings.Contains(r.Error, "CHANGED") {
			t.Errorf("%s, changed key: %s/%s %q, want hostkey CHANGED", policy, r.Status, r.Class, r.Error)
		}
	}
	off := newJob(t, Config{Command: "true", HostKey: HostKeyOff}, rootEnv(home))
	if r := off.Run(context.Background(), lo(d.port)); r.Status != job.Up {
		t.Errorf("off, changed key: %s/%s %q, want up", r.Status, r.Class, r.Error)
	}
}

// A host certificate signed by a CA that an @cert-authority line trusts
// for the host is accepted with no line for the host itself, as OpenSSH
// does; one the CA did not sign for that name, one another CA signed, and
// one whose CA is @revoked are hostkey errors; a server whose CA no line
// trusts for it is checked by its plain key. accept-new writes nothing for
// a certified host.
func TestOpenSSHCertAuthority(t *testing.T) {
	t.Parallel()
	newCA := func() (ssh.Signer, string) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := ssh.NewSignerFromKey(priv)
		return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	}
	ca, caLine := newCA()
	_, otherLine := newCA()
	home := newHome(t, "")
	good := startSSHDCert(t, []ssh.PublicKey{home.pub}, ca, []string{"127.0.0.1"})
	wrongName := startSSHDCert(t, []ssh.PublicKey{home.pub}, ca, []string{"db1.example.com"})
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	run := func(policy, known string, d *sshd) job.Result {
		t.Helper()
		if err := os.WriteFile(kh, []byte(known), 0o600); err != nil {
			t.Fatal(err)
		}
		return newJob(t, Config{Command: "echo certified", HostKey: policy}, rootEnv(home)).Run(context.Background(), lo(d.port))
	}
	// x/crypto matches the port exactly (a pattern without one is port 22),
	// where OpenSSH's "*" matches "[host]:port" too.
	at := func(d *sshd, host string) string { return fmt.Sprintf("[%s]:%d", host, d.port) }
	for _, known := range []string{
		"@cert-authority " + at(good, "127.0.0.1") + " " + caLine + "\n",
		"# the CA, with another CA's line first\n@cert-authority " + at(good, "127.0.0.1") + " " + otherLine + "\n@cert-authority db1," + at(good, "127.0.0.*") + " " + caLine + "\n",
	} {
		if r := run(HostKeyStrict, known, good); r.Status != job.Up || string(r.Stdout) != "certified\n" {
			t.Errorf("strict, %q: %s/%s %q, want up", known, r.Status, r.Class, r.Error)
		}
	}
	for _, tt := range []struct{ name, known, want string }{
		{"another CA", "@cert-authority " + at(good, "127.0.0.1") + " " + otherLine + "\n", "unknown"},
		{"the CA for other hosts", "@cert-authority db*.example.com," + at(good, "127.0.0.2") + " " + caLine + "\n", "unknown"},
		{"CA revoked", "@cert-authority " + at(good, "127.0.0.1") + " " + caLine + "\n@revoked * " + caLine + "\n", "not accepted"},
	} {
		if r := run(HostKeyStrict, tt.known, good); r.Class != job.ClassHostKey || !strings.Contains(r.Error, tt.want) {
			t.Errorf("strict, %s: %s/%s %q, want hostkey %q", tt.name, r.Status, r.Class, r.Error, tt.want)
		}
	}
	if r := run(HostKeyStrict, "@cert-authority "+at(wrongName, "127.0.0.1")+" "+caLine+"\n", wrongName); r.Class != job.ClassHostKey || !strings.Contains(r.Error, "principal") {
		t.Errorf("certificate for another name: %s/%s %q, want hostkey naming the principal", r.Status, r.Class, r.Error)
	}
	// No CA for it: the plain key decides, as with any server.
	plain := fmt.Sprintf("@cert-authority %s %s\n%s", at(good, "127.0.0.1"), otherLine, good.knownHosts())
	if r := run(HostKeyStrict, plain, good); r.Status != job.Up {
		t.Errorf("plain key known, CA not: %s/%s %q, want up", r.Status, r.Class, r.Error)
	}
	known := "@cert-authority " + at(good, "127.0.0.1") + " " + caLine + "\n"
	if r := run(HostKeyAcceptNew, known, good); r.Status != job.Up {
		t.Errorf("accept-new, certified: %s/%s %q, want up", r.Status, r.Class, r.Error)
	}
	if data, _ := os.ReadFile(kh); string(data) != known {
		t.Errorf("accept-new wrote for a certified host:\n%s", data)
	}
	// OpenSSH's client agrees on the first and the revoked case.
	if _, err := exec.LookPath("ssh"); err == nil {
		for known, ok := range map[string]bool{
			known:                                 true,
			known + "@revoked * " + caLine + "\n": false,
		} {
			os.WriteFile(kh, []byte(known), 0o600)
			out, err := exec.Command("ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
				"-o", "UserKnownHostsFile="+kh, "-i", filepath.Join(home.dir, ".ssh", "id_ed25519"),
				"-p", fmt.Sprint(good.port), "root@127.0.0.1", "echo ok").CombinedOutput()
			if (err == nil) != ok {
				t.Errorf("ssh with %q: %v: %s", known, err, out)
			}
		}
	}
}

func TestOpenSSHProxyJump(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	bastion := startSSHD(t, []ssh.PublicKey{home.pub})
	inner := startSSHD(t, []ssh.PublicKey{home.pub})
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(bastion.knownHosts()+inner.knownHosts()), 0o600)
	// The jump comes from the ssh config, as users write it.
	conf := fmt.Sprintf("Host inner\n  HostName 127.0.0.1\n  Port %d\n  ProxyJump root@127.0.0.1:%d\n", inner.port, bastion.port)
	os.WriteFile(filepath.Join(home.dir, ".ssh", "config"), []byte(conf), 0o600)
	j := newJob(t, Config{Command: "echo $SSH_CONNECTION"}, rootEnv(home))
	targets := []target.Target{{Index: 0, Host: "inner"}, {Index: 1, Host: "inner"}, {Index: 2, Host: "inner"}}
	for _, r := range run(t, j, targets, 3) {
		if r.Status != job.Up || !strings.HasSuffix(strings.TrimSpace(string(r.Stdout)), fmt.Sprint(inner.port)) {
			t.Errorf("through the bastion: %s/%s %q stdout %q", r.Status, r.Class, r.Error, r.Stdout)
		}
	}
	// A dead bastion fails the target, naming the jump.
	dead := newJob(t, Config{Command: "true", ProxyJump: fmt.Sprintf("root@127.0.0.1:%d", closedPort(t))}, rootEnv(home))
	r := dead.Run(context.Background(), target.Target{Host: "inner"})
	if r.Status == job.Up || !strings.Contains(r.Error, "ProxyJump") {
		t.Errorf("dead bastion: %s/%s %q, want a failure naming ProxyJump", r.Status, r.Class, r.Error)
	}
}

// A server that asks for keepalive replies (ClientAliveInterval) drops a
// client that does not answer: requests are answered while a command runs,
// without a goroutine waiting on them.
func TestOpenSSHKeepalivesAnsweredDuringCommand(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub}, "ClientAliveInterval 1", "ClientAliveCountMax 1")
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(d.knownHosts()), 0o600)
	j := newJob(t, Config{Command: "sleep 4; echo done"}, rootEnv(home))
	r := j.Run(context.Background(), lo(d.port))
	if r.Status != job.Up || string(r.Stdout) != "done\n" {
		t.Fatalf("%s/%s %q stdout %q, want up with \"done\\n\"", r.Status, r.Class, r.Error, r.Stdout)
	}
}

// Megabytes on both streams, interleaved, more than a channel window (2 MB)
// on each: neither stream may stall the other, and each keeps its bound.
func TestOpenSSHLargeInterleavedStreams(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	os.WriteFile(filepath.Join(home.dir, ".ssh", "known_hosts"), []byte(d.knownHosts()), 0o600)
	cmd := `for i in 1 2 3 4 5; do head -c 1000000 /dev/zero | tr '\0' o; head -c 1000000 /dev/zero | tr '\0' e >&2; done; exit 3`
	j := newJob(t, Config{Command: cmd, MaxOutput: 64 << 10, CommandTimeout: 20 * time.Second}, rootEnv(home))
	r := j.Run(context.Background(), lo(d.port))
	if r.Class != job.ClassExit || r.ExitCode == nil || *r.ExitCode != 3 {
		t.Fatalf("%s/%s %q, want exit status 3", r.Status, r.Class, r.Error)
	}
	if string(r.Stdout) != strings.Repeat("o", 64<<10) || string(r.Stderr) != strings.Repeat("e", 64<<10) || !r.Truncated {
		t.Errorf("stdout %d bytes, stderr %d bytes, truncated %v; want 64 KiB of o, 64 KiB of e, truncated",
			len(r.Stdout), len(r.Stderr), r.Truncated)
	}
}
