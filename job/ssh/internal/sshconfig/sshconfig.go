// Package sshconfig reads ssh_config files as OpenSSH does: the user's file
// then the system-wide one, Include, Host and Match blocks, -o options
// first, the first value obtained winning.
package sshconfig

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// DefaultSystemFile is OpenSSH's system-wide file, read after the user's
// (Options.SystemFile overrides it; tests point it away).
var DefaultSystemFile = "/etc/ssh/ssh_config"

// Env is what reading a config takes from the process.
type Env struct {
	Home string    // for ~ and ~/.ssh/config
	User string    // the local user (Match localuser, %u)
	Warn io.Writer // warnings; never nil
}

// Options are the files to read and the -o options.
type Options struct {
	// UserFile is the ssh_config file; "" means ~/.ssh/config when it
	// exists, "none" means no file. Set, it replaces the system-wide file
	// too (as ssh -F does).
	UserFile string
	// SystemFile is the system-wide ssh_config, read after UserFile when
	// that is ""; "" means DefaultSystemFile when it exists, "none" means
	// no file.
	SystemFile string
	// Opts are -o Key=Value settings; they win over the files.
	Opts map[string]string
}

// maxIncludeDepth is OpenSSH's READCONF_MAX_DEPTH.
const maxIncludeDepth = 16

// includeKey stands in the parsed file for an Include line (the parser
// would resolve it against the process's HOME, not Env.Home, and without
// our checks), its value the index of the files it names.
const includeKey = "fanoutinclude"

// Config answers per-host settings: -o options first, then the user's
// ssh config, then the system-wide one, as OpenSSH does (the first value
// obtained wins).
type Config struct {
	path  string      // the user's file, "" without one
	files []*confFile // user, then system; each present only if read
	opts  map[string]string
}

// confFile is one parsed ssh_config and the files its Include lines read.
type confFile struct {
	path     string
	cfg      *ssh_config.Config
	includes [][]*confFile // by includeKey value
}

// Value is a keyword's value and where it was read.
type Value struct {
	Value string
	Path  string // "" for -o
	Line  int
}

// confReader reads one chain of files (user or system): relative Include
// paths are under dir, as OpenSSH resolves them under ~/.ssh or /etc/ssh.
type confReader struct {
	env    Env
	dir    string
	system bool
}

// Load reads the files o names, as OpenSSH does.
func Load(o Options, env Env) (*Config, error) {
	if env.Warn == nil {
		env.Warn = io.Discard
	}
	sc := &Config{opts: map[string]string{}}
	for k, v := range o.Opts {
		sc.opts[strings.ToLower(k)] = v
	}
	userDir := filepath.Join(env.Home, ".ssh")
	path, explicit := o.UserFile, o.UserFile != ""
	if !explicit {
		path = filepath.Join(userDir, "config")
	}
	if path == "none" { // -F none: neither file
		return sc, nil
	}
	path = ExpandTilde(path, env.Home)
	user := &confReader{env: env, dir: userDir}
	f, err := user.load(path, explicit, 0)
	if err != nil {
		return nil, err
	}
	if f != nil {
		sc.path = path
		sc.files = append(sc.files, f)
	}
	if explicit { // -F FILE replaces both files
		return sc, nil
	}
	sys := o.SystemFile
	if sys == "" {
		sys = DefaultSystemFile
	}
	if sys == "none" || sys == "" {
		return sc, nil
	}
	system := &confReader{env: env, dir: filepath.Dir(sys), system: true}
	if f, err = system.load(sys, o.SystemFile != "", 0); err != nil {
		return nil, err
	}
	if f != nil {
		sc.files = append(sc.files, f)
	}
	return sc, nil
}

// load reads and parses path; nil, nil when it does not exist and need not.
func (cr *confReader) load(path string, must bool, depth int) (*confFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if !must && os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("ssh config %s: %v", path, err)
	}
	cf := &confFile{path: path}
	data, err = cr.rewrite(cf, data, depth)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %v", path, err)
	}
	if cf.cfg, err = decodeConfig(data); err != nil {
		return nil, fmt.Errorf("ssh config %s: %v", path, err)
	}
	if err := cf.check(); err != nil {
		return nil, fmt.Errorf("ssh config %s: %v", path, err)
	}
	return cf, nil
}

// rewrite replaces, line for line (so that positions hold), the Include
// lines by includeKey lines after reading their files, and the Match lines
// by the Host line they amount to for fanout.
func (cr *confReader) rewrite(cf *confFile, data []byte, depth int) ([]byte, error) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, raw := range lines {
		line := strings.TrimRight(string(raw), "\r\n")
		body := strings.TrimLeft(line, " \t")
		indent := line[:len(line)-len(body)]
		kw, rest := body, ""
		if j := strings.IndexAny(body, " \t="); j >= 0 {
			kw, rest = body[:j], strings.TrimLeft(body[j:], " \t")
			rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
		}
		switch strings.ToLower(kw) {
		case "include":
			args := splitArgs(rest)
			if len(args) == 0 {
				return nil, fmt.Errorf("line %d: Include has no value", i+1)
			}
			files, err := cr.include(args, i+1, depth)
			if err != nil {
				return nil, err
			}
			lines[i] = []byte(fmt.Sprintf("%s%s %d\n", indent, includeKey, len(cf.includes)))
			cf.includes = append(cf.includes, files)
		case "match":
			hosts, err := cr.match(cf.path, rest, i+1)
			if err != nil {
				return nil, err
			}
			lines[i] = []byte(indent + "Host " + hosts + "\n")
		}
	}
	return bytes.Join(lines, nil), nil
}

// include reads the files an Include line names, in glob order; a pattern
// that matches nothing is no error, as in OpenSSH.
func (cr *confReader) include(args []string, line, depth int) ([]*confFile, error) {
	if depth+1 > maxIncludeDepth {
		return nil, fmt.Errorf("line %d: Include nested more than %d deep", line, maxIncludeDepth)
	}
	var files []*confFile
	for _, a := range args {
		p := ExpandTilde(a, cr.env.Home)
		if !filepath.IsAbs(p) {
			p = filepath.Join(cr.dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("line %d: Include %s: %v", line, a, err)
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				continue
			}
			f, err := cr.load(m, false, depth+1)
			if err != nil {
				return nil, err
			}
			if f != nil {
				files = append(files, f)
			}
		}
	}
	return files, nil
}

// never is a Host line no alias matches.
const never = "!*"

// match turns the criteria of a Match line into Host patterns: "all",
// "final" (fanout resolves a host in one pass and never canonicalizes, so
// the final pass is that pass), "canonical" (never, for the same reason),
// "localuser" (decided now), "host" and "originalhost" (the target as
// given: fanout does not resolve HostName first). Other criteria (exec,
// user, localnetwork, tagged, ...) are an error in the user's file; in the
// system-wide one, which the user cannot fix, the block is skipped with a
// warning.
func (cr *confReader) match(path, rest string, line int) (string, error) {
	args := splitArgs(rest)
	unsupported := func(what string) (string, error) {
		if cr.system {
			fmt.Fprintf(cr.env.Warn, "fanout: %s line %d: Match %s not supported by fanout: block ignored\n", path, line, what)
			return never, nil
		}
		return "", fmt.Errorf("line %d: Match %s not supported (supported: all, final, canonical, host, originalhost, localuser)", line, what)
	}
	if len(args) == 0 {
		return "", fmt.Errorf("line %d: Match has no criteria", line)
	}
	static := true
	var hosts []string
	for i := 0; i < len(args); i++ {
		crit := strings.ToLower(args[i])
		neg := strings.HasPrefix(crit, "!")
		crit = strings.TrimPrefix(crit, "!")
		var val bool
		switch crit {
		case "all", "final":
			val = true
		case "canonical":
			val = false
		case "host", "originalhost", "localuser":
			if i+1 >= len(args) {
				return "", fmt.Errorf("line %d: Match %s has no pattern list", line, crit)
			}
			i++
			pats := strings.Split(args[i], ",")
			if crit == "localuser" {
				val = patternListMatches(pats, cr.env.User)
				break
			}
			if hosts != nil {
				return unsupported("with two host pattern lists")
			}
			if neg {
				// "!host a,b" is "* !a !b"; a negation inside cannot be turned round.
				hosts = []string{"*"}
				for _, p := range pats {
					if strings.HasPrefix(p, "!") {
						return unsupported("!" + crit + " with a negated pattern")
					}
					hosts = append(hosts, "!"+p)
				}
			} else {
				hosts = pats
			}
			continue
		default:
			return unsupported(args[i])
		}
		if val == neg {
			static = false
		}
	}
	switch {
	case !static:
		return never, nil
	case hosts == nil:
		return "*", nil
	}
	for _, h := range hosts {
		if h == "" || h == "!" {
			return "", fmt.Errorf("line %d: Match: empty host pattern", line)
		}
	}
	return strings.Join(hosts, " "), nil
}

// patternListMatches is OpenSSH's pattern-list test: some pattern matches
// and no negated one does.
func patternListMatches(pats []string, s string) bool {
	h := &ssh_config.Host{}
	for _, p := range pats {
		if pat, err := ssh_config.NewPattern(p); err == nil {
			h.Patterns = append(h.Patterns, pat)
		}
	}
	return h.Matches(s)
}

// splitArgs splits an ssh_config value into words; double quotes group,
// and a word starting with # starts a comment.
func splitArgs(s string) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" || s[0] == '#' {
			return out
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return append(out, s[1:])
			}
			out, s = append(out, s[1:end+1]), s[end+2:]
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			return append(out, s)
		}
		out, s = append(out, s[:end]), s[end:]
	}
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

// check validates the values fanout reads that can be wrong
// (StrictHostKeyChecking, KexAlgorithms, the yes/no options), wherever they
// are (OpenSSH too refuses a bad value in a block that never applies), so
// that an error names this file and line. KexAlgorithms names OpenSSH
// implements and x/crypto does not (sntrup761x25519-sha512, ...) are
// dropped: a distribution's policy lists them, and fanout then uses the
// names it has of that allowed list.
func (cf *confFile) check() error {
	for _, h := range cf.cfg.Hosts {
		for _, n := range h.Nodes {
			kv, ok := n.(*ssh_config.KV)
			if !ok {
				continue
			}
			line := kv.Pos().Line
			switch strings.ToLower(kv.Key) {
			case "stricthostkeychecking":
				if _, err := Policy(kv.Value); err != nil {
					return fmt.Errorf("line %d: %v", line, err)
				}
			case "hashknownhosts", "identitiesonly", "batchmode":
				if _, err := Flag(kv.Key, kv.Value); err != nil {
					return fmt.Errorf("line %d: %v", line, err)
				}
			case "kexalgorithms":
				v, err := opensshKex(kv.Value)
				if err == nil {
					_, err = KexList(v)
				}
				if err != nil {
					return fmt.Errorf("line %d: %v", line, err)
				}
				kv.Value = v
			}
		}
	}
	return nil
}

// opensshOnlyKex are key exchanges of OpenSSH that x/crypto lacks.
var opensshOnlyKex = []string{
	"sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
	"mlkem768nistp256-sha256", "mlkem1024nistp384-sha384",
	"diffie-hellman-group18-sha512", "diffie-hellman-group1-sha1",
	"diffie-hellman-group-exchange-sha1",
}

// opensshKex drops opensshOnlyKex from a KexAlgorithms value.
func opensshKex(v string) (string, error) {
	op := ""
	if v != "" && strings.ContainsRune("+-^", rune(v[0])) {
		op, v = v[:1], v[1:]
	}
	var keep []string
	for _, n := range SplitList(v) {
		if !slices.Contains(opensshOnlyKex, n) {
			keep = append(keep, n)
		}
	}
	if len(keep) == 0 {
		if op == "" {
			return "", fmt.Errorf("ssh: KexAlgorithms %q: none of them is implemented by fanout (supported: %s)", v, strings.Join(supportedKex, ","))
		}
		return "+", nil // adding or removing only what fanout lacks: the default
	}
	return op + strings.Join(keep, ","), nil
}

// Path is the user's file, "" without one.
func (sc *Config) Path() string { return sc.path }

// Empty reports whether there is neither a file nor an option.
func (sc *Config) Empty() bool { return len(sc.files) == 0 && len(sc.opts) == 0 }

// Global is a sweep-wide setting: -o, else the files' value for any host
// ("Host *"), else "".
func (sc *Config) Global(key string) string { return sc.Get("*", key) }

// Get is the first value of key for host alias: -o first, then the files.
func (sc *Config) Get(alias, key string) string {
	lk := strings.ToLower(key)
	if v, ok := sc.opts[lk]; ok {
		return v
	}
	for _, f := range sc.files {
		if v, ok := f.get(alias, lk); ok {
			return v
		}
	}
	return ""
}

// GetAll is every value of key for alias (IdentityFile accumulates).
func (sc *Config) GetAll(alias, key string) []string {
	lk := strings.ToLower(key)
	var out []string
	if v, ok := sc.opts[lk]; ok {
		out = append(out, v)
	}
	for _, f := range sc.files {
		out = f.getAll(alias, lk, out)
	}
	return out
}

// AllValues is every value of key in -o and anywhere in the files, with
// where it was read: the IdentityFiles to load before the sweep.
func (sc *Config) AllValues(key string) []Value {
	lk := strings.ToLower(key)
	var out []Value
	if v, ok := sc.opts[lk]; ok {
		out = append(out, Value{Value: v})
	}
	for _, f := range sc.files {
		out = f.allValues(lk, out)
	}
	return out
}

// each calls fn with every line of key lk in f, in file order, following
// Include lines where they stand: in the Host blocks matching alias, or in
// every block when alias is "". fn returns false to stop, and so does each.
func (f *confFile) each(alias, lk string, fn func(f *confFile, kv *ssh_config.KV) bool) bool {
	for _, h := range f.cfg.Hosts {
		if alias != "" && !h.Matches(alias) {
			continue
		}
		for _, n := range h.Nodes {
			kv, ok := n.(*ssh_config.KV)
			if !ok {
				continue
			}
			switch k := strings.ToLower(kv.Key); {
			case k == includeKey:
				for _, inc := range f.included(kv) {
					if !inc.each(alias, lk, fn) {
						return false
					}
				}
			case k == lk:
				if !fn(f, kv) {
					return false
				}
			}
		}
	}
	return true
}

func (f *confFile) get(alias, lk string) (v string, found bool) {
	f.each(alias, lk, func(_ *confFile, kv *ssh_config.KV) bool {
		v, found = kv.Value, true
		return false
	})
	return v, found
}

func (f *confFile) getAll(alias, lk string, out []string) []string {
	f.each(alias, lk, func(_ *confFile, kv *ssh_config.KV) bool {
		out = append(out, kv.Value)
		return true
	})
	return out
}

func (f *confFile) allValues(lk string, out []Value) []Value {
	f.each("", lk, func(cf *confFile, kv *ssh_config.KV) bool {
		out = append(out, Value{Value: kv.Value, Path: cf.path, Line: kv.Pos().Line})
		return true
	})
	return out
}

// included is the files of an includeKey line (none for a line the user
// wrote with that name: it is not an OpenSSH keyword).
func (f *confFile) included(kv *ssh_config.KV) []*confFile {
	i, err := strconv.Atoi(kv.Value)
	if err != nil || i < 0 || i >= len(f.includes) {
		return nil
	}
	return f.includes[i]
}

// ExpandPath expands ~ and the tokens that do not depend on the host.
func ExpandPath(p string, env Env) string {
	p = ExpandTilde(p, env.Home)
	if strings.Contains(p, "%") {
		p = strings.NewReplacer("%d", env.Home, "%u", env.User, "%%", "%").Replace(p)
	}
	return p
}

func ExpandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return home + p[1:]
	}
	return p
}

// SplitList splits an OpenSSH list (commas or spaces).
func SplitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
