package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
)

// An IdentityFile named with per-host tokens (%h, %r) is expanded for each
// host and its key used for that host only: the fleet trusts one key, held
// in the file of host 1 only, so host 1 is up and host 2 fails auth.
func TestIdentityFilePerHostTokens(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(priv.Public())
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	h := newHome(t, fleet.KnownHostsLine())
	os.MkdirAll(filepath.Join(h.dir, "keys"), 0o700)
	writeKey(t, filepath.Join(h.dir, "keys", host(1).String()+"-ops"), priv, "")
	os.WriteFile(filepath.Join(h.dir, ".ssh", "config"), []byte(fmt.Sprintf("Host *\n  User ops\n  Port %d\n  IdentityFile ~/keys/%%h-%%r\n  IdentitiesOnly yes\n", fleet.Port)), 0o600)
	j := newJob(t, Config{Command: "echo hi", NoAgent: true}, h.env())
	if r := j.Run(context.Background(), at(1, 0)); r.Status != job.Up {
		t.Errorf("host 1, with its key file: %s/%s %q", r.Status, r.Class, r.Error)
	}
	if r := j.Run(context.Background(), at(2, 0)); r.Status == job.Up || r.Class != job.ClassAuth {
		t.Errorf("host 2, whose file does not exist: %s/%s %q, want an auth failure", r.Status, r.Class, r.Error)
	}
}

// The default user and ~ come from the passwd entry, not $USER and $HOME,
// as OpenSSH takes them.
func TestDefaultEnvFromPasswd(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Skip("no passwd entry:", err)
	}
	t.Setenv("HOME", "/nonexistent-home")
	t.Setenv("USER", "not-"+u.Username)
	t.Setenv("LOGNAME", "not-"+u.Username)
	env := DefaultEnv()
	if env.Home != u.HomeDir || env.User != u.Username || env.UID != u.Uid {
		t.Errorf("DefaultEnv: home %q user %q uid %q; want %q %q %q from the passwd entry", env.Home, env.User, env.UID, u.HomeDir, u.Username, u.Uid)
	}
}
