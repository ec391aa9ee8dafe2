package sshconfig

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
)

// DefaultKex is fanout's key-exchange preference. curve25519-sha256 comes
// first: it is what every OpenSSH since 6.5 speaks, it costs the client the
// least CPU per handshake (the figure that decides how many hosts one machine
// drives), and it keeps the first kex packet small. The post-quantum
// mlkem768x25519-sha256 follows, so `-o KexAlgorithms=mlkem768x25519-sha256`
// (or a server that offers nothing else) gets it.
var DefaultKex = []string{
	"curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256",
	"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
	"diffie-hellman-group14-sha256",
}

// Flag reads a yes/no option as OpenSSH does: yes or true, no or
// false, in any case; anything else is an error naming the option.
func Flag(key, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("ssh: option %s=%q: want yes or no", key, v)
}

// FlagOn is a checked yes/no value: true for yes or true.
func FlagOn(v string) bool {
	on, _ := Flag("", v)
	return on
}

// Policy maps StrictHostKeyChecking values to fanout's policies.
func Policy(v string) (string, error) {
	switch strings.ToLower(v) {
	case "yes", "true", "ask":
		return hostkeys.Strict, nil
	case "accept-new":
		return hostkeys.AcceptNew, nil
	case "no", "false", "off":
		return hostkeys.Off, nil
	}
	return "", fmt.Errorf("ssh: StrictHostKeyChecking=%q: want yes, ask, accept-new or no", v)
}

// supportedKex are the key exchanges x/crypto/ssh implements.
var supportedKex = []string{
	"curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256",
	"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
	"diffie-hellman-group14-sha256", "diffie-hellman-group16-sha512",
	"diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha1",
}

// KexList is Kex from DefaultKex.
func KexList(v string) ([]string, error) { return Kex(v, DefaultKex) }

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// ParsePort reads a Port value as OpenSSH does: a number 1-65535 or a
// service name (Port http).
func ParsePort(v string) (int, error) {
	if v != "" && strings.Trim(v, "0123456789") == "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return 0, fmt.Errorf("bad port %q: want 1-65535 or a service name", v)
		}
		return p, nil
	}
	p, err := net.LookupPort("tcp", v)
	if err != nil || p < 1 {
		return 0, fmt.Errorf("bad port %q: not a number 1-65535 nor a known service name", v)
	}
	return p, nil
}

// ParseTime reads a time value as OpenSSH does: seconds, or a sequence of
// numbers with units (s, m, h, d, w: 1m30s), or none. none reports none.
func ParseTime(v string) (d time.Duration, none bool, err error) {
	if v == "none" {
		return 0, true, nil
	}
	bad := fmt.Errorf("invalid time value %q: want seconds, or units as in 1m30s (s, m, h, d, w), or none", v)
	if v == "" {
		return 0, false, bad
	}
	var total int64
	for s := v; s != ""; {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, false, bad
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return 0, false, bad
		}
		s = s[i:]
		mult := int64(1)
		if s != "" {
			switch s[0] {
			case 's', 'S':
			case 'm', 'M':
				mult = 60
			case 'h', 'H':
				mult = 3600
			case 'd', 'D':
				mult = 86400
			case 'w', 'W':
				mult = 7 * 86400
			default:
				return 0, false, bad
			}
			s = s[1:]
		}
		if n > (1<<31-1)/mult || total+n*mult > 1<<31-1 {
			return 0, false, bad
		}
		total += n * mult
	}
	return time.Duration(total) * time.Second, false, nil
}

func parseInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("integer value %q: not a number", v)
	}
	return n, nil
}

// opensshOnlyKex are key exchanges of OpenSSH that x/crypto lacks: a
// list that names them is read without them.
var opensshOnlyKex = []string{
	"sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
	"mlkem768nistp256-sha256", "mlkem1024nistp384-sha384",
	"diffie-hellman-group18-sha512", "diffie-hellman-group1-sha1",
	"diffie-hellman-group-exchange-sha1",
}

// checkKex checks a KexAlgorithms value: every name known (a removal, -,
// is not checked, as in OpenSSH).
func checkKex(v string) error {
	if strings.HasPrefix(v, "-") {
		return nil
	}
	_, err := Kex(v, DefaultKex)
	return err
}

// Kex is the key exchange list a KexAlgorithms value makes from base: a
// list, or +list (appended), -list (removed), ^list (put first). Names of
// OpenSSH that x/crypto lacks are dropped; a list of only those is an
// error.
func Kex(v string, base []string) ([]string, error) {
	op := byte(0)
	if v != "" && strings.ContainsRune("+-^", rune(v[0])) {
		op, v = v[0], v[1:]
	}
	var names []string
	for _, n := range SplitList(v) {
		if slices.Contains(opensshOnlyKex, n) {
			continue
		}
		if !slices.Contains(supportedKex, n) && op != '-' {
			return nil, fmt.Errorf("KexAlgorithms %q: not supported (supported: %s)", n, strings.Join(supportedKex, ","))
		}
		names = append(names, n)
	}
	switch op {
	case '+':
		out := slices.Clone(base)
		for _, n := range names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out, nil
	case '-':
		return slices.DeleteFunc(slices.Clone(base), func(k string) bool { return slices.Contains(names, k) }), nil
	case '^':
		rest := slices.DeleteFunc(slices.Clone(base), func(k string) bool { return slices.Contains(names, k) })
		return append(names, rest...), nil
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("KexAlgorithms %q: none of them is implemented by fanout (supported: %s)", v, strings.Join(supportedKex, ","))
	}
	return names, nil
}

// Jump is one hop of a ProxyJump.
type Jump struct {
	User string // "" = the hop's own config, else the local user
	Host string
	Port int // 0 = the hop's own config, else 22
}

func (j Jump) String() string {
	s := j.Host
	if strings.Contains(s, ":") || strings.Trim(s, "0123456789.") == "" {
		s = "[" + s + "]"
	}
	if j.User != "" {
		s = j.User + "@" + s
	}
	if j.Port > 0 {
		s += ":" + strconv.Itoa(j.Port)
	}
	return s
}

// ParseJump reads a ProxyJump value: hops separated by commas, first hop
// first, each [user@]host[:port] or ssh://[user@]host[:port]; "none" is
// nil. As OpenSSH, '#' starts a comment anywhere in the value.
func ParseJump(v string) ([]Jump, error) {
	if i := strings.IndexByte(v, '#'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimRight(v, " \t\r\n")
	if strings.EqualFold(v, "none") {
		return nil, nil
	}
	var hops []Jump
	for _, h := range strings.Split(v, ",") {
		j, err := parseHop(h)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %q: %v", v, err)
		}
		hops = append(hops, j)
	}
	return hops, nil
}

// parseHop reads [user@]host[:port] or ssh://[user@]host[:port].
func parseHop(s string) (Jump, error) {
	var j Jump
	if rest, ok := strings.CutPrefix(s, "ssh://"); ok {
		if strings.ContainsAny(rest, "/?") && strings.TrimRight(rest, "/") != rest {
			rest = strings.TrimRight(rest, "/")
		}
		if strings.ContainsAny(rest, "/?#;") {
			return j, fmt.Errorf("%q: a path or parameters in an ssh:// URI", s)
		}
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			u, err := url.PathUnescape(rest[:i])
			if err != nil || u == "" {
				return j, fmt.Errorf("%q: bad user", s)
			}
			j.User, rest = u, rest[i+1:]
		}
		return hostPort(j, rest, s)
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		if i == 0 {
			return j, fmt.Errorf("%q: empty user", s)
		}
		j.User, s = s[:i], s[i+1:]
	}
	return hostPort(j, s, s)
}

func hostPort(j Jump, s, orig string) (Jump, error) {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return j, fmt.Errorf("%q: no closing ]", orig)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return j, fmt.Errorf("%q: text after ]", orig)
			}
			port = port[1:]
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if strings.Contains(port, ":") {
			return j, fmt.Errorf("%q: an IPv6 address goes in brackets", orig)
		}
	}
	if host == "" {
		return j, fmt.Errorf("%q: empty host", orig)
	}
	j.Host = host
	if port != "" {
		p, err := ParsePort(port)
		if err != nil {
			return j, fmt.Errorf("%q: %v", orig, err)
		}
		j.Port = p
	}
	return j, nil
}

// SplitList splits an OpenSSH list (commas or spaces).
func SplitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// ExpandTilde expands a leading ~ or ~/ to home.
func ExpandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return home + p[1:]
	}
	return p
}
