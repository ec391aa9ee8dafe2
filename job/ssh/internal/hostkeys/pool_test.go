package hostkeys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// verdict is what a host key check said, from check or from x/crypto.
func verdict(err error) string {
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	var he *Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &re), errors.As(err, &he) && strings.Contains(he.msg, "revoked"):
		return "revoked"
	case errors.As(err, &ke) && len(ke.Want) > 0, errors.As(err, &he) && strings.Contains(he.msg, "CHANGED"):
		return "changed"
	case errors.As(err, &ke), errors.As(err, &he) && strings.Contains(he.msg, "unknown"):
		return "unknown"
	}
	return "error: " + err.Error()
}

// The indexes (plain and hashed lines) answer what x/crypto's matcher over
// the same files answers, for every host, in any order, from concurrent
// handshakes: the key is accepted, changed or unknown; and the algorithms
// asked for put a type the host has first.
func TestKnownHostsIndexesAgreeWithXCrypto(t *testing.T) {
	t.Parallel()
	newKey := func() ssh.PublicKey {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		k, _ := ssh.NewPublicKey(pub)
		return k
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecKey, _ := ssh.NewPublicKey(&ec.PublicKey)
	good, wrong := newKey(), newKey()
	addr := func(i int) string { return net.JoinHostPort(host(i).String(), "2222") }
	line := func(i int, hashed bool, k ssh.PublicKey) string {
		f := knownhosts.Normalize(addr(i))
		if hashed {
			f = knownhosts.HashHostname(f)
		}
		return f + " " + string(ssh.MarshalAuthorizedKey(k))
	}
	// Hosts 0-299: hashed; 300-319: hashed, an ecdsa line first; 320-339:
	// hashed, another key; 340-359: plain; 360-379: plain, another key;
	// 380-399: none. Two files, as user and global.
	var user, global strings.Builder
	for i := range 400 {
		w := &user
		if i%3 == 0 {
			w = &global
		}
		switch {
		case i < 300:
			w.WriteString(line(i, true, good))
		case i < 320:
			w.WriteString(line(i, true, ecKey) + line(i, true, good))
		case i < 340:
			w.WriteString(line(i, true, wrong))
		case i < 360:
			w.WriteString(line(i, false, good))
		case i < 380:
			w.WriteString(line(i, false, wrong))
		}
	}
	dir := t.TempDir()
	files := []string{filepath.Join(dir, "user"), filepath.Join(dir, "global")}
	for k, b := range []*strings.Builder{&user, &global} {
		if err := os.WriteFile(files[k], []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	xc, err := knownhosts.New(files...)
	if err != nil {
		t.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	orders := map[string][]int{"file": {}, "reverse": {}, "shuffled": {}}
	for i := range 400 {
		orders["file"] = append(orders["file"], i)
		orders["reverse"] = append(orders["reverse"], 399-i)
		orders["shuffled"] = append(orders["shuffled"], i)
	}
	mrand.Shuffle(400, func(i, j int) {
		orders["shuffled"][i], orders["shuffled"][j] = orders["shuffled"][j], orders["shuffled"][i]
	})
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hk, err := New(Strict, files[:1], files[1:], io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if hk.hashed == nil || len(hk.hashed.lines) != 360 || hk.odd {
				t.Fatalf("index: %v hashed lines, odd %v; want 360, false", hk.hashed, hk.odd)
			}
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := w; k < len(order); k += 8 {
						i := order[k]
						algos := hk.Algorithms(addr(i))
						got, want := verdict(hk.Check(addr(i), remote, good)), verdict(xc(addr(i), remote, good))
						if got != want {
							t.Errorf("host %d: %s, x/crypto says %s", i, got, want)
						}
						has := []string{good.Type()} // the type of a key the host has
						switch {
						case i >= 300 && i < 320:
							has = append(has, ecKey.Type())
						case i >= 380:
							has = nil
						}
						if has != nil && !slices.Contains(has, algos[0]) {
							t.Errorf("host %d: algorithms %v, want one of %v first", i, algos, has)
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// Lines the indexes do not model (patterns, negations, several hashed
// hosts on one line, markers) leave the decision to x/crypto: a host they
// name is not taken for unknown.
func TestKnownHostsIndexesDeferToXCrypto(t *testing.T) {
	t.Parallel()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	k := string(ssh.MarshalAuthorizedKey(key))
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	hashed := func(h string) string { return knownhosts.HashHostname(knownhosts.Normalize(h)) }
	other := func() string {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		o, _ := ssh.NewPublicKey(pub)
		return string(ssh.MarshalAuthorizedKey(o))
	}()
	tests := []struct {
		name, file, host string
		want             string // and x/crypto's verdict
	}{
		{"pattern", hashed("127.0.0.9:2222") + " " + k + "[127.5.*]:2222 " + k, "127.5.0.1:2222", "ok"},
		{"pattern, another key", "127.0.0.9 " + k + "[127.5.*]:2222 " + other, "127.5.0.1:2222", "changed"},
		{"negation", hashed("127.0.0.9:2222") + " " + k + "[127.5.*]:2222,![127.5.0.2]:2222 " + k, "127.5.0.2:2222", "unknown"},
		{"two hashed hosts", hashed("127.0.0.9:2222") + " " + k + hashed("127.5.0.1:2222") + "," + hashed("127.5.0.3:2222") + " " + k, "127.5.0.3:2222", ""},
		{"cert-authority", "@cert-authority [127.5.*]:2222 " + other + "127.5.0.1:2222 " + k, "127.5.0.1:2222", "ok"},
		{"revoked", hashed("127.5.0.1:2222") + " " + k + "@revoked * " + k, "127.5.0.1:2222", "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(f, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			hk, err := New(Strict, []string{f}, nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			xc, err := knownhosts.New(f)
			if err != nil {
				t.Fatal(err)
			}
			want := verdict(xc(tt.host, remote, key))
			if tt.want != "" && want != tt.want {
				t.Fatalf("x/crypto says %s, the test expects %s", want, tt.want)
			}
			hk.Algorithms(tt.host)
			if got := verdict(hk.Check(tt.host, remote, key)); got != want {
				t.Errorf("check says %s, x/crypto %s", got, want)
			}
		})
	}
}

// The search remembers a bounded number of hosts no hashed line names.
func TestHashedPoolMissesBounded(t *testing.T) {
	t.Parallel()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	p := &hashedPool{}
	salt, hash, _ := parseHashed(knownhosts.HashHostname("127.0.0.1"))
	p.add(salt, hash, key)
	for i := range maxHashedMisses + 10 {
		if found, known := p.find(fmt.Sprintf("127.1.%d.%d", i>>8, i&255), key); found || known {
			t.Fatalf("host %d found", i)
		}
	}
	if len(p.misses) > maxHashedMisses {
		t.Errorf("%d misses remembered, want at most %d", len(p.misses), maxHashedMisses)
	}
	if found, _ := p.find("127.0.0.1", key); !found {
		t.Errorf("127.0.0.1 not found")
	}
	if found, known := p.find("127.0.0.1", nil); !found || !known || !slices.ContainsFunc(p.known["127.0.0.1"], func(k ssh.PublicKey) bool { return keyEq(k, key) }) {
		t.Errorf("127.0.0.1 not remembered as found")
	}
}

// host is the i-th address of a lab fleet (127.2.x.y).
func host(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 2, byte(i >> 8), byte(i)}) }
