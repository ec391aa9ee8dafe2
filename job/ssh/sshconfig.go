package ssh

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
	"github.com/fanout/fanout/target"
)

// hostSettings is what one target is dialled with.
type hostSettings struct {
	alias      string
	hostname   string // to dial and to check in known_hosts
	port       int
	user       string
	identities []string // from the config for this host (expanded)
	onlyIDs    bool
	proxyJump  string
	connect    time.Duration
	hashKnown  bool
}

func (hs *hostSettings) addr() string {
	return net.JoinHostPort(hs.hostname, strconv.Itoa(hs.port))
}

// settings resolves t's settings: target port, then -p, -o, config, 22;
// target user (user@host), then -l, -o, config, the local user.
func (j *Job) settings(t target.Target) hostSettings {
	alias := t.Name()
	hs := hostSettings{alias: alias, hostname: alias, port: 22, user: j.env.User}
	sc := j.conf
	if v := sc.Get(alias, "HostName"); v != "" {
		hs.hostname = strings.ReplaceAll(v, "%h", alias)
	}
	if p, err := strconv.Atoi(sc.Get(alias, "Port")); err == nil && p > 0 {
		hs.port = p
	}
	if j.cfg.Port > 0 {
		hs.port = j.cfg.Port
	}
	if t.Port != 0 {
		hs.port = int(t.Port)
	}
	if v := sc.Get(alias, "User"); v != "" {
		hs.user = v
	}
	if j.cfg.User != "" {
		hs.user = j.cfg.User
	}
	if t.User != "" {
		hs.user = t.User
	}
	hs.proxyJump = j.cfg.ProxyJump
	if hs.proxyJump == "" {
		if v := sc.Get(alias, "ProxyJump"); v != "" && !strings.EqualFold(v, "none") {
			hs.proxyJump = v
		}
	}
	hs.connect = j.cfg.ConnectTimeout
	if hs.connect == 0 {
		hs.connect = DefaultConnectTimeout
		if s, err := strconv.Atoi(sc.Get(alias, "ConnectTimeout")); err == nil && s > 0 {
			hs.connect = time.Duration(s) * time.Second
		}
	}
	if !sc.Empty() {
		for _, f := range sc.GetAll(alias, "IdentityFile") {
			hs.identities = append(hs.identities, expandPath(f, j.env))
		}
		hs.onlyIDs = flagOn(sc.Get(alias, "IdentitiesOnly"))
		hs.hashKnown = flagOn(sc.Get(alias, "HashKnownHosts"))
	}
	return hs
}

// expandPath expands ~ and the tokens that do not depend on the host.
func expandPath(p string, env Env) string { return sshconfig.ExpandPath(p, env.confEnv()) }

func expandTilde(p, home string) string { return sshconfig.ExpandTilde(p, home) }

var splitList = sshconfig.SplitList

// confEnv is what reading the ssh config takes from env.
func (env Env) confEnv() sshconfig.Env {
	return sshconfig.Env{Home: env.Home, User: env.User, Warn: env.Warn}
}

// loadSSHConfig reads the ssh config files c names.
func loadSSHConfig(c *Config, env Env) (*sshconfig.Config, error) {
	return sshconfig.Load(sshconfig.Options{UserFile: c.SSHConfig, SystemFile: c.SystemSSHConfig, Opts: c.Options}, env.confEnv())
}
