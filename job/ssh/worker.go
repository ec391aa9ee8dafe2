package ssh

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/fanout/fanout/job"
)

// Local is what a cluster worker's operator sets for the ssh sweeps the
// worker runs: everything that touches the worker's files, keys or place in
// the network. An ssh job lends the worker's identity to whoever submits the
// sweep, so these come from the worker's own flags and config only; a
// sweep's options may narrow them (a stricter host-key policy, no agent),
// never widen them (see Confine).
type Local struct {
	// SSHConfig is the ssh_config every sweep reads; "" means the worker
	// user's ~/.ssh/config then /etc/ssh/ssh_config, "none" none.
	SSHConfig  string   `json:"ssh_config,omitempty"`
	Identities []string `json:"identities,omitempty"` // identity files, tried after the agent
	NoAgent    bool     `json:"no_agent,omitempty"`   // ignore SSH_AUTH_SOCK
	// KnownHosts replaces UserKnownHostsFile (default: the config's, else
	// ~/.ssh/known_hosts).
	KnownHosts []string `json:"known_hosts,omitempty"`
	// HostKey is the widest host-key policy a sweep gets here: strict,
	// accept-new or off; "" means the config's StrictHostKeyChecking, else
	// strict.
	HostKey   string `json:"host_key,omitempty"`
	ProxyJump string `json:"proxy_jump,omitempty"` // bastion for every target, [user@]host[:port]
}

// localOptions are the ssh_config keys (lower case) a sweep may not set on a
// worker: they name the worker's files, route its connections, or say under
// which name a host's key is looked up (HostKeyAlias).
var localOptions = []string{"identityfile", "proxyjump", "userknownhostsfile", "globalknownhostsfile", "hashknownhosts", "hostkeyalias"}

// LocalSettings lists the settings of c that name files or routes of the
// machine that runs it (identity files, ssh_config, known_hosts, bastion),
// as the fanout ssh flags that set them; none for a Config a cluster worker
// may run as it is.
func (c Config) LocalSettings() []string {
	var out []string
	if len(c.Identities) > 0 {
		out = append(out, "--identity")
	}
	if c.SSHConfig != "" || c.SystemSSHConfig != "" {
		out = append(out, "--ssh-config")
	}
	if len(c.KnownHosts) > 0 {
		out = append(out, "--known-hosts")
	}
	if c.ProxyJump != "" {
		out = append(out, "--jump")
	}
	var opts []string
	for k := range c.Options {
		for _, l := range localOptions {
			if strings.EqualFold(k, l) {
				opts = append(opts, "-o "+k)
			}
		}
	}
	sort.Strings(opts)
	return append(out, opts...)
}

// policyRank orders host-key policies from widest (off) to narrowest.
var policyRank = map[string]int{HostKeyOff: 0, HostKeyAcceptNew: 1, HostKeyStrict: 2}

// policy is the worker's own host-key policy: HostKey, else the widest
// StrictHostKeyChecking of its ssh config, else strict. perHost is set
// when the config decides it host by host: the sweep then leaves it there.
func (l Local) policy(env Env) (policy string, perHost bool, err error) {
	if l.HostKey != "" {
		if _, ok := policyRank[l.HostKey]; !ok {
			return "", false, fmt.Errorf("ssh: host key policy %q: want strict, accept-new or off", l.HostKey)
		}
		return l.HostKey, false, nil
	}
	sc, err := loadSSHConfig(&Config{SSHConfig: l.SSHConfig}, env)
	if err != nil {
		return "", false, err
	}
	policy = HostKeyStrict
	var seen []string
	for _, v := range sc.AllValues("StrictHostKeyChecking") {
		p, err := policyFromOpenSSH(v.Value)
		if err != nil {
			return "", false, fmt.Errorf("%w (%s)", err, v.Where)
		}
		if policyRank[p] < policyRank[policy] {
			policy = p
		}
		// One policy for every host (at the top, or under Host *) is the
		// worker's; any other is decided per host.
		if !slices.Contains(seen, p) {
			seen = append(seen, p)
		}
		if v.Block != "" && v.Block != "Host *" {
			perHost = true
		}
	}
	return policy, perHost || len(seen) > 1, nil
}

// Check reports whether l is usable: its policy is known and its ssh config
// reads (a worker checks this once, at start).
func (l Local) Check(env Env) error {
	_, _, err := l.policy(env)
	return err
}

// Confine makes a sweep's ssh options (from a cluster's bus, so untrusted)
// fit to run on this worker: every file, key and route comes from l, and
// the sweep's host-key policy is the worker's or a narrower one. A sweep
// that names a local file or route, or asks a wider policy than the
// worker's, is refused with an error saying which; what a sweep may set
// (command, user, port, timeouts, key exchanges, a narrower policy, no
// agent) is kept. The result is the options to build the job from.
func Confine(options json.RawMessage, l Local, env Env) (json.RawMessage, error) {
	var c Config
	if err := job.DecodeOptions(Kind, options, &c); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if s := c.LocalSettings(); len(s) > 0 {
		return nil, fmt.Errorf("ssh: the sweep sets %s, which on a worker only its operator chooses (fanout worker --identity, --ssh-config, --known-hosts, --jump): refused", strings.Join(s, ", "))
	}
	mine, perHost, err := l.policy(env)
	if err != nil {
		return nil, err
	}
	asked := c.HostKey
	for k, v := range c.Options {
		if strings.EqualFold(k, "StrictHostKeyChecking") {
			if asked == "" {
				if asked, err = policyFromOpenSSH(v); err != nil {
					return nil, err
				}
			}
			delete(c.Options, k)
		}
	}
	c.HostKey, c.HostKeyAtLeast = mine, ""
	if perHost {
		// The worker's config keeps some hosts stricter than others: it
		// decides per host, and the sweep's policy only narrows it.
		c.HostKey = ""
	}
	if asked != "" {
		if policyRank[asked] < policyRank[mine] {
			return nil, fmt.Errorf("ssh: the sweep asks host-key policy %s, wider than this worker's %s: refused (a sweep may narrow the worker's policy, never widen it)", asked, mine)
		}
		if perHost {
			c.HostKeyAtLeast = asked
		} else {
			c.HostKey = asked
		}
	}
	c.SSHConfig, c.SystemSSHConfig = l.SSHConfig, ""
	c.Identities = l.Identities
	c.KnownHosts = l.KnownHosts
	c.ProxyJump = l.ProxyJump
	c.NoAgent = c.NoAgent || l.NoAgent
	// Connections kept open on the worker's behalf are the worker's to
	// allow: a sweep's chunks are not rounds, and a kept connection per
	// host of a sweep would be held until its job closes.
	c.KeepConnections, c.MaxConnections, c.IdleTimeout = false, 0, 0
	return json.Marshal(c)
}

// KeepForRounds rewrites confined options (Confine's) for a job a worker
// keeps across the rounds of a cluster watch: each host's authenticated
// connection is kept between rounds (keepalives, redialled when broken), at
// most max of them (0: no bound), the least recently used closed first.
func KeepForRounds(options json.RawMessage, max int) (json.RawMessage, error) {
	var c Config
	if err := job.DecodeOptions(Kind, options, &c); err != nil {
		return nil, err
	}
	c.KeepConnections, c.MaxConnections = true, max
	return json.Marshal(c)
}
