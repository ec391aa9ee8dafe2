package ssh

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
	"github.com/fanout/fanout/target"
)

// hostSettings is what one target is dialled with: its ssh config
// resolved for it, as OpenSSH resolves it, under the job's flags.
type hostSettings struct {
	alias      string
	hostname   string // to dial and to check in known_hosts
	port       int
	user       string
	identities []string // from the config for this host (expanded)
	onlyIDs    bool
	jumps      []sshconfig.Jump // ProxyJump hops, first hop first
	via        []string         // for a bastion: the bastions on the way to it
	connect    time.Duration
	hashKnown  bool
	kex        []string
	keyAlias   string       // HostKeyAlias: the name known_hosts has the host under
	hostKeys   *hostkeys.DB // the known_hosts files and policy of this host
}

// poolKey names the kept connection hs is reached by (watch ssh): user,
// address and the hops on the way.
func (hs *hostSettings) poolKey() string {
	k := hs.user + "@" + hs.addr()
	for _, j := range hs.jumps {
		k += " " + j.String()
	}
	return k
}

func (hs *hostSettings) addr() string {
	return net.JoinHostPort(hs.hostname, strconv.Itoa(hs.port))
}

// knownName is the name hs's key is looked up under, as host:port
// (HostKeyAlias has no port, as in OpenSSH).
func (hs *hostSettings) knownName() string {
	if hs.keyAlias != "" {
		return net.JoinHostPort(hs.keyAlias, "22")
	}
	return hs.addr()
}

// hostKeyCallback checks hs's host key.
func (hs *hostSettings) hostKeyCallback() ssh.HostKeyCallback {
	cb := hs.hostKeys.Callback(hs.hashKnown)
	if hs.keyAlias == "" {
		return cb
	}
	name := hs.knownName()
	return func(_ string, remote net.Addr, key ssh.PublicKey) error { return cb(name, remote, key) }
}

// hostKeyAlgorithms is the host key algorithms to ask hs for.
func (hs *hostSettings) hostKeyAlgorithms() []string { return hs.hostKeys.Algorithms(hs.knownName()) }

// jumpSpec is hs's ProxyJump, as ssh -J takes it.
func jumpSpec(hops []sshconfig.Jump) string {
	s := make([]string, len(hops))
	for i, h := range hops {
		s[i] = h.String()
	}
	return strings.Join(s, ",")
}

// settings resolves t's settings: the target's port and user, then -p and
// -l, then -o, then the config files, then the defaults, as `ssh -l user
// -p port user@host:port` would.
func (j *Job) settings(t target.Target) (hostSettings, error) {
	hs, err := j.resolve(j.query(t))
	if err == nil && t.Host != "" && t.Addr.IsValid() {
		// A name with its address (an inventory's ansible_host): the
		// config is the name's, the address is where to connect, as
		// Ansible hands it to ssh.
		hs.hostname = t.Addr.String()
	}
	return hs, err
}

// query is what t is resolved for.
func (j *Job) query(t target.Target) sshconfig.Query {
	q := sshconfig.Query{Host: t.Name(), Port: j.cfg.Port, User: j.cfg.User}
	if t.Port != 0 {
		q.Port = int(t.Port)
	}
	if t.User != "" {
		q.User = t.User
	}
	return q
}

// resolve is settings for a query (a target, or a ProxyJump hop).
func (j *Job) resolve(q sshconfig.Query) (hostSettings, error) {
	r, err := j.conf.Resolve(q)
	if err != nil {
		return hostSettings{}, &configError{err}
	}
	hs := hostSettings{alias: r.Alias, hostname: r.HostName, port: r.Port, user: r.User,
		identities: r.IdentityFiles, onlyIDs: r.IdentitiesOnly, hashKnown: r.HashKnownHosts, keyAlias: r.HostKeyAlias}
	if r.ProxyCommand.Value != "" && j.cfg.ProxyJump == "" {
		return hs, &configError{fmt.Errorf("ssh config %s: ProxyCommand %q: fanout does not run proxy commands: refused for %s rather than connecting directly (use ProxyJump, or --jump)",
			r.ProxyCommand.Where, r.ProxyCommand.Value, q.Host)}
	}
	hs.jumps = r.Jumps
	if j.cfg.ProxyJump != "" {
		if hs.jumps, err = sshconfig.ParseJump(j.cfg.ProxyJump); err != nil {
			return hs, &configError{fmt.Errorf("ssh: --jump: %v", err)}
		}
	}
	hs.connect = j.cfg.ConnectTimeout
	if hs.connect == 0 {
		hs.connect = DefaultConnectTimeout
		if r.ConnectTimeout > 0 {
			hs.connect = r.ConnectTimeout
		}
	}
	hs.kex = DefaultKex
	if len(j.cfg.Kex) > 0 {
		hs.kex = j.cfg.Kex
	} else if v := r.KexAlgorithms.Value; v != "" {
		if hs.kex, err = sshconfig.Kex(v, DefaultKex); err != nil {
			return hs, &configError{fmt.Errorf("ssh config %s: %v", r.KexAlgorithms.Where, err)}
		}
	}
	if hs.hostKeys, err = j.hostKeysFor(r); err != nil {
		return hs, &knownHostsError{err}
	}
	j.hostIdentities(hs.identities, q.Host)
	return hs, nil
}

// hostIdentities loads the identity files of a host that the sweep did not
// load up front, their names having per-host tokens (%h, %r, %p, ...):
// unencrypted ones (a passphrase is never asked in the middle of a sweep;
// the agent signs for an encrypted one it holds), each once.
func (j *Job) hostIdentities(files []string, host string) {
	k := j.keys
	if k == nil || len(files) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range files {
		if _, ok := k.files[f]; ok || j.idTried[f] {
			continue
		}
		if j.idTried == nil {
			j.idTried = map[string]bool{}
		}
		j.idTried[f] = true
		data, err := os.ReadFile(f)
		if err != nil {
			if !os.IsNotExist(err) {
				fmt.Fprintf(j.env.Warn, "fanout: identity file %s (IdentityFile of %s): %v: skipped\n", f, host, err)
			}
			continue
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			if readPub(f) == nil {
				fmt.Fprintf(j.env.Warn, "fanout: identity file %s (IdentityFile of %s): %v: skipped (an encrypted key named per host is used through the agent only: ssh-add it)\n", f, host, err)
			}
			continue
		}
		k.files[f] = signer
	}
}

// configError is a target whose ssh config fanout cannot honour.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// knownHostsError is a known_hosts file that cannot be read (or, for
// accept-new, written).
type knownHostsError struct{ err error }

func (e *knownHostsError) Error() string { return e.err.Error() }
func (e *knownHostsError) Unwrap() error { return e.err }

// policy is the host-key policy of a resolved host, and where it came
// from: --host-key, else the config (-o first), else strict; never wider
// than Config.HostKeyAtLeast.
func (j *Job) policy(r *sshconfig.Resolved) (policy, where string) {
	switch {
	case j.cfg.HostKey != "":
		policy, where = j.cfg.HostKey, "--host-key "+j.cfg.HostKey
	case r.Policy != "":
		policy, where = r.Policy, r.StrictHostKeyChecking.Where
		if !strings.HasPrefix(where, "-o ") {
			where += ": StrictHostKeyChecking " + r.StrictHostKeyChecking.Value
		}
		if b := r.StrictHostKeyChecking.Block; b != "" {
			where += ", under " + b
		}
	default:
		policy = HostKeyStrict
	}
	if n := j.cfg.HostKeyAtLeast; n != "" && policyRank[policy] < policyRank[n] {
		policy, where = n, "the sweep's host-key policy "+n
	}
	return policy, where
}

// hostKeysFor is the known_hosts checker of a resolved host: one per
// distinct (policy, files), read when a host first needs it.
func (j *Job) hostKeysFor(r *sshconfig.Resolved) (*hostkeys.DB, error) {
	policy, where := j.policy(r)
	files := r.UserKnownHosts
	if len(j.cfg.KnownHosts) > 0 {
		files = make([]string, len(j.cfg.KnownHosts))
		for i, f := range j.cfg.KnownHosts {
			files[i] = expandTilde(f, j.env.Home)
		}
	}
	global := r.GlobalKnownHosts
	if !r.GlobalSet {
		global = defaultGlobalKnownHosts
	}
	key := policy + "\x00" + strings.Join(files, "\x00") + "\x00\x00" + strings.Join(global, "\x00")
	j.hkMu.Lock()
	defer j.hkMu.Unlock()
	if policy == HostKeyOff && !j.warned[where] {
		j.warned[where] = true
		fmt.Fprintf(j.env.Warn, "fanout: WARNING: host key checking is off for %s (%s): any server, or anyone in between, is accepted\n", offScope(r, where), where)
	}
	if db, ok := j.dbs[key]; ok {
		return db, nil
	}
	db, err := hostkeys.New(policy, slices.Clone(files), slices.Clone(global), nil)
	if err != nil {
		return nil, err
	}
	j.dbs[key] = db
	return db, nil
}

// offScope says which hosts a policy source covers.
func offScope(r *sshconfig.Resolved, where string) string {
	if strings.HasPrefix(where, "--host-key") {
		return "every host"
	}
	first := ""
	if r.Alias != "*" { // "*" is New's look at the sweep-wide settings
		first = " (" + r.Alias + " first)"
	}
	if b := r.StrictHostKeyChecking.Block; b != "" {
		return "hosts matching " + b + first
	}
	return "every host" + first
}

// expandPath expands ~ and the tokens that do not depend on the host.
func expandPath(p string, env Env) string {
	p = expandTilde(p, env.Home)
	if strings.Contains(p, "%") {
		p = strings.NewReplacer("%d", env.Home, "%u", env.User, "%%", "%").Replace(p)
	}
	return p
}

func expandTilde(p, home string) string { return sshconfig.ExpandTilde(p, home) }

// confEnv is what reading the ssh config takes from env.
func (env Env) confEnv() sshconfig.Env {
	host, _ := os.Hostname()
	return sshconfig.Env{Home: env.Home, User: env.User, UID: env.UID, Hostname: host, Warn: env.Warn}
}

// loadSSHConfig reads the ssh config files c names.
func loadSSHConfig(c *Config, env Env) (*sshconfig.Config, error) {
	return sshconfig.Load(sshconfig.Options{UserFile: c.SSHConfig, SystemFile: c.SystemSSHConfig, Opts: c.Options}, env.confEnv())
}

// passwdEnv is the home, name and uid of the user running fanout, from the
// passwd entry as OpenSSH takes them (not $HOME, $USER).
func passwdEnv() (home, name, uid string) {
	if u, err := user.Current(); err == nil {
		return u.HomeDir, u.Username, u.Uid
	}
	home, _ = os.UserHomeDir()
	name = os.Getenv("USER")
	if name == "" {
		name = "root"
	}
	return home, name, strconv.Itoa(os.Getuid())
}

// targetNamed is a target for a host given as text.
func targetNamed(host string) target.Target {
	if a, err := netip.ParseAddr(host); err == nil {
		return target.Target{Addr: a}
	}
	return target.Target{Host: host}
}

var _ = targetNamed // kept for the callers of other branches
