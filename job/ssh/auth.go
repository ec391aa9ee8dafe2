package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
)

// defaultIdentities are tried, as by OpenSSH, when no IdentityFile is given.
var defaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// keyring holds every signer of the sweep, parsed once.
type keyring struct {
	agentConn net.Conn
	agent     []ssh.Signer          // the agent's keys, in its order
	files     map[string]ssh.Signer // identity file path -> signer
	explicit  []string              // -i files, in order
	defaults  []string              // default files that loaded
	common    []ssh.AuthMethod      // the methods of hosts without their own IdentityFile

	mu     sync.Mutex
	byList map[string][]ssh.AuthMethod // per distinct IdentityFile list of the config
}

func (k *keyring) close() {
	if k != nil && k.agentConn != nil {
		k.agentConn.Close()
	}
}

// loadKeyring connects to the agent and parses every identity file the sweep
// may use: -i files, every IdentityFile of the ssh config, else the default
// ones. A passphrase is asked once per encrypted file (the last good one is
// tried first), and never when the agent already holds that key.
func loadKeyring(c *Config, sc *sshconfig.Config, env Env) (*keyring, error) {
	k := &keyring{files: map[string]ssh.Signer{}}
	if env.AuthSock != "" && !c.NoAgent {
		conn, err := net.Dial("unix", env.AuthSock)
		if err != nil {
			fmt.Fprintf(env.Warn, "fanout: ssh-agent at %s: %v (continuing without it)\n", env.AuthSock, err)
		} else {
			signers, err := agent.NewClient(conn).Signers()
			if err != nil {
				conn.Close()
				return nil, fmt.Errorf("ssh-agent at %s: list keys: %w", env.AuthSock, err)
			}
			k.agentConn, k.agent = conn, signers
		}
	}
	inAgent := func(pub ssh.PublicKey) bool {
		if pub == nil {
			return false
		}
		for _, s := range k.agent {
			if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
				return true
			}
		}
		return false
	}
	var lastPass []byte
	load := func(path string, must bool, where string) error {
		if _, done := k.files[path]; done {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			if !must && os.IsNotExist(err) {
				return nil
			}
			return fmt.Errorf("identity file %s%s: %w", path, where, err)
		}
		s, err := ssh.ParsePrivateKey(data)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			if inAgent(missing.PublicKey) {
				return nil // the agent signs with it: no passphrase needed
			}
			if lastPass != nil {
				if s2, err2 := ssh.ParsePrivateKeyWithPassphrase(data, lastPass); err2 == nil {
					k.files[path] = s2
					return nil
				}
			}
			if env.Prompt == nil {
				return fmt.Errorf("identity file %s%s is encrypted and there is no terminal to ask its passphrase (load it with ssh-add, or run from a terminal)", path, where)
			}
			pass, perr := env.Prompt(path)
			if perr != nil {
				return fmt.Errorf("identity file %s%s is encrypted: %w", path, where, perr)
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(data, pass)
			if err != nil {
				return fmt.Errorf("identity file %s%s: %w", path, where, err)
			}
			lastPass = pass
		} else if err != nil {
			return fmt.Errorf("identity file %s%s: %w", path, where, err)
		}
		k.files[path] = s
		return nil
	}
	for _, p := range c.Identities {
		p = expandPath(p, env)
		if err := load(p, true, ""); err != nil {
			return nil, err
		}
		k.explicit = append(k.explicit, p)
	}
	for _, cv := range sc.AllValues("IdentityFile") {
		p := cv.Value
		if strings.Contains(p, "%") && strings.ContainsAny(p[strings.Index(p, "%")+1:], "hnrpCLlki") {
			continue // per-host tokens: loaded never; OpenSSH-only feature
		}
		where := ""
		if cv.Where != "" {
			where = " (" + cv.Where + ")"
		}
		// A missing file named by the config is skipped, as OpenSSH does.
		if err := load(expandPath(p, env), false, where); err != nil {
			return nil, err
		}
	}
	if !c.NoDefaultIdentities {
		for _, name := range defaultIdentities {
			p := env.Home + "/.ssh/" + name
			if err := load(p, false, ""); err != nil {
				// A default key is not asked for: OpenSSH skips it too when it cannot be used.
				fmt.Fprintf(env.Warn, "fanout: skipping %v\n", err)
				continue
			}
			if _, ok := k.files[p]; ok {
				k.defaults = append(k.defaults, p)
			}
		}
	}
	k.common = k.methods(nil, false)
	if len(k.common) == 0 && len(k.files) == 0 {
		tried := "no ssh-agent (SSH_AUTH_SOCK unset)"
		if env.AuthSock != "" && !c.NoAgent {
			tried = "the ssh-agent at " + env.AuthSock + " holds no key"
		}
		return nil, fmt.Errorf("ssh: no authentication method: %s, no -i identity file, and none of ~/.ssh/%s exists in %s",
			tried, strings.Join(defaultIdentities, ", ~/.ssh/"), env.Home)
	}
	return k, nil
}

// methods is the auth method for a host with the given IdentityFiles
// (nil: the common set). Agent keys come first, then files, without
// duplicates, as OpenSSH orders them.
func (k *keyring) methods(hostIDs []string, only bool) []ssh.AuthMethod {
	var signers []ssh.Signer
	seen := map[string]bool{}
	add := func(s ssh.Signer) {
		m := string(s.PublicKey().Marshal())
		if !seen[m] {
			seen[m] = true
			signers = append(signers, s)
		}
	}
	files := append([]string(nil), k.explicit...)
	files = append(files, hostIDs...)
	if len(files) == 0 {
		files = k.defaults
	}
	if only {
		// IdentitiesOnly: agent keys only when they are one of the files.
		want := map[string]bool{}
		for _, f := range files {
			if s, ok := k.files[f]; ok {
				want[string(s.PublicKey().Marshal())] = true
			} else if pub := readPub(f); pub != nil {
				want[string(pub.Marshal())] = true
			}
		}
		for _, s := range k.agent {
			if want[string(s.PublicKey().Marshal())] {
				add(s)
			}
		}
	} else {
		for _, s := range k.agent {
			add(s)
		}
	}
	for _, f := range files {
		if s, ok := k.files[f]; ok {
			add(s)
		}
	}
	if len(signers) == 0 {
		return nil
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}
}

// authFor is the auth methods of one host: the shared set unless its config
// names its own identity files.
func (k *keyring) authFor(hs *hostSettings) []ssh.AuthMethod {
	if len(hs.identities) == 0 && !hs.onlyIDs {
		return k.common
	}
	key := fmt.Sprint(hs.onlyIDs, hs.identities)
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.byList[key]
	if !ok {
		if k.byList == nil {
			k.byList = map[string][]ssh.AuthMethod{}
		}
		m = k.methods(hs.identities, hs.onlyIDs)
		k.byList[key] = m
	}
	return m
}

// readPub reads FILE.pub, for keys the agent holds.
func readPub(path string) ssh.PublicKey {
	data, err := os.ReadFile(path + ".pub")
	if err != nil {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil
	}
	return pub
}

// ttyPrompt asks for a key's passphrase on /dev/tty.
func ttyPrompt(file string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to ask its passphrase (load it with ssh-add): %w", err)
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return nil, errors.New("no terminal to ask its passphrase (load it with ssh-add)")
	}
	fmt.Fprintf(tty, "Enter passphrase for key '%s': ", file)
	pass, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	return pass, err
}

// explain adds to an authentication failure the identity files of hs that
// could not be read, as OpenSSH warns "Identity file F not accessible": with
// IdentitiesOnly yes, a missing file is often the whole story.
func (k *keyring) explain(hs *hostSettings, err error) error {
	if len(hs.identities) == 0 || classify(err) != job.ClassAuth {
		return err
	}
	var missing []string
	for _, f := range hs.identities {
		if _, ok := k.files[f]; ok {
			continue
		}
		if _, serr := os.Stat(f); serr != nil {
			why := serr.Error()
			var pe *fs.PathError
			if errors.As(serr, &pe) {
				why = pe.Err.Error()
			}
			missing = append(missing, fmt.Sprintf("identity file %s not accessible: %s", f, why))
		}
	}
	if len(missing) == 0 {
		return err
	}
	only := ""
	if hs.onlyIDs {
		only = "IdentitiesOnly yes, and "
	}
	return fmt.Errorf("%w (%s%s)", err, only, strings.Join(missing, "; "))
}
