package lab

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialFleet logs into the fleet host at addr with key.
func dialFleet(t *testing.T, f *Fleet, host string, key ssh.Signer, want ssh.PublicKey) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", f.Addr(host), &ssh.ClientConfig{
		User: "lab", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(want), Timeout: 5 * time.Second,
	})
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSSHFleetCommands(t *testing.T) {
	t.Parallel()
	f := StartSSHFleetT(t, SSHFleetOptions{})
	key := newSigner(t)
	tests := []struct {
		host, cmd, stdin string
		stdout, stderr   string
		code             int
	}{
		{"127.2.3.4", "echo hello world", "", "hello world\n", "", 0},
		{"127.2.3.5", "echo 'quoted'", "", "quoted\n", "", 0},
		{"127.2.3.6", "hostname", "", "127.2.3.6\n", "", 0},
		{"127.2.3.7", "exit 42", "", "", "", 42},
		{"127.2.3.8", "stderr oops", "", "", "oops\n", 0},
		{"127.2.3.9", "cat", "piped\n", "piped\n", "", 0},
		{"127.2.3.10", "bytes 130", "", strings.Repeat("x", 63) + "\n" + strings.Repeat("x", 63) + "\n" + "x\n", "", 0},
		{"127.2.3.11", "sleep 0.05", "", "", "", 0},
		{"127.2.3.12", "frobnicate", "", "", "lab: frobnicate: command not found\n", 127},
	}
	for _, tt := range tests {
		c, err := dialFleet(t, f, tt.host, key, f.HostKey)
		if err != nil {
			t.Fatalf("%s: %v", tt.host, err)
		}
		s, _ := c.NewSession()
		var out, errb bytes.Buffer
		s.Stdout, s.Stderr, s.Stdin = &out, &errb, strings.NewReader(tt.stdin)
		err = s.Run(tt.cmd)
		code := 0
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitStatus()
		} else if err != nil {
			t.Errorf("%s %q: %v", tt.host, tt.cmd, err)
		}
		if out.String() != tt.stdout || errb.String() != tt.stderr || code != tt.code {
			t.Errorf("%s %q: stdout %q stderr %q exit %d; want %q %q %d", tt.host, tt.cmd, out.String(), errb.String(), code, tt.stdout, tt.stderr, tt.code)
		}
		c.Close()
	}
	if got := f.Sessions.Load(); got != int64(len(tests)) {
		t.Errorf("Sessions = %d, want %d", got, len(tests))
	}
}

func TestSSHFleetFaults(t *testing.T) {
	t.Parallel()
	allowed := newSigner(t)
	f := StartSSHFleetT(t, SSHFleetOptions{
		AuthorizedKeys: []ssh.PublicKey{allowed.PublicKey()},
		HandshakeDelay: func(h netip.Addr) time.Duration {
			if h == netip.MustParseAddr("127.2.4.1") {
				return 300 * time.Millisecond
			}
			return 0
		},
		AuthFail:     func(h netip.Addr) bool { return h == netip.MustParseAddr("127.2.4.2") },
		WrongHostKey: func(h netip.Addr) bool { return h == netip.MustParseAddr("127.2.4.3") },
	})
	begin := time.Now()
	c, err := dialFleet(t, f, "127.2.4.1", allowed, f.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if el := time.Since(begin); el < 300*time.Millisecond {
		t.Errorf("delayed host answered after %v, want >= 300ms", el)
	}
	if _, err := dialFleet(t, f, "127.2.4.2", allowed, f.HostKey); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("auth-fail host: %v", err)
	}
	if _, err := dialFleet(t, f, "127.2.4.4", newSigner(t), f.HostKey); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("unauthorized key: %v", err)
	}
	if _, err := dialFleet(t, f, "127.2.4.3", allowed, f.HostKey); err == nil {
		t.Errorf("wrong-key host accepted with the honest key")
	}
	if c, err := dialFleet(t, f, "127.2.4.3", allowed, f.WrongKey); err != nil {
		t.Errorf("wrong-key host with its own key: %v", err)
	} else {
		c.Close()
	}
	// Close ends every open connection.
	c, err = dialFleet(t, f, "127.2.4.5", allowed, f.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := c.Wait(); err == nil {
		t.Log("connection ended cleanly")
	}
	if f.Active() != 0 {
		t.Errorf("Active = %d after Close", f.Active())
	}
	if _, err := net.DialTimeout("tcp", f.Addr("127.2.4.6"), time.Second); err == nil {
		t.Errorf("fleet still accepts after Close")
	}
}
