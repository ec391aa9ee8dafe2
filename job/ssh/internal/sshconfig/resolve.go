package sshconfig

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
)

// Config is the ssh config of a sweep, read once; Resolve answers for
// each host.
type Config struct {
	env   Env
	opts  []*line // -o options, as lines
	files []*file // the user's file, then the system-wide one; those read
	path  string  // the user's file, "" without one

	mu    sync.Mutex
	cache map[Query]result
}

type result struct {
	r   *Resolved
	err error
}

// maxCache bounds the resolutions kept; past it the cache starts over.
const maxCache = 1 << 16

// Load reads the files o names, as OpenSSH does: every line checked, every
// Include read.
func Load(o Options, env Env) (*Config, error) {
	if env.Warn == nil {
		env.Warn = io.Discard
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	c := &Config{env: env, cache: map[Query]result{}}
	keys := make([]string, 0, len(o.Opts))
	for k := range o.Opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		l, err := parseLine(k+" "+o.Opts[k], k+"="+o.Opts[k], 0)
		if err != nil {
			return nil, err
		}
		if l == nil {
			return nil, fmt.Errorf("ssh: option %s=%q: want Key=Value", k, o.Opts[k])
		}
		switch l.kw {
		case "host", "match", "include":
			return nil, fmt.Errorf("ssh: option %s: %s is not supported as a command-line option", k, k)
		}
		if l.bad != "" {
			return nil, fmt.Errorf("ssh: option %q: %s", k, l.bad)
		}
		c.opts = append(c.opts, l)
	}
	userDir := filepath.Join(env.Home, ".ssh")
	path, explicit := o.UserFile, o.UserFile != ""
	if !explicit {
		path = filepath.Join(userDir, "config")
	}
	if path == "none" { // -F none: neither file
		return c, nil
	}
	path = ExpandTilde(path, env.Home)
	user := &reader{env: env, dir: userDir}
	f, err := user.read(path, explicit, 0)
	if err != nil {
		return nil, err
	}
	if f != nil {
		c.path = path
		c.files = append(c.files, f)
	}
	if explicit { // -F FILE replaces both files
		return c, nil
	}
	sys := o.SystemFile
	if sys == "" {
		sys = DefaultSystemFile
	}
	if sys == "none" || sys == "" {
		return c, nil
	}
	system := &reader{env: env, dir: filepath.Dir(sys), system: true}
	if f, err = system.read(sys, o.SystemFile != "", 0); err != nil {
		return nil, err
	}
	if f != nil {
		c.files = append(c.files, f)
	}
	return c, nil
}

// Path is the user's file, "" without one.
func (c *Config) Path() string { return c.path }

// Query is what a host is resolved for: the host as the target names it,
// and the port and user the target or the command line give (0, "" for
// none), which win over the config as ssh's user@host and -p do.
type Query struct {
	Host string
	Port int
	User string
}

// Setting is a value and where it was read.
type Setting struct {
	Value string
	Where string // "FILE line N", "-o Key=Value"; "" for a default
	Block string // the Host or Match line it is under, as written; "" at the top
}

// Resolved is what OpenSSH would use for one host.
type Resolved struct {
	Alias    string // the host as given (%n)
	HostName string // to dial and look up in known_hosts (%h): HostName, expanded, lower case
	Port     int
	User     string

	IdentityFiles  []string  // expanded, in order
	IdentityRaw    []Setting // as written, for ssh -G
	IdentitiesOnly bool

	Jumps        []Jump  // ProxyJump hops, first hop first; nil = direct
	JumpRaw      string  // the ProxyJump value, without its comment
	JumpWhere    string  // where it was read
	ProxyCommand Setting // set, and not none: a ProxyCommand

	ConnectTimeout time.Duration // 0: not set, none, or 0
	TimeoutSet     bool          // ConnectTimeout given (0 and none mean no bound of the config's)
	TimeoutNone    bool          // ConnectTimeout none

	StrictHostKeyChecking Setting // raw; Policy is what it means
	Policy                string  // hostkeys.Strict, AcceptNew or Off; "" not set
	UserKnownHosts        []string
	GlobalKnownHosts      []string
	GlobalSet             bool // GlobalKnownHosts is from the config, not the default
	HashKnownHosts        bool
	HostKeyAlias          string

	KexAlgorithms Setting // raw; "" not set
	BatchMode     bool
}

// Resolve evaluates the config for q, as ssh does for `ssh [-l user] [-p
// port] host`. An error names the file and line that cannot be honoured
// for this host.
func (c *Config) Resolve(q Query) (*Resolved, error) {
	c.mu.Lock()
	if r, ok := c.cache[q]; ok {
		c.mu.Unlock()
		return r.r, r.err
	}
	c.mu.Unlock()
	r, err := c.resolve(q)
	c.mu.Lock()
	if len(c.cache) >= maxCache {
		c.cache = map[Query]result{}
	}
	c.cache[q] = result{r, err}
	c.mu.Unlock()
	return r, err
}

// state is one evaluation: the first value of each keyword, as OpenSSH's
// options structure.
type state struct {
	c         *Config
	q         Query
	host      string // what Host lines match: the target, then the final host name
	final     bool
	wantFinal bool
	first     map[string]*line
	ids       []*line
}

func (s *state) value(kw string) string {
	if l := s.first[kw]; l != nil {
		return l.args[0]
	}
	return ""
}

func (c *Config) resolve(q Query) (*Resolved, error) {
	if q.Host == "" {
		return nil, fmt.Errorf("ssh: empty host name")
	}
	s := &state{c: c, q: q, host: q.Host, first: map[string]*line{}}
	if err := s.pass(); err != nil {
		return nil, err
	}
	host := q.Host
	if l := s.first["hostname"]; l != nil {
		h, err := expandTokens(l.args[0], "h", map[byte]string{'h': q.Host})
		if err != nil {
			return nil, l.errorf("HostName %q: %v", l.args[0], err)
		}
		host = h
	}
	if _, err := netip.ParseAddr(host); err != nil {
		host = strings.ToLower(host)
	}
	if s.wantFinal {
		// The second pass: Host lines and Match host see the final name;
		// a HostName there changes nothing, as the first value stands.
		s.first["hostname"] = &line{kw: "hostname", args: []string{host}}
		s.host, s.final = host, true
		if err := s.pass(); err != nil {
			return nil, err
		}
	}
	return s.result(host)
}

// pass evaluates the -o options and every file once.
func (s *state) pass() error {
	for _, l := range s.c.opts {
		if err := s.apply(l, true); err != nil {
			return err
		}
	}
	for _, f := range s.c.files {
		active := true
		if err := s.file(f, &active, false); err != nil {
			return err
		}
	}
	return nil
}

// file evaluates f's lines; never is OpenSSH's state for a file included
// from an inactive block: read, never applied.
func (s *state) file(f *file, active *bool, never bool) error {
	for _, l := range f.lines {
		switch l.kw {
		case "host":
			*active = !never && s.hostMatches(l.args)
			continue
		case "match":
			if never {
				*active = false
				continue
			}
			ok, err := s.match(l)
			if err != nil {
				return err
			}
			*active = ok
			continue
		case "include":
			was := *active
			for _, inc := range l.inc {
				if err := s.file(inc, active, never || !was); err != nil {
					return err
				}
				*active = was // a Match in an included file ends with it
			}
			continue
		}
		if err := s.apply(l, *active); err != nil {
			return err
		}
	}
	return nil
}

// hostMatches is a Host line: some pattern matches and no negated one.
func (s *state) hostMatches(pats []string) bool {
	ok := false
	for _, p := range pats {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if globMatch(s.host, p) {
			if neg {
				return false
			}
			ok = true
		}
	}
	return ok
}

// match evaluates a Match line as OpenSSH does: every criterion in turn,
// all of them must hold; exec, which fanout does not run, is an error
// only when the criteria before it held.
func (s *state) match(l *line) (bool, error) {
	host := s.q.Host
	if s.final {
		host = s.value("hostname")
	} else if h := s.value("hostname"); h != "" {
		if e, err := expandTokens(h, "h", map[byte]string{'h': s.q.Host}); err == nil {
			host = e
		}
	}
	ruser := s.q.User
	if ruser == "" {
		ruser = s.value("user")
	}
	if ruser == "" {
		ruser = s.c.env.User
	}
	result := true
	args := l.args
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "#") {
			break
		}
		neg := strings.HasPrefix(a, "!")
		crit := strings.ToLower(strings.TrimPrefix(a, "!"))
		var ok bool
		switch crit {
		case "all":
			return result && !neg, nil
		case "final", "canonical":
			if crit == "final" {
				s.wantFinal = true
			}
			ok = s.final // fanout never canonicalizes: canonical is the final pass
		default:
			i++
			arg := args[i]
			switch crit {
			case "host":
				ok = patternList(strings.ToLower(host), arg, true) == 1
			case "originalhost":
				ok = patternList(strings.ToLower(s.q.Host), arg, true) == 1
			case "user":
				ok = patternList(ruser, arg, false) == 1
			case "localuser":
				ok = patternList(s.c.env.User, arg, false) == 1
			case "exec":
				if !result {
					continue // not run once a criterion before it failed
				}
				return false, l.errorf("Match exec %q: fanout does not run Match exec commands: refused for %s (resolve it in the config, or give the host's settings with -o)", arg, s.q.Host)
			}
		}
		if ok == neg {
			result = false
		}
	}
	return result, nil
}

// apply takes an option line: its value if active and the first.
func (s *state) apply(l *line, active bool) error {
	if l.bad != "" {
		if ig := s.value("ignoreunknown"); ig != "" && patternList(l.kw, ig, true) == 1 {
			return nil
		}
		return l.errorf("%s", l.bad)
	}
	if !active {
		return nil
	}
	switch l.kw {
	case "identityfile", "identityfile2":
		s.ids = append(s.ids, l)
		return nil
	case "proxyjump", "proxycommand":
		if s.first["proxy"] == nil {
			s.first["proxy"] = l
		}
		return nil
	case "canonicalizehostname":
		if s.first[l.kw] == nil && !strings.EqualFold(l.args[0], "no") && !strings.EqualFold(l.args[0], "false") {
			return l.errorf("CanonicalizeHostname %s: fanout does not canonicalize host names: refused for %s", l.args[0], s.q.Host)
		}
	case "revokedhostkeys", "knownhostscommand":
		if s.first[l.kw] == nil {
			return l.errorf("%s: not supported by fanout: refused for %s", l.kw, s.q.Host)
		}
	}
	if s.first[l.kw] == nil {
		s.first[l.kw] = l
	}
	return nil
}

func (s *state) setting(kw string) Setting {
	l := s.first[kw]
	if l == nil {
		return Setting{}
	}
	st := Setting{Value: l.args[0], Where: l.where()}
	switch kw {
	case "proxycommand", "proxyjump":
		st.Value = l.rest
	case "userknownhostsfile", "globalknownhostsfile":
		st.Value = strings.Join(l.args, " ")
	}
	if l.block != nil {
		st.Block = blockText(l.block)
	}
	return st
}

func blockText(b *line) string {
	w := "Host"
	if b.kw == "match" {
		w = "Match"
	}
	return w + " " + strings.Join(b.args, " ")
}

// result fills a Resolved from the values taken.
func (s *state) result(host string) (*Resolved, error) {
	env := s.c.env
	r := &Resolved{Alias: s.q.Host, HostName: host, Port: 22, User: env.User}
	if s.q.Port > 0 {
		r.Port = s.q.Port
	} else if l := s.first["port"]; l != nil {
		r.Port, _ = ParsePort(l.args[0])
	}
	if s.q.User != "" {
		r.User = s.q.User
	} else if v := s.value("user"); v != "" {
		r.User = v
	}
	r.HostKeyAlias = strings.ToLower(s.value("hostkeyalias"))
	keyAlias := r.HostKeyAlias
	if keyAlias == "" {
		keyAlias = s.q.Host
	}
	short, _, _ := strings.Cut(env.Hostname, ".")
	port := strconv.Itoa(r.Port)
	sum := sha1.Sum([]byte(env.Hostname + host + port + r.User))
	tokens := map[byte]string{
		'C': hex.EncodeToString(sum[:]), 'L': short, 'i': env.UID, 'k': keyAlias, 'l': env.Hostname,
		'n': s.q.Host, 'p': port, 'd': env.Home, 'h': host, 'r': r.User, 'u': env.User,
	}
	const fileTokens = "CLiklnpdhru"
	expandFile := func(l *line, v string) (string, error) {
		v = ExpandTilde(v, env.Home)
		out, err := expandTokens(v, fileTokens, tokens)
		if err == nil {
			out, err = expandEnv(out, env.Getenv)
		}
		if err != nil {
			return "", l.errorf("%s %q: %v", l.kw, v, err)
		}
		return out, nil
	}
	for _, l := range s.ids {
		p, err := expandFile(l, l.args[0])
		if err != nil {
			return nil, err
		}
		r.IdentityFiles = append(r.IdentityFiles, p)
		st := Setting{Value: l.args[0], Where: l.where()}
		if l.block != nil {
			st.Block = blockText(l.block)
		}
		r.IdentityRaw = append(r.IdentityRaw, st)
	}
	r.IdentitiesOnly = FlagOn(s.value("identitiesonly"))
	r.HashKnownHosts = FlagOn(s.value("hashknownhosts"))
	r.BatchMode = FlagOn(s.value("batchmode"))
	if l := s.first["connecttimeout"]; l != nil {
		r.ConnectTimeout, r.TimeoutNone, _ = ParseTime(l.args[0])
		r.TimeoutSet = true
	}
	if l := s.first["stricthostkeychecking"]; l != nil {
		r.StrictHostKeyChecking = s.setting(l.kw)
		r.Policy, _ = Policy(l.args[0])
	}
	r.KexAlgorithms = s.setting("kexalgorithms")
	if l := s.first["userknownhostsfile"]; l != nil {
		if !strings.EqualFold(l.args[0], "none") {
			for _, a := range l.args {
				p, err := expandFile(l, a)
				if err != nil {
					return nil, err
				}
				r.UserKnownHosts = append(r.UserKnownHosts, p)
			}
		}
	} else {
		r.UserKnownHosts = []string{env.Home + "/.ssh/known_hosts", env.Home + "/.ssh/known_hosts2"}
	}
	if l := s.first["globalknownhostsfile"]; l != nil {
		r.GlobalSet = true
		if !strings.EqualFold(l.args[0], "none") {
			r.GlobalKnownHosts = append(r.GlobalKnownHosts, l.args...)
		}
	} else {
		r.GlobalKnownHosts = slices2(DefaultGlobalKnownHosts)
	}
	if l := s.first["proxy"]; l != nil {
		if l.kw == "proxyjump" {
			r.Jumps, _ = ParseJump(l.rest)
			r.JumpRaw = strings.TrimRight(strings.SplitN(l.rest, "#", 2)[0], " \t\r\n")
			r.JumpWhere = l.where()
		} else if !strings.EqualFold(strings.TrimSpace(l.rest), "none") {
			r.ProxyCommand = s.setting("proxy")
			r.ProxyCommand.Value = l.rest
		}
	}
	return r, nil
}

// DefaultGlobalKnownHosts is OpenSSH's GlobalKnownHostsFile (tests point
// it away).
var DefaultGlobalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}

func slices2(s []string) []string { return append([]string(nil), s...) }

// expandTokens replaces %x tokens: those in allowed from values, %% by %;
// any other is an error, as in OpenSSH.
func expandTokens(s, allowed string, values map[byte]string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("%% at the end")
		}
		i++
		c := s[i]
		if c == '%' {
			b.WriteByte('%')
			continue
		}
		if !strings.ContainsRune(allowed, rune(c)) {
			return "", fmt.Errorf("unknown token %%%c (allowed here: %s)", c, tokenList(allowed))
		}
		b.WriteString(values[c])
	}
	return b.String(), nil
}

func tokenList(allowed string) string {
	var out []string
	for _, c := range allowed {
		out = append(out, "%"+string(c))
	}
	return strings.Join(append(out, "%%"), " ")
}

// expandEnv replaces ${NAME} by the environment variable, as OpenSSH does
// in file names; an unset one is an error.
func expandEnv(s string, getenv func(string) string) (string, error) {
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return s, nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated ${")
		}
		name := s[i+2 : i+j]
		v := getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable ${%s} is not set", name)
		}
		s = s[:i] + v + s[i+j+1:]
	}
}

// globMatch is OpenSSH's pattern match: * any run, ? one character,
// case-sensitive.
func globMatch(s, p string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(s[i:], p) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		s, p = s[1:], p[1:]
	}
	return s == ""
}

// patternList is OpenSSH's pattern-list test over comma-separated,
// possibly negated patterns: -1 when a negated one matches, 1 when a
// positive one does, else 0. lower lowercases the patterns.
func patternList(s, list string, lower bool) int {
	got := 0
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if lower {
			p = strings.ToLower(p)
		}
		if globMatch(s, p) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}

// PolicyOff reports whether a resolved host's keys go unchecked, and why.
func (r *Resolved) PolicyOff() bool { return r.Policy == hostkeys.Off }

// AllValues is every value of keyword kw in the -o options and anywhere in
// the files (any block, included files too), with where it was read: the
// identity files to load before a sweep, the policies a worker may apply.
func (c *Config) AllValues(kw string) []Setting {
	kw = strings.ToLower(kw)
	var out []Setting
	var walk func(ls []*line)
	walk = func(ls []*line) {
		for _, l := range ls {
			if l.kw == kw && len(l.args) > 0 {
				st := Setting{Value: l.args[0], Where: l.where()}
				if l.block != nil {
					st.Block = blockText(l.block)
				}
				out = append(out, st)
			}
			for _, f := range l.inc {
				walk(f.lines)
			}
		}
	}
	walk(c.opts)
	for _, f := range c.files {
		walk(f.lines)
	}
	return out
}
