package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fanout/fanout/internal/testwait"
)

func startTestServer(t *testing.T, creds Credentials) *Server {
	t.Helper()
	s, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestServerNeedsCredentialsBeyondLoopback(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := StartServer(ServerOptions{Listen: listen, StoreDir: t.TempDir()})
		if !errors.Is(err, ErrNeedsAuth) {
			t.Errorf("listen %q without credentials: %v, want ErrNeedsAuth", listen, err)
		}
	}
	_, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", ClusterListen: "0.0.0.0:0", StoreDir: t.TempDir()})
	if !errors.Is(err, ErrNeedsAuth) {
		t.Errorf("cluster routes on 0.0.0.0 without a token: %v, want ErrNeedsAuth", err)
	}
}

func TestTokenAndNkeyAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tok, err := GenToken()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seed, other := filepath.Join(dir, "seed.nk"), filepath.Join(dir, "other.nk")
	if _, err := GenNkeySeed(seed); err != nil {
		t.Fatal(err)
	}
	if _, err := GenNkeySeed(other); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if _, err := GenNkeySeed(seed); err == nil {
		t.Error("GenNkeySeed overwrote an existing seed file")
	}
	for _, tc := range []struct {
		name   string
		server Credentials
		good   Credentials
		bad    []Credentials
	}{
		{"token", Credentials{Token: tok}, Credentials{Token: tok}, []Credentials{{}, {Token: tok + "x"}}},
		{"nkey", Credentials{NkeySeed: seed}, Credentials{NkeySeed: seed}, []Credentials{{}, {NkeySeed: other}, {Token: tok}}},
	} {
		s := startTestServer(t, tc.server)
		nc, err := Connect(ctx, s.URL, tc.good, "test", t.Logf)
		if err != nil {
			t.Errorf("%s: good credentials refused: %v", tc.name, err)
		} else {
			if _, err := NewClient(ctx, nc); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			nc.Close()
		}
		for _, bad := range tc.bad {
			if nc, err := Connect(ctx, s.URL, bad, "test", t.Logf); err == nil {
				nc.Close()
				t.Errorf("%s: credentials %+v accepted, want refused", tc.name, bad)
			}
		}
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := writeTestCerts(t, dir)
	s := startTestServer(t, Credentials{Token: testToken, TLSCert: cert, TLSKey: key})
	ctx := context.Background()
	nc, err := Connect(ctx, s.URL, Credentials{Token: testToken, TLSCA: ca}, "test", t.Logf)
	if err != nil {
		t.Fatalf("TLS with the CA: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connection is not TLS")
	}
	nc.Close()
	if nc, err := Connect(ctx, s.URL, Credentials{Token: testToken}, "test", t.Logf); err == nil {
		nc.Close()
		t.Error("TLS without the CA: accepted an unknown certificate")
	}
}

// writeTestCerts writes a CA and a server certificate for 127.0.0.1.
// The certificate serves routes too, as server and as client.
func writeTestCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fanout test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, // routes use it both ways
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", srvDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// Three servers joined by routes form one JetStream cluster: a sweep
// submitted to one server is run by a worker connected to another and read
// back through the third.
func TestThreeServerCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	var ports, routes [3]int
	for i := range ports {
		ports[i], routes[i] = freePort(t), freePort(t)
	}
	var urls [3]string
	for i := range ports {
		var peers []string
		for j := range routes {
			if j != i {
				peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", routes[j]))
			}
		}
		s, err := StartServer(ServerOptions{
			Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), ClusterListen: fmt.Sprintf("127.0.0.1:%d", routes[i]),
			Routes: peers, Name: fmt.Sprintf("s%d", i), StoreDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		urls[i] = s.URL
	}
	dial := func(i int) *nats.Conn {
		nc, err := Connect(ctx, urls[i], Credentials{}, "test", t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// Right after start-up the cluster has no JetStream meta leader yet:
	// NewClient waits for it.
	sub, err := NewClient(ctx, dial(0))
	if err != nil {
		t.Fatalf("cluster never got ready: %v", err)
	}
	w, err := NewWorker(ctx, dial(1), WorkerOptions{Name: "w", Concurrency: 50, AckWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	defer func() { stop(); <-done }()

	const n = 1000
	rec, err := submit(ctx, sub, sleepSpec(n, 1), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := NewClient(ctx, dial(2))
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	if err := reader.Collect(ctx, rec.ID, k.opts()); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "read through the third server", k.counts, n)
}
