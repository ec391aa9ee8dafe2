// Package hostkeys checks SSH host keys against known_hosts files as
// OpenSSH does (plain, hashed, patterns, @cert-authority, @revoked), under a
// policy (strict, accept-new, off), with indexes that keep a sweep of N hosts
// against an N-line file O(N).
package hostkeys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gofrs/flock"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key policies, as OpenSSH's StrictHostKeyChecking yes / accept-new / no.
const (
	Strict    = "strict"
	AcceptNew = "accept-new"
	Off       = "off"
)

// Error is a host key that was not accepted: unknown (strict policy),
// changed, or revoked.
type Error struct {
	host string
	msg  string
}

func (e *Error) Error() string { return "host key for " + e.host + " " + e.msg }

// DB checks host keys against the known_hosts files under a policy.
type DB struct {
	policy string
	files  []string // the user's, existing or not; the first is where accept-new writes
	global []string // the system-wide files that exist: read, never written
	warn   io.Writer
	cb     ssh.HostKeyCallback // x/crypto's matcher over the existing files; nil if none

	// exact indexes the plain (unhashed, pattern-free) entries, so that a
	// sweep of N hosts against an N-line file costs O(N), not O(N^2). Used
	// only when the files hold no @revoked or @cert-authority line.
	exact map[string][]ssh.PublicKey
	// hashed holds the single-host hashed entries, under the same rule
	// (nil with markers); odd is whether the files have lines neither
	// index models (patterns, negations, several hashed hosts on a line):
	// without them, a host neither index has is unknown to the files,
	// without asking x/crypto, which tests every line against every host.
	hashed *hashedPool
	odd    bool
	// cas are the keys of the @cert-authority lines: a host one of them
	// matches is asked for a host certificate first, as OpenSSH does.
	cas []ssh.PublicKey

	mu    sync.Mutex
	added map[string]ssh.PublicKey // accepted this sweep (accept-new)
	out   *os.File                 // known_hosts opened for appending (accept-new)
	lock  *flock.Flock
	tail  knownTail // what files[0] gained since it was read (accept-new)
}

// knownTail indexes the lines appended to the accept-new file after it was
// first read: another fanout process or ssh may add a host meanwhile, so the
// file is read again, from where it was left, under the lock and before a
// key is added. Reading only the new lines keeps a sweep of N new hosts O(N).
type knownTail struct {
	file    os.FileInfo // what was read; another file there is read whole
	off     int64       // bytes read, up to the end of the last whole line
	line    int         // lines read
	partial bool        // a last line without its newline follows off
	plain   map[string][]tailKey
	hashed  []hashedKey
	odd     bool            // patterns or markers: x/crypto's matcher decides
	cas     []ssh.PublicKey // keys of the @cert-authority lines read
}

type tailKey struct {
	key  ssh.PublicKey
	line int
}

type hashedKey struct {
	salt, hash []byte
	tailKey
}

// New reads the user's known_hosts files and then the global ones,
// as OpenSSH does: a key in either is trusted, a marker or a changed key in
// either counts. A missing file is none; an unreadable one is an error.
// accept-new writes to files[0] only.
func New(policy string, files, global []string, warn io.Writer) (*DB, error) {
	h := &DB{policy: policy, files: files, warn: warn, exact: map[string][]ssh.PublicKey{}, hashed: &hashedPool{},
		added: map[string]ssh.PublicKey{}}
	if policy == Off { // the caller warns, naming where the policy came from
		return h, nil
	}
	if policy == AcceptNew {
		if len(files) == 0 {
			return nil, fmt.Errorf("known_hosts: --host-key accept-new needs a file to write, and UserKnownHostsFile is none")
		}
		f := files[0]
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return nil, fmt.Errorf("known_hosts %s: cannot be written for --host-key accept-new: %w", f, err)
		}
		out, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("known_hosts %s: cannot be written for --host-key accept-new: %w", f, err)
		}
		h.out, h.lock = out, flock.New(f)
	}
	if h.lock != nil {
		// No other fanout process is half-way through a line while we read.
		if err := h.lock.Lock(); err != nil {
			h.Close()
			return nil, fmt.Errorf("known_hosts %s: lock: %w", files[0], err)
		}
		defer h.lock.Unlock()
	}
	var existing []string
	markers := false
	read := slices.Clone(files)
	for _, g := range global {
		if !slices.ContainsFunc(files, func(f string) bool { return filepath.Clean(f) == filepath.Clean(g) }) {
			read = append(read, g)
		}
	}
	for i, f := range read {
		data, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			h.Close()
			if i >= len(files) {
				return nil, fmt.Errorf("known_hosts %s (GlobalKnownHostsFile): %w", f, err)
			}
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
		existing = append(existing, f)
		if i >= len(files) {
			h.global = append(h.global, f)
		}
		if h.index(data) {
			markers = true
		}
		if i == 0 && h.out != nil {
			// A line without its newline yet is read again with the tail.
			end := bytes.LastIndexByte(data, '\n') + 1
			h.tail.off, h.tail.line = int64(end), bytes.Count(data[:end], []byte("\n"))
			h.tail.file, _ = h.out.Stat()
		}
	}
	if markers {
		h.exact, h.hashed = nil, nil
	}
	if len(existing) > 0 {
		cb, err := knownhosts.New(existing...)
		if err != nil {
			h.Close()
			return nil, err
		}
		h.cb = cb
	}
	return h, nil
}

// knownLines calls fn with each key line of known_hosts data: its number
// (from 1), its host field and the rest, the key; and marked with each
// marker line (@cert-authority, @revoked): the marker without its @, the
// host field, the key. It skips blank lines and comments, reports whether
// there were marker lines, and counts the lines read.
func knownLines(data []byte, fn func(n int, hosts string, key []byte), marked func(marker, hosts string, key []byte)) (lines int, markers bool) {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		lines++
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if line[0] == '@' {
			markers = true
			if f := bytes.Fields(line); len(f) >= 4 {
				marked(string(f[0][1:]), string(f[1]), bytes.Join(f[2:], []byte(" ")))
			}
			continue
		}
		if i := bytes.IndexAny(line, " \t"); i >= 0 {
			fn(lines, string(line[:i]), bytes.TrimSpace(line[i:]))
		}
	}
	return lines, markers
}

// index adds the plain entries of a known_hosts file to exact, the hashed
// ones to hashed, the keys of @cert-authority lines to cas, and reports
// whether the file has marker lines (which the indexes do not model).
func (h *DB) index(data []byte) (markers bool) {
	ca := func(marker, _ string, key []byte) { h.cas = addCA(h.cas, marker, key) }
	_, markers = knownLines(data, func(_ int, hosts string, key []byte) {
		if strings.ContainsAny(hosts, "*?!|") {
			salt, hash, ok := parseHashed(hosts)
			if !ok || strings.Contains(hosts, ",") {
				h.odd = true // patterns, negations, hosts hashed with others: x/crypto's matcher
				return
			}
			if pub, _, _, _, err := ssh.ParseAuthorizedKey(key); err == nil {
				h.hashed.add(salt, hash, pub)
			}
			return
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(key)
		if err != nil {
			return
		}
		for _, host := range strings.Split(hosts, ",") {
			n := knownhosts.Normalize(host)
			h.exact[n] = append(h.exact[n], pub)
		}
	}, ca)
	return markers
}

// Policy is the DB's policy: Strict, AcceptNew or Off.
func (h *DB) Policy() string { return h.policy }

// Close releases the file accept-new writes to.
func (h *DB) Close() {
	if h != nil && h.out != nil {
		h.out.Close()
	}
}

// check is the ssh.HostKeyCallback of a host whose HashKnownHosts is no:
// hostname is "HostName:port".
func (h *DB) Check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	return h.verify(hostname, remote, key, false)
}

// callback is the ssh.HostKeyCallback of one host; hash is its
// HashKnownHosts (from the Host blocks its alias matches), which decides how
// accept-new writes it.
func (h *DB) Callback(hash bool) ssh.HostKeyCallback {
	if !hash {
		return h.Check
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		return h.verify(hostname, remote, key, true)
	}
}

func (h *DB) verify(hostname string, remote net.Addr, key ssh.PublicKey, hash bool) error {
	if h.policy == Off {
		return nil
	}
	norm := knownhosts.Normalize(hostname)
	if cert, ok := key.(*ssh.Certificate); ok {
		err := h.lookup(hostname, remote, cert)
		switch {
		case err == nil:
			return nil
		case noAuthority(err):
			// As OpenSSH: no @cert-authority line signed it for this host,
			// so its plain key is checked (and, with accept-new, added).
			return h.verify(hostname, remote, cert.Key, hash)
		}
		return &Error{host: norm, msg: "has a certificate that is not accepted: " + strings.TrimPrefix(err.Error(), "ssh: ")}
	}
	if h.exact != nil {
		if hasKey(h.exact[norm], key) {
			return nil
		}
		found, hostKnown := h.hashed.find(norm, key)
		if found {
			return nil
		}
		if !hostKnown && !h.odd && len(h.exact[norm]) == 0 {
			return h.unknown(hostname, remote, norm, key, hash)
		}
	}
	err := h.lookup(hostname, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	if errors.As(err, &ke) {
		ke.Want = dropCAs(ke.Want, h.cas)
	}
	switch {
	case errors.As(err, &re):
		return revoked(norm, re)
	case errors.As(err, &ke) && len(ke.Want) > 0:
		w := ke.Want[0]
		return &Error{host: norm, msg: fmt.Sprintf("CHANGED: the server offered %s %s, known_hosts has %s at %s:%d (possible man-in-the-middle; remove that line if the change is expected)",
			key.Type(), ssh.FingerprintSHA256(key), w.Key.Type(), w.Filename, w.Line)}
	case errors.As(err, &ke):
		return h.unknown(hostname, remote, norm, key, hash)
	}
	return &Error{host: norm, msg: err.Error()}
}

// addCA adds the key of a marker line to cas if it is an @cert-authority.
func addCA(cas []ssh.PublicKey, marker string, key []byte) []ssh.PublicKey {
	if marker != "cert-authority" {
		return cas
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(key)
	if err != nil || hasKey(cas, pub) {
		return cas
	}
	return append(cas, pub)
}

// dropCAs removes the @cert-authority lines from what x/crypto says a host
// should have: it counts them as the host's own keys, so that a plain key
// of the CA's type would be "changed", where OpenSSH uses them only for
// certificates. A line is a CA's when its key is one (a CA key that is
// also a host's own key is not told apart).
func dropCAs(want []knownhosts.KnownKey, cas ...[]ssh.PublicKey) []knownhosts.KnownKey {
	return slices.DeleteFunc(want, func(w knownhosts.KnownKey) bool {
		return slices.ContainsFunc(cas, func(c []ssh.PublicKey) bool { return hasKey(c, w.Key) })
	})
}

// noAuthority is x/crypto's error for a host certificate that no
// @cert-authority line for the host signed (or no known_hosts at all).
func noAuthority(err error) bool {
	var ke *knownhosts.KeyError
	return errors.As(err, &ke) || strings.HasPrefix(err.Error(), "ssh: no authorities for hostname")
}

// hasAuthority reports whether an @cert-authority line matches hostname
// ("host:port"). It asks x/crypto's matcher, which decides the real check,
// with a certificate each CA key would have signed: one it matches fails
// later (the signature), one it does not fails as noAuthority.
func (h *DB) hasAuthority(hostname string) bool {
	if h.cb == nil {
		return false
	}
	for _, ca := range h.cas {
		probe := &ssh.Certificate{Key: probeKey, CertType: ssh.HostCert, SignatureKey: ca}
		if err := h.cb(hostname, probeAddr, probe); err != nil && !noAuthority(err) {
			return true
		}
	}
	return false
}

func (h *DB) lookup(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if h.cb == nil {
		return &knownhosts.KeyError{}
	}
	return h.cb(hostname, remote, key)
}

// unknown handles a host known_hosts had no key for when it was read.
func (h *DB) unknown(hostname string, remote net.Addr, norm string, key ssh.PublicKey, hash bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k, ok := h.added[norm]; ok {
		if keyEq(k, key) {
			return nil
		}
		return &Error{host: norm, msg: "CHANGED during this sweep (was just added to " + h.files[0] + ")"}
	}
	if h.policy != AcceptNew {
		read := strings.Join(append(slices.Clone(h.files), h.global...), ", ")
		if read == "" {
			read = "any known_hosts file: UserKnownHostsFile is none"
		}
		return &Error{host: norm, msg: fmt.Sprintf("is unknown (%s %s not in %s); use --host-key accept-new to add it",
			key.Type(), ssh.FingerprintSHA256(key), read)}
	}
	field := norm
	if hash {
		field = knownhosts.HashHostname(norm) // as OpenSSH's HashKnownHosts: |1|salt|hash
	}
	line := field + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal()) + "\n"
	if err := h.lock.Lock(); err != nil {
		return &Error{host: norm, msg: "could not be added: lock " + h.files[0] + ": " + err.Error()}
	}
	defer h.lock.Unlock()
	// Under the lock, the file as it is now: another process may have
	// added this host since it was read.
	if err := h.readTail(); err != nil {
		return &Error{host: norm, msg: "could not be added: read " + h.files[0] + ": " + err.Error()}
	}
	switch err := h.tail.check(h.files[0], hostname, remote, norm, key, h.cas); {
	case err == errTailNone:
	case err != nil:
		return err
	default: // the same key, added meanwhile: not written twice
		h.added[norm] = key
		return nil
	}
	if h.tail.partial {
		line = "\n" + line // not glued to a last line an editor left without its newline
	}
	if _, err := h.out.WriteString(line); err != nil {
		return &Error{host: norm, msg: "could not be added to " + h.files[0] + ": " + err.Error()}
	}
	h.added[norm] = key
	// Our line alone since the tail was read (ssh appends without the
	// lock): it is in added, and the tail need not index it; a hashed one
	// would cost every later host of the sweep an HMAC.
	if fi, err := h.out.Stat(); err == nil && h.tail.file != nil && os.SameFile(fi, h.tail.file) && fi.Size() == h.tail.off+int64(len(line)) {
		h.tail.off, h.tail.line = fi.Size(), h.tail.line+1
	}
	return nil
}

// readTail indexes the lines files[0] gained since it was last read. Called
// with the file lock held.
func (h *DB) readTail() error {
	f, err := os.Open(h.files[0])
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	t := &h.tail
	if t.file == nil || !os.SameFile(t.file, fi) || fi.Size() < t.off {
		// Replaced or cut (ssh-keygen -R rewrites it): read it whole.
		*t = knownTail{file: fi}
	}
	t.partial = false
	if fi.Size() == t.off {
		return nil
	}
	buf := make([]byte, fi.Size()-t.off)
	n, err := f.ReadAt(buf, t.off)
	if err != nil && err != io.EOF {
		return err
	}
	buf = buf[:bytes.LastIndexByte(buf[:n], '\n')+1]
	t.off += int64(len(buf))
	t.partial = fi.Size() > t.off
	t.index(buf)
	return nil
}

func (t *knownTail) index(data []byte) {
	lines, markers := knownLines(data, func(n int, hosts string, key []byte) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey(key)
		if err != nil {
			return
		}
		tk := tailKey{key: pub, line: t.line + n}
		if salt, hash, ok := parseHashed(hosts); ok {
			t.hashed = append(t.hashed, hashedKey{salt: salt, hash: hash, tailKey: tk})
			return
		}
		if strings.ContainsAny(hosts, "*?!|") {
			t.odd = true
			return
		}
		if t.plain == nil {
			t.plain = map[string][]tailKey{}
		}
		for _, host := range strings.Split(hosts, ",") {
			norm := knownhosts.Normalize(host)
			t.plain[norm] = append(t.plain[norm], tk)
		}
	}, func(marker, _ string, key []byte) { t.cas = addCA(t.cas, marker, key) })
	t.line += lines
	t.odd = t.odd || markers
}

// errTailNone: the tail has no key for the host.
var errTailNone = errors.New("not in the tail")

// check is nil when the tail holds key for norm, a Error when it
// holds another key only, errTailNone when it holds none.
func (t *knownTail) check(file, hostname string, remote net.Addr, norm string, key ssh.PublicKey, cas []ssh.PublicKey) error {
	if t.odd {
		// Rare (no fanout or ssh writes these): x/crypto reads the file.
		cb, err := knownhosts.New(file)
		if err != nil {
			return &Error{host: norm, msg: "could not be added: " + err.Error()}
		}
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		err = cb(hostname, remote, key)
		if errors.As(err, &ke) {
			ke.Want = dropCAs(ke.Want, cas, t.cas)
		}
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re):
			return revoked(norm, re)
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return changedMeanwhile(norm, key, ke.Want[0].Key, file, ke.Want[0].Line)
		case errors.As(err, &ke):
			return errTailNone
		default:
			return &Error{host: norm, msg: err.Error()}
		}
	}
	known := t.plain[norm]
	var m *hostHMAC
	if len(t.hashed) > 0 {
		m = newHostHMAC(norm)
	}
	for _, hk := range t.hashed {
		if m.matches(hk.salt, hk.hash) {
			known = append(known, hk.tailKey)
		}
	}
	if len(known) == 0 {
		return errTailNone
	}
	for _, k := range known {
		if keyEq(k.key, key) {
			return nil
		}
	}
	return changedMeanwhile(norm, key, known[0].key, file, known[0].line)
}

// revoked is the error for a key an @revoked line names.
func revoked(norm string, re *knownhosts.RevokedError) error {
	return &Error{host: norm, msg: fmt.Sprintf("is revoked (%s:%d)", re.Revoked.Filename, re.Revoked.Line)}
}

func changedMeanwhile(norm string, key, want ssh.PublicKey, file string, line int) error {
	return &Error{host: norm, msg: fmt.Sprintf("CHANGED: the server offered %s %s, known_hosts has %s at %s:%d, added during this sweep by another process (possible man-in-the-middle; remove that line if the change is expected)",
		key.Type(), ssh.FingerprintSHA256(key), want.Type(), file, line)}
}

// parseHashed splits a hashed known_hosts host field, |1|salt|hash.
func parseHashed(s string) (salt, hash []byte, ok bool) {
	rest, found := strings.CutPrefix(s, "|1|")
	if !found {
		return nil, nil, false
	}
	s64, h64, found := strings.Cut(rest, "|")
	if !found {
		return nil, nil, false
	}
	salt, err1 := base64.StdEncoding.DecodeString(s64)
	hash, err2 := base64.StdEncoding.DecodeString(h64)
	return salt, hash, err1 == nil && err2 == nil
}

// FieldNames reports whether a known_hosts host field is hashed
// (|1|salt|hash) and whether it names host (hashed, or spelt as host).
func FieldNames(field, host string) (hashed, names bool) {
	salt, hash, ok := parseHashed(field)
	if !ok {
		return false, field == host
	}
	return true, hashMatches(salt, hash, host)
}

// hashMatches is OpenSSH's HashKnownHosts test: HMAC-SHA1 of the host
// keyed by the salt.
func hashMatches(salt, hash []byte, host string) bool {
	m := hmac.New(sha1.New, salt)
	m.Write([]byte(host))
	return hmac.Equal(m.Sum(nil), hash)
}

// algorithms is the host key algorithms to ask hostname for: the types
// known_hosts has for it, so a server with several host keys shows the one
// we know (as OpenSSH orders them); else OpenSSH's default order.
func (h *DB) Algorithms(hostname string) []string {
	if h.policy == Off {
		return nil
	}
	var known []ssh.PublicKey
	norm := knownhosts.Normalize(hostname)
	hashed := false
	if h.exact != nil {
		known = h.exact[norm]
		if len(known) == 0 {
			// The first hashed line found: the other types the host may
			// have follow in OpenSSH's order, and check decides.
			known = h.hashed.types(norm)
			hashed = len(known) > 0
		}
	}
	if len(known) == 0 && h.cb != nil && (h.exact == nil || h.odd) {
		// A probe with a key no line can hold lists what the files know.
		var ke *knownhosts.KeyError
		if err := h.cb(hostname, probeAddr, probeKey); errors.As(err, &ke) {
			for _, w := range dropCAs(ke.Want, h.cas) {
				known = append(known, w.Key)
			}
		}
	}
	if len(known) == 0 {
		h.mu.Lock()
		if k, ok := h.added[norm]; ok {
			known = []ssh.PublicKey{k}
		}
		h.mu.Unlock()
	}
	var algos []string
	if len(h.cas) > 0 && h.hasAuthority(hostname) {
		algos = append(algos, certHostKeyAlgos...)
		if len(known) == 0 {
			// The plain key of a certificate no CA signed is checked as
			// any other (verify), so a server without one still works.
			return append(algos, defaultHostKeyAlgos...)
		}
	}
	if len(known) == 0 {
		return defaultHostKeyAlgos
	}
	for _, k := range known {
		switch t := k.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	if hashed {
		for _, a := range defaultHostKeyAlgos {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// certHostKeyAlgos come first for a host an @cert-authority line matches,
// in OpenSSH's order.
var certHostKeyAlgos = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// defaultHostKeyAlgos is OpenSSH's order (ed25519 first), not x/crypto's.
var defaultHostKeyAlgos = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

var probeAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}

// probeKey is a fixed ed25519 public key nobody's known_hosts holds.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	return k
}()

func keyEq(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// hasKey reports whether keys holds key.
func hasKey(keys []ssh.PublicKey, key ssh.PublicKey) bool {
	return slices.ContainsFunc(keys, func(k ssh.PublicKey) bool { return keyEq(k, key) })
}

// anyKey is hasKey, and any key at all when key is nil.
func anyKey(keys []ssh.PublicKey, key ssh.PublicKey) bool {
	if key == nil {
		return len(keys) > 0
	}
	return hasKey(keys, key)
}

// hashedPool finds hosts among the hashed known_hosts lines read at start
// (|1|salt|hash, one host each, as OpenSSH and fanout write them). Each
// line has its own salt, so a host can only be found by testing lines one
// by one: x/crypto tests every line for every host, O(N) a host and O(N^2)
// a sweep, twice (the algorithms to ask for, then the key). Here a line
// found leaves the pool, and a search goes out from the line found last,
// both ways: a sweep meets its hosts in about the order an earlier
// accept-new sweep wrote them (which handshakes in flight shuffle a
// little), so most searches test a few lines.
type hashedPool struct {
	lines  []hashedLine
	cursor atomic.Int64 // the line found last

	mu     sync.Mutex
	known  map[string][]ssh.PublicKey // keys of the lines found, by host
	misses map[string]struct{}        // hosts that no line left names (bounded)
}

type hashedLine struct {
	salt, hash []byte
	key        ssh.PublicKey
	found      atomic.Bool // set under mu, with the key added to known
}

// maxHashedMisses bounds the hosts remembered as in no hashed line.
const maxHashedMisses = 4096

func (p *hashedPool) add(salt, hash []byte, key ssh.PublicKey) {
	p.lines = append(p.lines, hashedLine{salt: salt, hash: hash, key: key})
}

// find reports whether a line names norm with key (any key when key is
// nil: the first line naming norm ends the search), and whether any line
// names norm.
func (p *hashedPool) find(norm string, key ssh.PublicKey) (found, hostKnown bool) {
	if p == nil || len(p.lines) == 0 {
		return false, false
	}
	p.mu.Lock()
	known := p.known[norm]
	_, miss := p.misses[norm]
	p.mu.Unlock()
	if anyKey(known, key) {
		return true, true
	}
	if miss { // every line naming norm is in known
		return false, len(known) > 0
	}
	m := newHostHMAC(norm)
	n := int64(len(p.lines))
	cur := p.cursor.Load()
	for i := int64(0); i < n; i++ {
		// Out from the last line found, both ways: 0, -1, +1, -2, ...,
		// which visits every line once.
		off := (i + 1) / 2
		if i%2 == 1 {
			off = -off
		}
		at := ((cur+off)%n + n) % n
		l := &p.lines[at]
		if l.found.Load() || !m.matches(l.salt, l.hash) {
			continue
		}
		p.mu.Lock()
		if !l.found.Load() {
			l.found.Store(true)
			if p.known == nil {
				p.known = map[string][]ssh.PublicKey{}
			}
			p.known[norm] = append(p.known[norm], l.key)
		}
		p.mu.Unlock()
		p.cursor.Store(at)
		hostKnown = true
		if key == nil || keyEq(l.key, key) {
			return true, true
		}
	}
	// No line left names norm: every one found (by this search or another
	// one, which added it under mu before marking it) is in known.
	p.mu.Lock()
	known = p.known[norm]
	if p.misses == nil || len(p.misses) >= maxHashedMisses {
		p.misses = map[string]struct{}{}
	}
	p.misses[norm] = struct{}{}
	p.mu.Unlock()
	if anyKey(known, key) {
		return true, true
	}
	return false, hostKnown || len(known) > 0
}

// types is the keys of the first line found for norm (nil if none).
func (p *hashedPool) types(norm string) []ssh.PublicKey {
	if p == nil || len(p.lines) == 0 {
		return nil
	}
	if found, _ := p.find(norm, nil); !found {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known[norm]
}

// hostHMAC is OpenSSH's host hash, HMAC-SHA1 of the host keyed by the
// line's salt, without allocating per line: a search tests many lines.
type hostHMAC struct {
	host    []byte
	d       hash.Hash
	pad     [sha1.BlockSize]byte
	in, out [sha1.Size]byte
}

func newHostHMAC(host string) *hostHMAC { return &hostHMAC{host: []byte(host), d: sha1.New()} }

func (m *hostHMAC) matches(salt, want []byte) bool {
	if len(salt) > sha1.BlockSize || len(want) != sha1.Size {
		return hashMatches(salt, want, string(m.host)) // not what OpenSSH writes
	}
	m.keyPad(salt, 0x36)
	m.d.Write(m.host)
	m.d.Sum(m.in[:0])
	m.keyPad(salt, 0x5c)
	m.d.Write(m.in[:])
	m.d.Sum(m.out[:0])
	return m.out == [sha1.Size]byte(want)
}

// keyPad resets the digest and writes the salt XOR pad, as HMAC does.
func (m *hostHMAC) keyPad(salt []byte, pad byte) {
	for i := range m.pad {
		m.pad[i] = pad
	}
	for i, b := range salt {
		m.pad[i] ^= b
	}
	m.d.Reset()
	m.d.Write(m.pad[:])
}
