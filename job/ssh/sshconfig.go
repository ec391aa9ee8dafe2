package ssh

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"

	"github.com/fanout/fanout/target"
)

// sshConfig answers per-host settings: -o options first, then the ssh config
// file, as OpenSSH does (the first value obtained wins).
type sshConfig struct {
	path string
	file *ssh_config.Config // nil without a file
	opts map[string]string  // -o, keys lower-cased
}

func loadSSHConfig(c *Config, env Env) (*sshConfig, error) {
	sc := &sshConfig{opts: map[string]string{}}
	for k, v := range c.Options {
		sc.opts[strings.ToLower(k)] = v
	}
	path := c.SSHConfig
	explicit := path != ""
	if path == "" {
		path = env.Home + "/.ssh/config"
	}
	if path == "none" {
		return sc, nil
	}
	path = expandTilde(path, env.Home)
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && os.IsNotExist(err) {
			return sc, nil
		}
		return nil, fmt.Errorf("ssh config %s: %v", path, err)
	}
	f, err := decodeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %v", path, err)
	}
	sc.path, sc.file = path, f
	return sc, nil
}

// decodeConfig parses an ssh_config; the parser panics on some malformed
// input instead of failing, so the panic becomes the error.
func decodeConfig(data []byte) (f *ssh_config.Config, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	f, err = ssh_config.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	// The parser accepts a keyword without a value; OpenSSH does not.
	for _, h := range f.Hosts {
		for _, n := range h.Nodes {
			if kv, ok := n.(*ssh_config.KV); ok && strings.TrimSpace(kv.Value) == "" {
				return nil, fmt.Errorf("line %d: %s has no value", kv.Pos().Line, kv.Key)
			}
		}
	}
	return f, nil
}

// global is a sweep-wide setting: -o, else the file's value for any host
// ("Host *"), else "".
func (sc *sshConfig) global(key string) string { return sc.get("*", key) }

// get is the first value of key for host alias: -o first, then the file.
func (sc *sshConfig) get(alias, key string) string {
	if v, ok := sc.opts[strings.ToLower(key)]; ok {
		return v
	}
	if sc.file == nil {
		return ""
	}
	v, _ := sc.file.Get(alias, key)
	return v
}

// getAll is every value of key for alias (IdentityFile accumulates).
func (sc *sshConfig) getAll(alias, key string) []string {
	var out []string
	if v, ok := sc.opts[strings.ToLower(key)]; ok {
		out = append(out, v)
	}
	if sc.file != nil {
		vs, _ := sc.file.GetAll(alias, key)
		out = append(out, vs...)
	}
	return out
}

// allValues is every value of key anywhere in the file, with its line: the
// IdentityFiles to load before the sweep.
func (sc *sshConfig) allValues(key string) (vals []string, lines []int) {
	if v, ok := sc.opts[strings.ToLower(key)]; ok {
		vals, lines = append(vals, v), append(lines, 0)
	}
	if sc.file == nil {
		return
	}
	for _, h := range sc.file.Hosts {
		for _, n := range h.Nodes {
			if kv, ok := n.(*ssh_config.KV); ok && strings.EqualFold(kv.Key, key) {
				vals, lines = append(vals, kv.Value), append(lines, kv.Pos().Line)
			}
		}
	}
	return
}

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

// settings resolves t's settings: target port, then -p, -o, config, 22.
func (j *Job) settings(t target.Target) hostSettings {
	alias := t.Name()
	hs := hostSettings{alias: alias, hostname: alias, port: 22, user: j.env.User}
	sc := j.conf
	if v := sc.get(alias, "HostName"); v != "" {
		hs.hostname = strings.ReplaceAll(v, "%h", alias)
	}
	if p, err := strconv.Atoi(sc.get(alias, "Port")); err == nil && p > 0 {
		hs.port = p
	}
	if j.cfg.Port > 0 {
		hs.port = j.cfg.Port
	}
	if t.Port != 0 {
		hs.port = int(t.Port)
	}
	if v := sc.get(alias, "User"); v != "" {
		hs.user = v
	}
	if j.cfg.User != "" {
		hs.user = j.cfg.User
	}
	hs.proxyJump = j.cfg.ProxyJump
	if hs.proxyJump == "" {
		if v := sc.get(alias, "ProxyJump"); v != "" && !strings.EqualFold(v, "none") {
			hs.proxyJump = v
		}
	}
	hs.connect = j.cfg.ConnectTimeout
	if hs.connect == 0 {
		hs.connect = DefaultConnectTimeout
		if s, err := strconv.Atoi(sc.get(alias, "ConnectTimeout")); err == nil && s > 0 {
			hs.connect = time.Duration(s) * time.Second
		}
	}
	if sc.file != nil || len(sc.opts) > 0 {
		for _, f := range sc.getAll(alias, "IdentityFile") {
			hs.identities = append(hs.identities, expandPath(f, j.env))
		}
		hs.onlyIDs = strings.EqualFold(sc.get(alias, "IdentitiesOnly"), "yes")
		hs.hashKnown = strings.EqualFold(sc.get(alias, "HashKnownHosts"), "yes")
	}
	return hs
}

// expandPath expands ~ and the tokens that do not depend on the host.
func expandPath(p string, env Env) string {
	p = expandTilde(p, env.Home)
	if strings.Contains(p, "%") {
		p = strings.NewReplacer("%d", env.Home, "%u", env.User, "%%", "%").Replace(p)
	}
	return p
}

func expandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return home + p[1:]
	}
	return p
}

// splitList splits an OpenSSH list (commas or spaces).
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
