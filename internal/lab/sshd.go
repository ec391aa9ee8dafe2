package lab

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/testwait"
)

// SSHDPath is where Debian's openssh-server puts sshd.
const SSHDPath = "/usr/sbin/sshd"

// NeedSSHD skips the test where a real sshd cannot run: not root (sshd
// checks its own files and users; CI runs as root), or not installed.
func NeedSSHD(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("interop with OpenSSH needs root (sshd checks its own files and users); CI runs as root")
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skip("no " + SSHDPath + " (apt-get install openssh-server)")
	}
}

// SSHD is a real OpenSSH server started for one test, with its own config,
// host key and authorized_keys, on a loopback port.
type SSHD struct {
	Port    int
	HostKey ssh.PublicKey
	Dir     string // its config, keys and pid file
}

// SSHDOptions say what a test's sshd trusts and how it is configured.
type SSHDOptions struct {
	Keys       []ssh.PublicKey // authorized client keys
	CA         ssh.Signer      // when set, signs a host certificate for Principals
	Principals []string
	Extra      []string // lines appended to sshd_config
}

// StartSSHD runs sshd -D -e on a free port of 127.0.0.1 until the test
// ends (its log is printed if the test failed), and waits until it listens.
func StartSSHD(t testing.TB, o SSHDOptions) *SSHD {
	t.Helper()
	NeedSSHD(t)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation dir
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host_ed25519"), pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, _ := ssh.NewPublicKey(priv.Public())
	extra := o.Extra
	if o.CA != nil {
		cert := &ssh.Certificate{Key: hostPub, CertType: ssh.HostCert, KeyId: "test host",
			ValidPrincipals: o.Principals, ValidBefore: ssh.CertTimeInfinity}
		if err := cert.SignCert(rand.Reader, o.CA); err != nil {
			t.Fatal(err)
		}
		cf := filepath.Join(dir, "host_ed25519-cert.pub")
		if err := os.WriteFile(cf, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = append(extra[:len(extra):len(extra)], "HostCertificate "+cf)
	}
	var ak bytes.Buffer
	for _, k := range o.Keys {
		ak.Write(ssh.MarshalAuthorizedKey(k))
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ak.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s/host_ed25519
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxStartups 200
MaxSessions 100
LogLevel ERROR
%s
`, port, dir, dir, dir, strings.Join(extra, "\n"))
	cf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", cf)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	testwait.For(t, fmt.Sprintf("sshd to listen on %d", port), func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &SSHD{Port: port, HostKey: hostPub, Dir: dir}
}

// KnownHosts is a known_hosts line for the server.
func (s *SSHD) KnownHosts() string {
	return fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, ssh.MarshalAuthorizedKey(s.HostKey))
}
