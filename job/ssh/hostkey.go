package ssh

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gofrs/flock"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyError is a host key that was not accepted: unknown (strict policy),
// changed, or revoked.
type hostKeyError struct {
	host string
	msg  string
}

func (e *hostKeyError) Error() string { return "host key for " + e.host + " " + e.msg }

// hostKeys checks host keys against the known_hosts files under a policy.
type hostKeys struct {
	policy string
	files  []string // existing or not; the first is where accept-new writes
	warn   io.Writer
	cb     ssh.HostKeyCallback // x/crypto's matcher over the existing files; nil if none

	// exact indexes the plain (unhashed, pattern-free) entries, so that a
	// sweep of N hosts against an N-line file costs O(N), not O(N^2). Used
	// only when the files hold no @revoked or @cert-authority line.
	exact map[string][]ssh.PublicKey

	mu    sync.Mutex
	added map[string]ssh.PublicKey // accepted this sweep (accept-new)
	out   *os.File                 // known_hosts opened for appending (accept-new)
	lock  *flock.Flock
}

func newHostKeys(policy string, files []string, warn io.Writer) (*hostKeys, error) {
	h := &hostKeys{policy: policy, files: files, warn: warn, exact: map[string][]ssh.PublicKey{}, added: map[string]ssh.PublicKey{}}
	if policy == HostKeyOff {
		fmt.Fprintln(warn, "fanout: WARNING: host key checking is off (--host-key off): any server, or anyone in between, is accepted")
		return h, nil
	}
	if policy == HostKeyAcceptNew {
		f := files[0]
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return nil, fmt.Errorf("known_hosts %s: cannot be written for --host-key accept-new: %v", f, err)
		}
		out, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("known_hosts %s: cannot be written for --host-key accept-new: %v", f, err)
		}
		h.out, h.lock = out, flock.New(f)
	}
	var existing []string
	markers := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			h.close()
			return nil, fmt.Errorf("known_hosts %s: %v", f, err)
		}
		existing = append(existing, f)
		if h.index(data) {
			markers = true
		}
	}
	if markers {
		h.exact = nil
	}
	if len(existing) > 0 {
		cb, err := knownhosts.New(existing...)
		if err != nil {
			h.close()
			return nil, err
		}
		h.cb = cb
	}
	return h, nil
}

// index adds the plain entries of a known_hosts file to exact and reports
// whether the file has marker lines (which the index does not model).
func (h *hostKeys) index(data []byte) (markers bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if line[0] == '@' {
			markers = true
			continue
		}
		i := bytes.IndexAny(line, " \t")
		if i < 0 {
			continue
		}
		hosts := string(line[:i])
		if strings.ContainsAny(hosts, "*?!|") {
			continue // patterns, negations and hashes: x/crypto's matcher
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(bytes.TrimSpace(line[i:]))
		if err != nil {
			continue
		}
		for _, host := range strings.Split(hosts, ",") {
			n := knownhosts.Normalize(host)
			h.exact[n] = append(h.exact[n], pub)
		}
	}
	return markers
}

func (h *hostKeys) close() {
	if h != nil && h.out != nil {
		h.out.Close()
	}
}

// check is the ssh.HostKeyCallback: hostname is "HostName:port".
func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if h.policy == HostKeyOff {
		return nil
	}
	norm := knownhosts.Normalize(hostname)
	if h.exact != nil {
		for _, k := range h.exact[norm] {
			if keyEq(k, key) {
				return nil
			}
		}
	}
	err := h.lookup(hostname, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return &hostKeyError{host: norm, msg: fmt.Sprintf("is revoked (%s:%d)", re.Revoked.Filename, re.Revoked.Line)}
	case errors.As(err, &ke) && len(ke.Want) > 0:
		w := ke.Want[0]
		return &hostKeyError{host: norm, msg: fmt.Sprintf("CHANGED: the server offered %s %s, known_hosts has %s at %s:%d (possible man-in-the-middle; remove that line if the change is expected)",
			key.Type(), ssh.FingerprintSHA256(key), w.Key.Type(), w.Filename, w.Line)}
	case errors.As(err, &ke):
		return h.unknown(norm, key)
	}
	return &hostKeyError{host: norm, msg: err.Error()}
}

func (h *hostKeys) lookup(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if h.cb == nil {
		return &knownhosts.KeyError{}
	}
	return h.cb(hostname, remote, key)
}

// unknown handles a host known_hosts has no key for.
func (h *hostKeys) unknown(norm string, key ssh.PublicKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k, ok := h.added[norm]; ok {
		if keyEq(k, key) {
			return nil
		}
		return &hostKeyError{host: norm, msg: "CHANGED during this sweep (was just added to " + h.files[0] + ")"}
	}
	if h.policy != HostKeyAcceptNew {
		return &hostKeyError{host: norm, msg: fmt.Sprintf("is unknown (%s %s not in %s); use --host-key accept-new to add it",
			key.Type(), ssh.FingerprintSHA256(key), strings.Join(h.files, ", "))}
	}
	line := knownhosts.Line([]string{norm}, key) + "\n"
	if err := h.lock.Lock(); err != nil {
		return &hostKeyError{host: norm, msg: "could not be added: lock " + h.files[0] + ": " + err.Error()}
	}
	_, err := h.out.WriteString(line)
	_ = h.lock.Unlock()
	if err != nil {
		return &hostKeyError{host: norm, msg: "could not be added to " + h.files[0] + ": " + err.Error()}
	}
	h.added[norm] = key
	return nil
}

// algorithms is the host key algorithms to ask hostname for: the types
// known_hosts has for it, so a server with several host keys shows the one
// we know (as OpenSSH orders them); else OpenSSH's default order.
func (h *hostKeys) algorithms(hostname string) []string {
	if h.policy == HostKeyOff {
		return nil
	}
	var known []ssh.PublicKey
	norm := knownhosts.Normalize(hostname)
	if h.exact != nil {
		known = h.exact[norm]
	}
	if len(known) == 0 && h.cb != nil {
		// A probe with a key no line can hold lists what the files know.
		var ke *knownhosts.KeyError
		if err := h.cb(hostname, probeAddr, probeKey); errors.As(err, &ke) {
			for _, w := range ke.Want {
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
	if len(known) == 0 {
		return defaultHostKeyAlgos
	}
	var algos []string
	for _, k := range known {
		switch t := k.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	return algos
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
