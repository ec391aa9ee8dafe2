package target

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// A target may carry more than its host: a zone (fe80::1%eth0), and, when
// the job takes them, a port (host:22, [::1]:2222) and a user (root@host).
// Such a target is kept among the names, as text in one canonical form
// (user@host:port, with the IPv6 address in brackets when a port follows
// it), and read back by At: entries are rare next to plain hosts, and
// this keeps them at the cost of their bytes.

// qualified is a host spec and what it carries.
type qualified struct {
	user string
	host string // as written, without the brackets of an IPv6 address
	port uint16
}

// qualifiers splits user@ and :port off spec, refusing those the job does
// not take.
func (b *builder) qualifiers(spec string) (qualified, error) {
	q := qualified{host: spec}
	hasUser, hasPort := false, false
	var port string
	if i := strings.LastIndexByte(spec, '@'); i >= 0 {
		hasUser = true
		q.user, q.host = spec[:i], spec[i+1:]
	}
	if h, p, ok := splitPort(q.host); ok {
		hasPort = true
		q.host, port = h, p
	}
	if !hasUser && !hasPort {
		return q, nil
	}
	if noUser, noPort := hasUser && !b.takes.User, hasPort && !b.takes.Port; noUser || noPort {
		return q, b.refuse(noUser, noPort)
	}
	if hasUser {
		if err := checkUser(q.user); err != nil {
			return q, err
		}
	}
	if hasPort {
		p, err := parsePort(port)
		if err != nil {
			return q, err
		}
		q.port = p
	}
	if q.host == "" {
		return q, errors.New("empty host (want user@host, host:22 or [fd00::1]:22)")
	}
	if inner, prefix, ok := bracketed6(q.host); ok && prefix == "" {
		q.host = inner
	}
	return q, nil
}

// refuse is the error for a user or port the job does not take.
func (b *builder) refuse(user, port bool) error {
	what := "port"
	switch {
	case user && port:
		what = "user or port"
	case user:
		what = "user"
	}
	job := b.job
	if job == "" {
		job = "this job"
	}
	msg := job + " takes no " + what
	if b.takes.Note != "" {
		msg += ": " + b.takes.Note
	}
	return errors.New(msg + " (targets are hosts, addresses, CIDRs, ranges, node-sets)")
}

// splitPort splits host:port at the one colon outside brackets, if there is
// exactly one: an IPv6 address has more, and carries a port only in
// brackets ([fd00::1]:22).
func splitPort(s string) (host, port string, ok bool) {
	depth, colons, last := 0, 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				colons++
				last = i
			}
		}
	}
	if colons != 1 {
		return s, "", false
	}
	return s[:last], s[last+1:], true
}

func parsePort(p string) (uint16, error) {
	if p == "" {
		return 0, errors.New("empty port after ':' (want host:22)")
	}
	if len(p) > 5 || !onlyDigits(p) {
		return 0, fmt.Errorf("port %q is not a number (want 1-65535)", p)
	}
	n, _ := strconv.Atoi(p)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range (want 1-65535)", n)
	}
	return uint16(n), nil
}

func onlyDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkUser accepts the user names of Unix and Windows accounts: letters,
// digits and . _ - $ + \ @, 1 to 64 of them, not starting with '-'.
func checkUser(u string) error {
	switch {
	case u == "":
		return errors.New("empty user before '@' (want user@host)")
	case len(u) > 64:
		return fmt.Errorf("user %q longer than 64 characters", u)
	case u[0] == '-':
		return fmt.Errorf("user %q starts with '-'", u)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-$+\\@", c) >= 0) {
			r := []rune(u[i:])[0]
			return fmt.Errorf("%q is not allowed in a user name (want letters, digits, '.', '_', '-')", r)
		}
	}
	return nil
}

// checkZone accepts interface names and numbers: letters, digits, '.', '_'
// and '-', 1 to 15 of them (Linux's IFNAMSIZ).
func checkZone(z string) error {
	if len(z) > 15 {
		return fmt.Errorf("zone %q longer than 15 characters (want an interface name or number, as in fe80::1%%eth0)", z)
	}
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("zone %q is not an interface name or number (want fe80::1%%eth0; a port goes after brackets, [fe80::1%%eth0]:22)", z)
		}
	}
	return nil
}

// addQualified adds a host or node-set with a user or port.
func (b *builder) addQualified(q qualified) error {
	if strings.ContainsAny(q.host, "[]") {
		return b.addNodeSet(q.host, &q)
	}
	return addEntry(b, q.user, q.host, q.port)
}

// addEntry adds one host (an address or a hostname, not a CIDR, range or
// node-set) with its user, port or zone, in canonical form.
func addEntry[T text](b *builder, user string, host T, port uint16) error {
	buf := b.buf[:0]
	if user != "" {
		buf = append(buf, user...)
		buf = append(buf, '@')
	}
	what := ""
	switch {
	case indexByte(host, '/') >= 0:
		what = "a CIDR"
	case onlyDigitsDotsDash(host):
		if indexByte(host, '-') >= 0 {
			what = "a range"
			break
		}
		v, err := parseIPv4(host)
		if err != nil {
			return err
		}
		buf = addr4(uint64(v)).AppendTo(buf)
	case indexByte(host, ':') >= 0:
		if indexByte(host, '-') >= 0 {
			what = "a range"
			if indexByte(host, '%') >= 0 && user == "" && port == 0 {
				return fmt.Errorf("%q: only an address takes a zone, not a range", host)
			}
			break
		}
		a, err := parseIPv6Zoned(string(host))
		if err != nil {
			return err
		}
		if port != 0 {
			buf = append(buf, '[')
		}
		buf = a.AppendTo(buf)
		if port != 0 {
			buf = append(buf, ']')
		}
	case indexByte(host, '%') >= 0:
		return fmt.Errorf("%q: only an IPv6 address takes a zone (as in fe80::1%%eth0)", host)
	default:
		if err := checkHostname(host); err != nil {
			return err
		}
		buf = append(buf, host...)
	}
	if what != "" {
		return fmt.Errorf("%q is %s: a user or port goes with one host or address (a node-set gives it to each of its hosts)", host, what)
	}
	if port != 0 {
		buf = append(buf, ':')
		buf = strconv.AppendUint(buf, uint64(port), 10)
	}
	b.buf = buf
	if len(buf) > maxNameLen {
		return fmt.Errorf("%q is longer than %d bytes", buf, maxNameLen)
	}
	b.entries++
	return addName(b, buf)
}

func indexByte[T text](s T, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// parseIPv6Zoned reads an IPv6 address that may carry a zone.
func parseIPv6Zoned(s string) (netip.Addr, error) {
	addr, zone, _ := strings.Cut(s, "%")
	a, err := parseIPv6(addr)
	if err != nil {
		return a, err
	}
	if zone == "" && strings.Contains(s, "%") {
		return a, fmt.Errorf("%q: empty zone after '%%' (want fe80::1%%eth0)", s)
	}
	if zone == "" {
		return a, nil
	}
	if err := checkZone(zone); err != nil {
		return a, err
	}
	return a.WithZone(zone), nil
}

// isEntry reports whether a stored name is an entry (has a zone, port, user
// or address) rather than a plain hostname, which has none of '@', ':',
// '%', '='.
func isEntry(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '@' || c == ':' || c == '%' || c == '=' {
			return true
		}
	}
	return false
}

// parseEntry reads back an entry that addEntry stored.
func parseEntry(s string) Target {
	var t Target
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		t.User, s = s[:i], s[i+1:]
	}
	name := ""
	if i := strings.IndexByte(s, '='); i >= 0 {
		name, s = s[:i], s[i+1:]
	}
	port := ""
	if s != "" && s[0] == '[' {
		j := strings.IndexByte(s, ']')
		s, port = s[1:j], s[j+1:]
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.IndexByte(s, ':'); i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		s, port = s[:i], s[i+1:]
	}
	if port != "" {
		p, _ := strconv.ParseUint(port, 10, 16)
		t.Port = uint16(p)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		t.Addr = a
	} else {
		t.Host = s
	}
	if name != "" {
		t.Host = name
	}
	return t
}

func v4of(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// Spec is t written as a target spec that Parse reads back (with the port
// and user taken): user@host:port, [fd00::1]:22, fe80::1%eth0, a name with
// its address web1=10.0.0.5, or its Name.
func (t Target) Spec() string {
	host := t.Name()
	if t.Host != "" && t.Addr.IsValid() {
		host = t.Addr.String()
	}
	if t.Port != 0 && t.Addr.Is6() {
		host = "[" + host + "]"
	}
	if t.Host != "" && t.Addr.IsValid() {
		host = t.Host + "=" + host
	}
	if t.User != "" {
		host = t.User + "@" + host
	}
	if t.Port != 0 {
		host += ":" + strconv.Itoa(int(t.Port))
	}
	return host
}

// addAliased adds a name with the address to reach it at, name=addr (an
// inventory's ansible_host), with q's user and port: the name is what
// results show, the address what the job connects to.
func (b *builder) addAliased(q qualified) error {
	name, addr, _ := strings.Cut(q.host, "=")
	switch {
	case name == "" || addr == "":
		return fmt.Errorf("%q: want name=address, as in web1=10.0.0.5", q.host)
	case strings.ContainsAny(name, "[]"):
		return fmt.Errorf("%q: a node-set takes no address (name=address names one host)", q.host)
	case strings.IndexByte(addr, '=') >= 0:
		return fmt.Errorf("%q: want one '=' (name=address)", q.host)
	}
	if err := checkHostname(name); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(name); err == nil || onlyDigitsDotsDash(name) {
		return fmt.Errorf("%q: %q is an address, not a name (want name=address, as in web1=10.0.0.5)", q.host, name)
	}
	if inner, prefix, ok := bracketed6(addr); ok && prefix == "" {
		addr = inner
	}
	var a netip.Addr
	if strings.IndexByte(addr, ':') >= 0 {
		var err error
		if a, err = parseIPv6Zoned(addr); err != nil {
			return err
		}
	} else if onlyDigitsDotsDash(addr) && strings.IndexByte(addr, '-') < 0 {
		v, err := parseIPv4(addr)
		if err != nil {
			return err
		}
		a = addr4(uint64(v))
	} else {
		return fmt.Errorf("%q: the address after '=' is one IPv4 or IPv6 address (as in web1=10.0.0.5)", q.host)
	}
	t := Target{Host: name, Addr: a, Port: q.port, User: q.user}
	s := t.Spec()
	if len(s) > maxNameLen {
		return fmt.Errorf("%q is longer than %d bytes", s, maxNameLen)
	}
	b.entries++
	return addName(b, s)
}

// Variables a host line may carry, as an Ansible inventory writes them.
const (
	varHost = "ansible_host"
	varPort = "ansible_port"
	varUser = "ansible_user"
)

// addHostLine adds a host line of an inventory: a host, an address or
// a name, then ansible_host=, ansible_port=, ansible_user=, separated
// by spaces: web1 ansible_host=10.0.0.5 ansible_port=2222 ansible_user=deploy.
// Unlike user@host:port, what the job does not take is left out, not
// refused: an inventory describes hosts for every job (ping ignores the
// port and user, tcp takes the port, ssh both).
func (b *builder) addHostLine(spec string) error {
	fields := strings.Fields(spec)
	host := fields[0]
	if strings.ContainsAny(host, "[]@,") && !isBracketed6(host) {
		return fmt.Errorf("%q: a host line starts with one host or address (no node-set, user or list)", host)
	}
	if inner, prefix, ok := bracketed6(host); ok && prefix == "" {
		host = inner
	}
	var q qualified
	alias := ""
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return fmt.Errorf("%q: want ansible_host=ADDRESS, ansible_port=PORT or ansible_user=USER after the host", f)
		}
		switch k {
		case varHost:
			alias = v
		case varPort:
			p, err := parsePort(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if b.takes.Port || b.takes.VarPort {
				q.port = p
			}
		case varUser:
			if err := checkUser(v); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if b.takes.User {
				q.user = v
			}
		default:
			return fmt.Errorf("%q: want ansible_host=ADDRESS, ansible_port=PORT or ansible_user=USER after the host", f)
		}
	}
	q.host = host
	if alias != "" && alias != host {
		if inner, prefix, ok := bracketed6(alias); ok && prefix == "" {
			alias = inner
		}
		if _, err := netip.ParseAddr(alias); err == nil {
			if _, err := netip.ParseAddr(host); err != nil {
				q.host = host + "=" + alias
				return b.addAliased(q)
			}
		}
		// A name (or a host that is an address itself) to reach the host
		// by: it is the target, as it is what the job connects to.
		q.host = alias
	}
	if strings.ContainsAny(q.host, "/[]") || strings.Count(q.host, "-") > 0 && onlyDigitsDotsDash(q.host) {
		return fmt.Errorf("%q: a host line names one host or address, not a CIDR, range or node-set", q.host)
	}
	if q.user == "" && q.port == 0 && strings.IndexByte(q.host, '%') < 0 {
		return b.addPlain(q.host)
	}
	return addEntry(b, q.user, q.host, q.port)
}

func isBracketed6(s string) bool {
	_, prefix, ok := bracketed6(s)
	return ok && prefix == ""
}
