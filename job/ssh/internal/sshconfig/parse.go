// Package sshconfig reads ssh_config files as OpenSSH's ssh does, and
// resolves them for one host at a time: the -o options, then the user's
// file, then the system-wide one, every keyword taking the first value
// obtained from the blocks (Host, Match) that host matches, Include where
// it stands, Match final as a second pass after HostName substitution.
//
// Files are read and checked once (Load); Resolve evaluates them for a
// host, cached by (host, port, user). A bad value anywhere (Port abc, an
// unknown keyword without IgnoreUnknown, a Match criterion OpenSSH does not
// know) is an error naming the file and line, as in OpenSSH; a criterion
// fanout cannot evaluate (Match exec) is an error only for the hosts whose
// resolution reaches it.
package sshconfig

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSystemFile is OpenSSH's system-wide file, read after the user's
// (Options.SystemFile overrides it; tests point it away).
var DefaultSystemFile = "/etc/ssh/ssh_config"

// maxIncludeDepth is how deep Include may nest, as in OpenSSH.
const maxIncludeDepth = 16

// maxLine bounds a config line, as OpenSSH's line buffer does in practice.
const maxLine = 64 << 10

// Env is what reading a config takes from the process: the passwd entry
// of the user running it (not $HOME or $USER, as OpenSSH) and a place for
// warnings.
type Env struct {
	Home     string    // ~, %d, ~/.ssh/config
	User     string    // the local user: default remote user, %u, Match localuser
	UID      string    // %i
	Hostname string    // the local host name: %l, %L, %C
	Warn     io.Writer // warnings; nil discards
	Getenv   func(string) string
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
	// Opts are -o Key=Value settings; they win over the files. Keys are
	// taken in sorted order (a map has none).
	Opts map[string]string
}

// line is one keyword line of a file, parsed and checked.
type line struct {
	file  string
	num   int
	kw    string   // lower case
	key   string   // as written
	args  []string // split as OpenSSH splits them (quotes, escapes, #)
	rest  string   // the text after the keyword (ProxyCommand, ProxyJump)
	block *line    // the Host or Match line this one is under; nil at the top
	inc   []*file  // Include: the files, in glob order
	bad   string   // an unknown keyword: the error, unless IgnoreUnknown covers it
}

// where is "FILE line N", or "-o" for a command-line option.
func (l *line) where() string {
	if l.num == 0 {
		return "-o " + l.file
	}
	return fmt.Sprintf("%s line %d", l.file, l.num)
}

func (l *line) errorf(format string, a ...any) error {
	return fmt.Errorf("ssh config %s: %s", l.where(), fmt.Sprintf(format, a...))
}

// file is one parsed ssh_config.
type file struct {
	path   string
	lines  []*line
	system bool
}

// reader reads one chain of files (user or system): relative Include paths
// are under ~/.ssh or /etc/ssh, as OpenSSH resolves them.
type reader struct {
	env    Env
	system bool
	dir    string
}

// read parses path; nil, nil when it does not exist and need not.
func (r *reader) read(path string, must bool, depth int) (*file, error) {
	if depth > maxIncludeDepth {
		return nil, fmt.Errorf("ssh config %s: Include nested more than %d deep", path, maxIncludeDepth)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !must && os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("ssh config %s: %w", path, err)
	}
	f := &file{path: path, system: r.system}
	var block *line
	for n, raw := range bytes.Split(data, []byte("\n")) {
		if len(raw) > maxLine {
			return nil, fmt.Errorf("ssh config %s line %d: longer than %d bytes", path, n+1, maxLine)
		}
		l, err := parseLine(string(raw), path, n+1)
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		switch l.kw {
		case "host", "match":
			block = nil
		}
		l.block = block
		if l.kw == "host" || l.kw == "match" {
			block = l
		}
		if l.kw == "include" {
			if err := r.include(l, depth); err != nil {
				return nil, err
			}
		}
		if l.kw == "match" && len(l.args) > 1 && strings.EqualFold(l.args[0], "exec") && block == l && depth == 0 {
			// Reached by every host: refused now, not host by host.
			return nil, l.errorf("Match exec %q: fanout does not run Match exec commands, and every host reaches this one (not supported)", l.args[1])
		}
		f.lines = append(f.lines, l)
	}
	return f, nil
}

// include reads the files an Include line names, in glob order; a pattern
// that matches nothing is no error, as in OpenSSH.
func (r *reader) include(l *line, depth int) error {
	if depth+1 > maxIncludeDepth {
		return l.errorf("Include nested more than %d deep (a file that includes itself?)", maxIncludeDepth)
	}
	for _, a := range l.args {
		p := a
		switch {
		case strings.HasPrefix(p, "~") && r.system:
			return l.errorf("Include %s: ~ in the system-wide file", a)
		case strings.HasPrefix(p, "~"):
			p = ExpandTilde(p, r.env.Home)
		case !filepath.IsAbs(p):
			p = filepath.Join(r.dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return l.errorf("Include %s: %v", a, err)
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				continue
			}
			f, err := r.read(m, false, depth+1)
			if err != nil {
				return err
			}
			if f != nil {
				l.inc = append(l.inc, f)
			}
		}
	}
	return nil
}

// parseLine splits one line as OpenSSH does: trailing space (and a CR)
// dropped; the keyword up to space or one '='; the rest split into
// arguments, where double or single quotes group, a backslash escapes a
// quote, a backslash or (outside quotes) a space, and '#' starts a comment
// only at the start of an argument. nil for a blank or comment line.
func parseLine(s, path string, num int) (*line, error) {
	s = strings.TrimRight(s, " \t\r\n\f")
	s = strings.TrimLeft(s, " \t\r\n")
	if s == "" || s[0] == '#' {
		return nil, nil
	}
	l := &line{file: path, num: num}
	end := strings.IndexAny(s, " \t\r\n=\"")
	var kw string
	if end < 0 {
		kw, s = s, ""
	} else {
		kw, s = s[:end], s[end:]
		s = strings.TrimLeft(s, " \t\r\n")
		if strings.HasPrefix(s, "=") {
			s = strings.TrimLeft(s[1:], " \t\r\n")
		}
	}
	if kw == "" {
		return nil, l.errorf("a line starts with a quote or '=': want a keyword")
	}
	l.kw, l.key = strings.ToLower(kw), kw
	if s == "" {
		return nil, l.errorf("no argument after keyword %q", kw)
	}
	l.rest = s
	args, ok := splitArgs(s)
	if !ok {
		return nil, l.errorf("invalid quotes")
	}
	l.args = args
	if err := checkLine(l); err != nil {
		return nil, err
	}
	return l, nil
}

// splitArgs is OpenSSH's argument splitting of a config line.
func splitArgs(s string) (args []string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			continue
		}
		if s[i] == '#' {
			break
		}
		var arg []byte
		quote := byte(0)
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' || s[i+1] == '\\' || (quote == 0 && s[i+1] == ' ')):
				i++
				arg = append(arg, s[i])
				continue
			case quote == 0 && (c == ' ' || c == '\t'):
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				continue
			case quote != 0 && c == quote:
				quote = 0
				continue
			default:
				arg = append(arg, c)
				continue
			}
			break
		}
		if quote != 0 {
			return nil, false
		}
		args = append(args, string(arg))
	}
	return args, true
}
