package cli_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh/agent"

	"github.com/fanout/fanout/internal/testwait"
)

// countingAgent serves an ssh-agent holding one key on a unix socket and
// counts the connections made to it.
func countingAgent(t *testing.T) (sock string, conns *atomic.Int64) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := agent.NewKeyring()
	if err := keys.Add(agent.AddedKey{PrivateKey: priv, Comment: "counted"}); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			conns.Add(1)
			go func() { defer c.Close(); _ = agent.ServeAgent(keys, c) }()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return sock, conns
}

// Submitting an ssh sweep builds no ssh job (the workers log in with their
// own keys: the submitter's agent is never opened, no passphrase asked),
// and Submit takes the plan's count: the targets are not parsed again, and
// user@host:port targets, which ssh takes, are submitted (they were refused
// by Submit).
func TestClusterSubmitSSHBuildsNoJob(t *testing.T) {
	t.Parallel()
	url, _ := testServer(t)
	sock, conns := countingAgent(t)
	// A home of its own: the submitter reads no ~/.ssh of the machine's.
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := startFanout(t, []string{"SSH_AUTH_SOCK=" + sock, "HOME=" + home},
		"ssh", "--server", url, "--detach", "--progress", "never",
		"root@127.0.0.2:2222", "127.0.0.3", "--", "true")
	if code := p.wait(t, testwait.Hang); code != 0 {
		t.Fatalf("ssh --server --detach: exit %d; stderr:\n%s", code, p.errText())
	}
	if !strings.Contains(p.errText(), ": 2 targets in 2 tasks of 1") {
		t.Errorf("submitted: want 2 targets in 2 tasks of 1:\n%s", p.errText())
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the agent was opened %d times for one submit, want never (no ssh job built here)", n)
	}
}
