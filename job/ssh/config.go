package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
)

// Host key policies, as OpenSSH's StrictHostKeyChecking yes / accept-new / no.
const (
	HostKeyStrict    = hostkeys.Strict
	HostKeyAcceptNew = hostkeys.AcceptNew
	HostKeyOff       = hostkeys.Off
)

// Defaults.
const (
	DefaultMaxHandshakes    = 128
	DefaultConnectTimeout   = 10 * time.Second
	DefaultMaxOutput        = 1 << 20
	DefaultHandshakeRetries = 3
)

// Config is the ssh job's options: what the CLI builds from its flags, what
// the store records and what a cluster worker rebuilds the job from. It never
// holds a secret: passphrases are asked on the terminal of the process that
// builds the job, keys stay in their files or in the agent.
type Config struct {
	Command string `json:"command"`
	User    string `json:"user,omitempty"` // -l; else ssh config, else the local user
	Port    int    `json:"port,omitempty"` // -p; else ssh config, else 22

	Identities          []string `json:"identities,omitempty"`            // -i files, tried after the agent
	NoAgent             bool     `json:"no_agent,omitempty"`              // ignore SSH_AUTH_SOCK
	NoDefaultIdentities bool     `json:"no_default_identities,omitempty"` // skip ~/.ssh/id_*

	// SSHConfig is the ssh_config file; "" means ~/.ssh/config when it
	// exists, "none" means no file. Set, it replaces the system-wide file
	// too (as ssh -F does).
	SSHConfig string `json:"ssh_config,omitempty"`
	// SystemSSHConfig is the system-wide ssh_config, read after SSHConfig
	// when that is ""; "" means /etc/ssh/ssh_config when it exists, "none"
	// means no file.
	SystemSSHConfig string `json:"system_ssh_config,omitempty"`
	// Options are -o Key=Value settings; they win over the config file.
	Options map[string]string `json:"options,omitempty"`

	HostKey string `json:"host_key,omitempty"` // strict (default), accept-new, off
	// HostKeyAtLeast is the widest policy any host gets, whatever its
	// config says: a cluster worker sets it to the policy a sweep asks,
	// which narrows the worker's own per host (see Confine).
	HostKeyAtLeast string `json:"host_key_at_least,omitempty"`
	// KnownHosts replaces UserKnownHostsFile (default ~/.ssh/known_hosts);
	// the GlobalKnownHostsFile ones are read too.
	KnownHosts []string `json:"known_hosts,omitempty"`

	ConnectTimeout   time.Duration `json:"connect_timeout_ns,omitempty"` // TCP connect + handshake + auth
	CommandTimeout   time.Duration `json:"command_timeout_ns,omitempty"` // from session start; 0 = ctx only
	MaxHandshakes    int           `json:"max_handshakes,omitempty"`     // ceiling of the handshakes in flight (adaptive below it), across the job
	HandshakeRetries int           `json:"handshake_retries,omitempty"`  // connections lost before the banner retried; -1 none
	// Retries are further attempts after a connection-level failure
	// (refused, connect or handshake timeout); a command that fails or
	// times out is never run twice.
	Retries int `json:"retries,omitempty"`

	ProxyJump string `json:"proxy_jump,omitempty"` // [user@]host[:port], one bastion

	Stdin []byte `json:"stdin,omitempty"` // the same bytes to every host; nil = no stdin
	// StdinSHA256 stands for Stdin where the Config is stored (a database,
	// a cluster's sweeps bucket): the bytes are not kept there, and must be
	// given again (and match) to build the job.
	StdinSHA256 string `json:"stdin_sha256,omitempty"`
	MaxOutput   int    `json:"max_output,omitempty"` // per stream, bytes; default 1 MiB

	Kex []string `json:"kex,omitempty"` // key exchange preference; default DefaultKex

	// KeepConnections keeps each host's authenticated connection open
	// after its command, for the next Run on that host (a watch's next
	// round), which opens only a session on it (pool.go). Close closes them.
	KeepConnections bool `json:"keep_connections,omitempty"`
	// MaxConnections bounds the connections kept (0: no bound), the least
	// recently used closed first.
	MaxConnections int `json:"max_connections,omitempty"`
	// IdleTimeout closes a kept connection unused this long (default
	// DefaultIdleTimeout).
	IdleTimeout time.Duration `json:"idle_timeout_ns,omitempty"`
}

// validate checks c before anything is read. Options the job does not
// know are an error naming them.
func (c *Config) validate() error {
	if strings.TrimSpace(c.Command) == "" {
		return fmt.Errorf("ssh: no command given (fanout ssh TARGETS... -- COMMAND)")
	}
	for _, p := range []string{c.HostKey, c.HostKeyAtLeast} {
		switch p {
		case "", HostKeyStrict, HostKeyAcceptNew, HostKeyOff:
		default:
			return fmt.Errorf("ssh: host key policy %q: want strict, accept-new or off", p)
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("ssh: port %d out of range 1-65535", c.Port)
	}
	for k, v := range c.Options {
		if err := checkOption(k, v); err != nil {
			return err
		}
	}
	if c.StdinSHA256 != "" {
		if c.Stdin == nil {
			return fmt.Errorf("ssh: the sweep's stdin (SHA-256 %s) is not stored with it: give the same bytes again (fanout resume --stdin FILE)", c.StdinSHA256)
		}
		if sum := sha256.Sum256(c.Stdin); hex.EncodeToString(sum[:]) != c.StdinSHA256 {
			return fmt.Errorf("ssh: stdin has SHA-256 %x, but the sweep was run with %s: not the same bytes", sum, c.StdinSHA256)
		}
	}
	return nil
}

// DefaultKex is fanout's key-exchange preference (see sshconfig.DefaultKex).
var DefaultKex = sshconfig.DefaultKex

var (
	opensshFlag       = sshconfig.Flag
	policyFromOpenSSH = sshconfig.Policy
	kexList           = sshconfig.KexList
)

// knownOptions are the -o keys fanout honours (lower case).
var knownOptions = []string{
	"user", "port", "hostname", "identityfile", "identitiesonly", "proxyjump",
	"connecttimeout", "stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile",
	"hashknownhosts", "kexalgorithms", "batchmode", "loglevel", "hostkeyalias",
}

func checkOption(k, v string) error {
	lk := strings.ToLower(k)
	known := false
	for _, o := range knownOptions {
		if o == lk {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("ssh: option %q not supported (supported: User, Port, HostName, IdentityFile, IdentitiesOnly, ProxyJump, ConnectTimeout, StrictHostKeyChecking, UserKnownHostsFile, GlobalKnownHostsFile, HashKnownHosts, KexAlgorithms, BatchMode, LogLevel, HostKeyAlias)", k)
	}
	switch lk {
	case "port":
		if p, err := strconv.Atoi(v); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("ssh: option Port=%q: want a port 1-65535", v)
		}
	case "connecttimeout":
		if s, err := strconv.Atoi(v); err != nil || s < 0 {
			return fmt.Errorf("ssh: option ConnectTimeout=%q: want seconds", v)
		}
	case "stricthostkeychecking":
		if _, err := policyFromOpenSSH(v); err != nil {
			return err
		}
	case "hashknownhosts", "identitiesonly", "batchmode":
		if _, err := opensshFlag(k, v); err != nil {
			return err
		}
	case "kexalgorithms":
		if _, err := kexList(v); err != nil {
			return err
		}
	}
	return nil
}

// ParseOption splits a -o argument ("Key=Value" or "Key Value").
func ParseOption(s string) (key, value string, err error) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "= \t")
	if i <= 0 {
		return "", "", fmt.Errorf("ssh: option %q: want Key=Value", s)
	}
	key, value = s[:i], strings.TrimSpace(strings.TrimLeft(s[i:], "= \t"))
	if value == "" {
		return "", "", fmt.Errorf("ssh: option %q: want Key=Value", s)
	}
	return key, value, checkOption(key, value)
}
