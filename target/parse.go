package target

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

// ParseOptions tune Parse.
type ParseOptions struct {
	Excludes   []string // specs removed from the set (same syntax)
	MaxTargets uint64   // refuse sets larger than this; 0 = DefaultMaxTargets
	AllowHuge  bool     // accept IPv6 prefixes of /64 and larger

	// SkipNetworkBroadcast leaves out the network and broadcast addresses
	// of the IPv4 CIDRs of /30 and wider among the targets (not the
	// excludes), as fping -g does: 10.0.0.0/24 is 10.0.0.1 to 10.0.0.254.
	// A /31 or /32, a range, an octet range and IPv6 keep every address.
	SkipNetworkBroadcast bool
	Stdin                io.Reader // read for the spec "-"

	// Takes is what the job lets a target carry besides its host (a port,
	// a user); Job names the job in the error that refuses the others:
	// `parse "host:22": ping takes no port (...)`.
	Takes Takes
	Job   string

	// List, when set, is called for every "-" and @FILE spec, in the order
	// Parse meets them (the targets, then the excludes), and returns the
	// reader of its lines in place of Stdin or the file: a caller records
	// the lists as they are read, or replays recorded ones. A reader that
	// is an io.Closer is closed once read.
	List func(spec string) (io.Reader, error)
}

// Takes says what a job lets a target carry besides its host. Parse
// refuses a port or a user the job does not take, saying so.
type Takes struct {
	Port bool // host:22, 10.0.0.1:22, [fd00::1]:2222, [fe80::1%eth0]:22
	User bool // user@host
	// VarPort takes the port of a host line's ansible_port (an
	// inventory's), though not host:22: tcp, whose -p gives the ports
	// otherwise. A job that takes neither ignores ansible_port.
	VarPort bool
	Note    string // said when a port or user is refused, as in "its ports come from -p"
}

// Errors Parse wraps, for callers that want to tell them apart.
var (
	ErrNoTargets = errors.New("no targets")
	ErrTooMany   = errors.New("too many targets")
)

// Accepted is the one-line summary of the spec forms, for usage errors.
const Accepted = "want an address (10.0.0.1, ::1, [::1], fe80::1%eth0), a CIDR (10.0.0.0/24, fd00::/120), " +
	"a range (10.0.0.1-10.0.0.50, 10.0.0.1-50, 10.0.1-3.*, fd00::1-ff), a node-set (web[01-20].example.com, n[1-9/2]), " +
	"a hostname (letters, digits, '-', '.', '_'), a set operation (a,b!c&d^e), @FILE (a list or an Ansible inventory) or -"

// Parse turns target specs into a Set.
//
// A spec is one of:
//
//	10.0.0.1, ::1, [::1]           an address
//	fe80::1%eth0, [fe80::1%eth0]   an IPv6 address with its zone (interface)
//	10.0.0.0/24, fd00::/120        a CIDR (host bits are masked off)
//	10.0.0.1-10.0.0.50, 10.0.0.1-50, fd00::1-fd00::ff, fd00::1-ff
//	                               an inclusive range; the short end replaces
//	                               the last octet (IPv4) or hextet (IPv6)
//	10.0.1-3.5, 10.0.0.*, 10.0-3.0.1-254, 10.0.0.1,3-5, 10.0.0.250-
//	                               nmap's octet ranges: the product of the
//	                               four octets' numbers, ranges, lists, *
//	web[01-20].example.com         a node-set: each [a-b,c,...] group expands to
//	db[1-3,7].dc[1-2]              its numbers, keeping a's zero padding; several
//	                               groups expand to their cartesian product with
//	                               the rightmost group varying fastest
//	                               (db1.dc1, db1.dc2, db2.dc1, ...); every
//	                               expansion is then read as a spec of its own,
//	                               so 10.0.0.[1-5] is five addresses;
//	                               a-b/step takes every step-th (n[1-9/2])
//	a,b!c&d^e                      ClusterShell's set operations, left to
//	                               right: union, difference, intersection,
//	                               symmetric difference
//	host.example.com               a hostname, resolved later by the job
//	web1=10.0.0.5                  a name and the address to reach it at
//	web1 ansible_host=10.0.0.5 ansible_port=2222 ansible_user=deploy
//	                               an inventory's host line: the port and
//	                               user are kept when the job takes them,
//	                               else left out (not refused)
//	@FILE                          the specs in FILE, one a line; '#' starts a
//	                               comment, blank lines are skipped; a line
//	                               "host[:port] user" (pssh's hosts file) is
//	                               user@host[:port]; UTF-8
//	                               (a byte order mark is skipped) or UTF-16
//	                               (decoded), LF or CRLF line ends; or an
//	                               Ansible inventory, all its hosts
//	                               (see ReadInventory)
//	-                              the same, read from opts.Stdin (once)
//
// When the job takes them (opts.Takes), a host, address or node-set may
// carry a port, host:22, 10.0.0.1:22, [fd00::1]:2222, [fe80::1%eth0]:22, and
// a user, user@host, root@web[1-3]:2222; every expansion of a node-set then
// carries both. CIDRs and ranges carry neither, nor a zone.
//
// The Set's canonical order is: IPv4 addresses ascending, then IPv6 addresses
// ascending, then names, zoned addresses and targets with a port or user, in
// first-seen order. Addresses given several times (overlapping CIDRs and
// ranges) count once; names given several times (ASCII case-insensitively,
// ignoring a trailing dot) count once, spelt as first seen, and so do the
// targets with a zone, port or user, as written the same way.
// opts.Excludes, in the same syntax, are removed; an excluded host or
// address also removes the targets that name it with a zone, port or user.
//
// Address ranges stay intervals: a /8 costs a few bytes, and a set over
// opts.MaxTargets is refused by arithmetic, never materialized. IPv6 prefixes
// of /64 and shorter are refused unless opts.AllowHuge. Names (hostnames and
// node-set expansions that are not addresses) are held in memory, as they
// have to be deduplicated: a name costs its bytes plus about one, as in a
// file of one name a line, while Parse runs, plus a dedup table of 4 to 8
// bytes a name.
func Parse(specs []string, opts ParseOptions) (Set, error) {
	limit := opts.MaxTargets
	if limit == 0 {
		limit = DefaultMaxTargets
	}
	in := &sources{stdin: opts.Stdin, list: opts.List}
	inc := &builder{limit: limit, allowHuge: opts.AllowHuge, takes: opts.Takes, job: opts.Job, skipEdges: opts.SkipNetworkBroadcast}
	if err := eachSpec(specs, in, inc.add); err != nil {
		return nil, err
	}
	ex := &builder{limit: limit, allowHuge: true, takes: opts.Takes, job: opts.Job}
	if err := eachSpec(opts.Excludes, in, ex.add); err != nil {
		return nil, fmt.Errorf("exclude: %w", err)
	}

	inc.flush()
	ex.flush()
	ex4, ex6 := merge(ex.v4), merge(ex.v6)
	s := &set{
		v4: subtract(merge(inc.v4), ex4),
		v6: subtract(merge(inc.v6), ex6),
	}
	given := len(inc.v4) + len(inc.v6) + inc.names.len()
	exNames := ex.names.len() > 0
	exAddrs := inc.entries > 0 && len(ex4)+len(ex6) > 0
	if exNames || exAddrs {
		// The dedup table of inc is no longer needed: drop it first.
		all := inc.names.freeze()
		s.names = all.filter(func(name string) bool {
			if exNames && has(&ex.names, name) {
				return false
			}
			if !isEntry(name) {
				return true
			}
			t := parseEntry(name)
			switch {
			case t.Host != "":
				if exNames && has(&ex.names, t.Host) {
					return false
				}
				switch {
				case t.Addr.Is4():
					return !within(ex4, u32(v4of(t.Addr)))
				case t.Addr.IsValid():
					return !within(ex6, u128From16(t.Addr.As16()))
				}
				return true
			case t.Addr.Is4():
				return !within(ex4, u32(v4of(t.Addr)))
			default:
				return !within(ex6, u128From16(t.Addr.As16()))
			}
		})
	} else {
		s.names = inc.names.freeze()
	}

	var ok4, ok6 bool
	s.s4, s.n4, ok4 = starts(s.v4, limit)
	s.s6, s.n6, ok6 = starts(s.v6, limit)
	if !ok4 || !ok6 || s.n6 > limit-s.n4 || uint64(s.names.n) > limit-s.n4-s.n6 {
		return nil, tooMany(total(s.v4, s.v6, s.names.n), limit)
	}
	if s.Len() == 0 {
		if len(opts.Excludes) > 0 && given > 0 {
			return nil, fmt.Errorf("%w: the excludes remove every target", ErrNoTargets)
		}
		return nil, fmt.Errorf("%w: give addresses, CIDRs, ranges, node-sets, hostnames, @FILE or -", ErrNoTargets)
	}
	return s, nil
}

func tooMany(n string, limit uint64) error {
	return fmt.Errorf("%w: %s targets is more than the limit of %d; raise it with --max-targets N", ErrTooMany, n, limit)
}

// total counts the targets exactly, for the error message of a set too large
// for a uint64 (an IPv6 /0 has 2^128 addresses).
func total(v4 []span4, v6 []span6, names int) string {
	t := big.NewInt(int64(names))
	for _, iv := range v4 {
		t.Add(t, iv.hi.bigCount(iv.lo))
	}
	for _, iv := range v6 {
		t.Add(t, iv.hi.bigCount(iv.lo))
	}
	return t.String()
}

// sources hands out the readers of "-" (standard input, once) and @FILE
// specs.
type sources struct {
	stdin io.Reader
	used  bool
	list  func(spec string) (io.Reader, error)
}

// open is the reader of spec ("-" or "@FILE"), the name that errors give
// it, and whether the caller closes it.
func (s *sources) open(spec string) (r io.Reader, name string, owned bool, err error) {
	name = "stdin"
	if spec == "-" {
		switch {
		case s.used:
			return nil, "", false, errors.New(`"-": standard input was already read by an earlier "-"`)
		case s.list == nil && s.stdin == nil:
			return nil, "", false, errors.New(`"-": no standard input to read targets from`)
		}
		s.used = true
		if s.list == nil {
			return s.stdin, name, false, nil
		}
	} else if name = spec[1:]; name == "" {
		return nil, "", false, fmt.Errorf(`parse "@": want @FILE, a file of specs one a line`)
	}
	if s.list != nil {
		r, err = s.list(spec)
		if err != nil {
			if spec == "-" {
				spec = `"-"`
			}
			return nil, "", false, fmt.Errorf("%s: %w", spec, err)
		}
		return r, name, true, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, "", false, fmt.Errorf("@%s: open: %w", name, pathErr(err))
	}
	return f, name, true, nil
}

// builder collects the addresses and names of specs.
type builder struct {
	limit     uint64
	allowHuge bool
	takes     Takes
	job       string
	skipEdges bool // ParseOptions.SkipNetworkBroadcast
	v4        []span4
	v6        []span6
	s4        singles[u32] // single addresses, kept small until flush
	s6        singles[u128]
	names     nameTable
	entries   int    // names that are zoned addresses or carry a port or user
	buf       []byte // scratch for an entry's text
}

// flush turns the single addresses into intervals.
func (b *builder) flush() {
	b.s4.flush(&b.v4)
	b.s6.flush(&b.v6)
}

// eachSpec calls fn with every spec of specs, reading "-" and @FILE entries
// one level deep, and puts the file and line in fn's errors. The spec
// handed to fn may be a view of a read buffer: fn must copy what it keeps.
func eachSpec(specs []string, in *sources, fn func(spec string) error) error {
	for _, spec := range specs {
		var err error
		if spec == "-" || strings.HasPrefix(spec, "@") {
			err = eachListed(spec, in, fn)
		} else {
			err = fn(spec)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// eachListed calls fn with every spec of the list spec names.
func eachListed(spec string, in *sources, fn func(spec string) error) error {
	r, name, owned, err := in.open(spec)
	if err != nil {
		return err
	}
	if c, ok := r.(io.Closer); ok && owned {
		defer c.Close()
	}
	br := bufio.NewReaderSize(decodeText(r), 64<<10)
	if head, _ := br.Peek(64 << 10); inventoryFormat(name, head) != "" {
		return eachInventoryHost(br, name, fn)
	}
	return eachDecodedLine(br, name, func(line int, spec string) error {
		if spec == "-" || strings.HasPrefix(spec, "@") {
			return fmt.Errorf("%s:%d: parse %q: %s inside a file is not supported (one level only)", name, line, spec, spec[:1])
		}
		if err := fn(spec); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		return nil
	})
}

// psshLine reads a host file line in pssh's format, "host[:port] user", as
// user@host[:port] (for a job that takes users); any other spec is
// returned as it is.
func psshLine(line string) string {
	if !strings.ContainsAny(line, " \t") {
		return line
	}
	f := strings.Fields(line)
	if len(f) != 2 || strings.Contains(f[0], "@") || strings.ContainsAny(f[1], "@:[]/,") || f[1][0] == '-' {
		return line
	}
	return f[1] + "@" + f[0]
}

// pathErr drops the path an *fs.PathError repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// eachDecodedLine calls fn with each spec of r: '#' starts a comment, blank
// lines are skipped, surrounding space is trimmed. r is what decodeText
// made of the file (UTF-8, or UTF-16 decoded). spec is a view of the
// scanner's buffer, valid until fn returns: a line costs no allocation.
func eachDecodedLine(r io.Reader, name string, fn func(line int, spec string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Bytes()
		if i := bytes.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = bytes.TrimSpace(text)
		if len(text) == 0 {
			continue
		}
		if err := fn(line, unsafe.String(&text[0], len(text))); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: read: %w", name, line+1, pathErr(err))
	}
	return nil
}

// bracketed6 reports whether s is an IPv6 literal in brackets, [::1] or
// [fd00::]/120, rather than a node-set, and returns the parts around ']'.
func bracketed6(s string) (inner, prefix string, ok bool) {
	if len(s) < 2 || s[0] != '[' {
		return "", "", false
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return "", "", false
	}
	inner, prefix = s[1:end], s[end+1:]
	if !strings.Contains(inner, ":") || strings.Contains(inner, "[") || strings.ContainsAny(prefix, "[]") ||
		(prefix != "" && prefix[0] != '/') {
		return "", "", false
	}
	return inner, prefix, true
}

// splitTop splits s at the commas outside brackets.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func parseErr(spec string, err error) error { return fmt.Errorf("parse %q: %w", spec, err) }

// add adds one spec proper (no "-" or @FILE): a comma-separated list of
// specs, as Fold writes them.
func (b *builder) add(spec string) error {
	if spec == "" {
		return parseErr(spec, errors.New("empty target; "+Accepted))
	}
	if strings.ContainsAny(spec, "!&^") && setOps(spec) {
		return b.addSetOps(spec)
	}
	if strings.IndexByte(spec, ',') >= 0 && !octetRanges(spec) {
		if parts := splitTop(spec); len(parts) > 1 {
			for _, p := range parts {
				if p == "" {
					return parseErr(spec, errors.New("empty item in a comma-separated list"))
				}
				if err := b.add(p); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if spec[0] == '@' {
		return parseErr(spec, errors.New("@FILE goes alone, not in a comma-separated list"))
	}
	if strings.ContainsAny(spec, " \t") && strings.Contains(spec, "ansible_") {
		if err := b.addHostLine(spec); err != nil {
			return parseErr(spec, err)
		}
		return nil
	}
	if b.takes.User {
		spec = psshLine(spec)
	}
	q, err := b.qualifiers(spec)
	if err != nil {
		return parseErr(spec, err)
	}
	if strings.IndexByte(q.host, '=') >= 0 {
		if err := b.addAliased(q); err != nil {
			return parseErr(spec, err)
		}
		return nil
	}
	if q.user != "" || q.port != 0 {
		if err := b.addQualified(q); err != nil {
			return parseErr(spec, err)
		}
		return nil
	}
	if strings.ContainsAny(spec, "[]") {
		if inner, prefix, ok := bracketed6(spec); ok {
			if strings.Contains(inner, "/") {
				return parseErr(spec, errors.New("want an IPv6 address inside [ ], as in [::1] or [fd00::]/120"))
			}
			if err := b.addPlain(inner + prefix); err != nil {
				return parseErr(spec, err)
			}
			return nil
		}
		if err := b.addNodeSet(spec, nil); err != nil {
			return parseErr(spec, err)
		}
		return nil
	}
	if err := b.addPlain(spec); err != nil {
		return parseErr(spec, err)
	}
	return nil
}

// addPlain adds a spec without brackets: address, CIDR, range or hostname.
func (b *builder) addPlain(s string) error {
	switch {
	case strings.Contains(s, "/"):
		return b.addCIDR(s)
	case strings.Contains(s, ":"):
		if lo, hi, ok := strings.Cut(s, "-"); ok {
			return b.addRange6(lo, hi)
		}
		if strings.IndexByte(s, '%') >= 0 {
			return addEntry(b, "", s, 0)
		}
		a, err := parseIPv6(s)
		if err != nil {
			return err
		}
		b.s6.add(u128From16(a.As16()), &b.v6)
		return nil
	case octetRanges(s):
		return b.addOctets(s)
	case onlyDigitsDotsDash(s):
		if lo, hi, ok := strings.Cut(s, "-"); ok {
			return b.addRange4(lo, hi)
		}
		v, err := parseIPv4(s)
		if err != nil {
			return err
		}
		b.s4.add(u32(v), &b.v4)
		return nil
	}
	if strings.IndexByte(s, '%') >= 0 {
		return fmt.Errorf("%q: only an IPv6 address takes a zone (as in fe80::1%%eth0)", s)
	}
	if err := checkHostname(s); err != nil {
		return err
	}
	return addName(b, s)
}

// addName adds a checked hostname unless it is there already.
func addName[T text](b *builder, s T) error {
	if uint64(b.names.len()) >= b.limit && !has(&b.names, s) {
		return tooMany(fmt.Sprintf("more than %d", b.limit), b.limit)
	}
	_, err := add(&b.names, s)
	return err
}

func onlyDigitsDotsDash[T text](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// parseIPv4 reads a.b.c.d strictly, with errors that name the bad octet.
func parseIPv4[T text](s T) (uint32, error) {
	var v uint32
	octets := 0
	for start := 0; start <= len(s); {
		end := start
		for end < len(s) && s[end] != '.' {
			end++
		}
		if octets++; octets > 4 {
			break
		}
		o, err := parseOctet(s[start:end])
		if err != nil {
			return 0, err
		}
		v = v<<8 | uint32(o)
		start = end + 1
	}
	if octets != 4 {
		return 0, fmt.Errorf("%q is not an IPv4 address (want 4 octets, a.b.c.d)", s)
	}
	return v, nil
}

func parseOctet[T text](p T) (uint8, error) {
	if len(p) == 0 {
		return 0, errors.New("empty octet (want a.b.c.d)")
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, fmt.Errorf("octet %q is not a number", p)
		}
		if n < 1000 {
			n = n*10 + int(p[i]-'0')
		}
	}
	if len(p) > 3 {
		return 0, fmt.Errorf("octet %s out of range", p)
	}
	if n > 255 {
		return 0, fmt.Errorf("octet %d out of range", n)
	}
	if len(p) > 1 && p[0] == '0' {
		return 0, fmt.Errorf("octet %q has a leading zero (ambiguous: octal or decimal?)", p)
	}
	return uint8(n), nil
}

func parseIPv6(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		msg := err.Error()
		if i := strings.Index(msg, "): "); i >= 0 {
			msg = msg[i+3:]
		}
		return netip.Addr{}, fmt.Errorf("%q is not an IPv6 address: %s", s, msg)
	}
	if !a.Is6() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv6 address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: only an address takes a zone (%%%s), not a CIDR or range: give fe80::/64, or one address as in fe80::1%%%s", s, a.Zone(), a.Zone())
	}
	return a, nil
}

func (b *builder) hugeErr(what string) error {
	return fmt.Errorf("%s has 2^64 or more addresses; pass --allow-huge to accept IPv6 prefixes of /64 and shorter", what)
}

func (b *builder) addCIDR(s string) error {
	addr, ps, _ := strings.Cut(s, "/")
	v6 := strings.Contains(addr, ":")
	maxBits := 32
	if v6 {
		maxBits = 128
	}
	if ps == "" || len(ps) > 3 || !onlyDigitsDotsDash(ps) || strings.ContainsAny(ps, ".-") {
		return fmt.Errorf("prefix length %q is not a number (want 0-%d)", ps, maxBits)
	}
	bitsN, _ := strconv.Atoi(ps)
	if bitsN > maxBits {
		return fmt.Errorf("prefix length %d out of range (want 0-%d)", bitsN, maxBits)
	}
	if !v6 {
		if !onlyDigitsDotsDash(addr) || strings.Contains(addr, "-") {
			return fmt.Errorf("%q is not an address (want a CIDR such as 10.0.0.0/24 or fd00::/120)", addr)
		}
		v, err := parseIPv4(addr)
		if err != nil {
			return err
		}
		mask := uint32(0)
		if bitsN > 0 {
			mask = ^uint32(0) << (32 - bitsN)
		}
		lo := v & mask
		hi := lo | ^mask
		if b.skipEdges && bitsN <= 30 {
			lo, hi = lo+1, hi-1
		}
		b.v4 = appendSpan(b.v4, span4{u32(lo), u32(hi)})
		return nil
	}
	if a, z, ok := strings.Cut(addr, "%"); ok {
		return fmt.Errorf("a CIDR takes no zone: %%%s names the interface of one address, as in fe80::1%%%s; give %s/%s", z, z, a, ps)
	}
	a, err := parseIPv6(addr)
	if err != nil {
		return err
	}
	if bitsN <= 64 && !b.allowHuge {
		return b.hugeErr(fmt.Sprintf("an IPv6 /%d", bitsN))
	}
	p := netip.PrefixFrom(a, bitsN).Masked()
	lo := u128From16(p.Addr().As16())
	hostMask := u128{}
	switch {
	case bitsN == 0:
		hostMask = maxU128
	case bitsN < 64:
		hostMask = u128{^uint64(0) >> bitsN, ^uint64(0)}
	case bitsN < 128:
		hostMask = u128{0, ^uint64(0) >> (bitsN - 64)}
	}
	hi := u128{lo.hi | hostMask.hi, lo.lo | hostMask.lo}
	b.v6 = appendSpan(b.v6, span6{lo, hi})
	return nil
}

func (b *builder) addRange4(los, his string) error {
	lo, err := parseIPv4(los)
	if err != nil {
		return err
	}
	var hi uint32
	switch {
	case strings.Contains(his, "-"):
		return errors.New("want one '-' in a range (10.0.0.1-10.0.0.50 or 10.0.0.1-50)")
	case strings.Contains(his, "."):
		if hi, err = parseIPv4(his); err != nil {
			return err
		}
	default:
		o, err := parseOctet(his)
		if err != nil {
			return fmt.Errorf("range end: %w", err)
		}
		hi = lo&^0xff | uint32(o)
	}
	if hi < lo {
		return errors.New("range end before start")
	}
	b.v4 = appendSpan(b.v4, span4{u32(lo), u32(hi)})
	return nil
}

func (b *builder) addRange6(los, his string) error {
	if strings.Contains(los+his, "%") {
		return errors.New("a range takes no zone: a zone (%eth0) names the interface of one address, as in fe80::1%eth0")
	}
	a, err := parseIPv6(los)
	if err != nil {
		return err
	}
	lo := u128From16(a.As16())
	var hi u128
	if strings.Contains(his, ":") {
		e, err := parseIPv6(his)
		if err != nil {
			return err
		}
		hi = u128From16(e.As16())
	} else {
		if his == "" || len(his) > 4 {
			return fmt.Errorf("range end %q: want an IPv6 address or a last hextet (1 to 4 hex digits)", his)
		}
		x, err := strconv.ParseUint(his, 16, 16)
		if err != nil {
			return fmt.Errorf("range end %q: want an IPv6 address or a last hextet (1 to 4 hex digits)", his)
		}
		hi = u128{lo.hi, lo.lo&^0xffff | x}
	}
	if hi.cmp(lo) < 0 {
		return errors.New("range end before start")
	}
	if _, sat := (span6{lo, hi}).size(); sat && !b.allowHuge {
		return b.hugeErr("the range")
	}
	b.v6 = appendSpan(b.v6, span6{lo, hi})
	return nil
}

// checkHostname accepts letters, digits, '-', '.', '_' in dot-separated
// labels of 1 to 63 characters that do not start with '-'.
func checkHostname[T text](s T) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			r := []rune(string(s[i:]))[0]
			return fmt.Errorf("%q is not allowed in a hostname; %s", r, Accepted)
		}
	}
	s = trimDot(s)
	if len(s) > 253 {
		return errors.New("hostname longer than 253 characters")
	}
	for start := 0; start <= len(s); {
		end := start
		for end < len(s) && s[end] != '.' {
			end++
		}
		l := s[start:end]
		switch {
		case len(l) == 0:
			return errors.New("empty label in hostname (want name.example.com)")
		case len(l) > 63:
			return fmt.Errorf("hostname label %q longer than 63 characters", l)
		case l[0] == '-':
			return fmt.Errorf("hostname label %q starts with '-'", l)
		}
		start = end + 1
	}
	return nil
}
