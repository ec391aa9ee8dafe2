package cluster

// The trust model against a real embedded server: roles enforced by the
// server's permissions (a raw nats.go client plays the attacker), local
// credentials, TLS options and routes.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
)

const testToken = "0123456789abcdef-test-token"

// startUsersServer starts a server on loopback that knows users, shut down
// at the end of t.
func startUsersServer(t *testing.T, users []User) *Server {
	t.Helper()
	s, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// connectClient connects to url as name with creds (closed at the end of t)
// and makes a Client of the connection.
func connectClient(t *testing.T, ctx context.Context, url string, creds Credentials, name string, logf func(string, ...any)) *Client {
	t.Helper()
	nc, err := Connect(ctx, url, creds, name, logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := NewClient(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// permissionLog is a logf that keeps what it logs, to check afterwards that
// no permission error reached the async error handler.
type permissionLog struct {
	t    *testing.T
	mu   sync.Mutex
	errs []string
}

func (l *permissionLog) logf(f string, a ...any) {
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Sprintf(f, a...))
	l.mu.Unlock()
	l.t.Logf(f, a...)
}

// check fails the test on any permission error logged.
func (l *permissionLog) check() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if strings.Contains(strings.ToLower(e), "permission") {
			l.t.Errorf("a permitted flow hit a permission error: %s", e)
		}
	}
}

// roleUsers writes an nkey seed per role and returns the users and seeds.
func roleUsers(t *testing.T) ([]User, map[Role]string) {
	t.Helper()
	dir := t.TempDir()
	seeds := map[Role]string{}
	var users []User
	for _, r := range Roles {
		p := filepath.Join(dir, string(r)+".nk")
		pub, err := GenNkeySeed(p)
		if err != nil {
			t.Fatal(err)
		}
		seeds[r] = p
		users = append(users, User{Name: "u-" + string(r), Role: r, Nkey: pub})
	}
	return users, seeds
}

// violations collects a connection's asynchronous permission errors.
type violations struct {
	mu   sync.Mutex
	errs []string
	ch   chan struct{}
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
	select {
	case v.ch <- struct{}{}:
	default:
	}
}

func (v *violations) has(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if strings.Contains(e, "ermissions") && strings.Contains(e, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// rawConn is an attacker's own nats.go connection with a role's seed.
func rawConn(t *testing.T, url, seed string) (*nats.Conn, *violations) {
	t.Helper()
	v := &violations{ch: make(chan struct{}, 1)}
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opt, nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, v
}

// refused runs call, which publishes to subject, and checks the server
// refuses that publish: a permissions violation for subject arrives, and
// call does not succeed. Calls waiting for a reply that will never come
// are cut short once the violation is in.
func refused(t *testing.T, v *violations, what, subject string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- call(ctx) }()
	done := result
	var callErr error
	for !v.has(subject) {
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: allowed, want refused by the server", what)
				return
			}
			callErr, done = err, nil // failed: now wait for the violation
		case <-v.ch:
		case <-ctx.Done():
			t.Errorf("%s: no permissions violation for %q (call: %v)", what, subject, callErr)
			return
		}
	}
	cancel() // a call waiting for a reply that will never come
	if done != nil {
		callErr = <-done
	}
	if callErr == nil {
		t.Errorf("%s: succeeded despite the violation", what)
	}
}

// TestRolePermissions: a worker-role client cannot create sweeps, publish
// tasks or delete anything; a submitter-role client cannot publish results
// or heartbeats or take tasks. The server says no, whatever client asks.
func TestRolePermissions(t *testing.T) {
	t.Parallel()
	users, seeds := roleUsers(t)
	s := startUsersServer(t, users)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A sweep submitted by the submitter, for the attackers to aim at.
	client := connectClient(t, ctx, s.URL, Credentials{NkeySeed: seeds[RoleSubmitter]}, "submitter", t.Logf)
	rec, err := submit(ctx, client, sleepSpec(10, 0), SubmitOptions{})
	if err != nil {
		t.Fatalf("submitter submits: %v", err)
	}

	t.Run("worker", func(t *testing.T) {
		nc, v := rawConn(t, s.URL, seeds[RoleWorker])
		js, _ := jetstream.New(nc)
		kv, err := js.KeyValue(ctx, SweepsBucket)
		if err != nil {
			t.Fatalf("worker looks up the sweeps bucket: %v", err)
		}
		if _, err := kv.Get(ctx, rec.ID); err != nil {
			t.Errorf("worker reads a spec: %v", err)
		}
		refused(t, v, "worker puts a spec", "$KV.fanout_sweeps.evil", func(ctx context.Context) error {
			_, err := kv.Put(ctx, "evil", []byte(`{"id":"evil","spec":{"job":"exec"}}`))
			return err
		})
		refused(t, v, "worker overwrites a spec", "$KV.fanout_sweeps."+rec.ID, func(ctx context.Context) error {
			_, err := kv.Put(ctx, rec.ID, []byte(`{}`))
			return err
		})
		refused(t, v, "worker publishes a task", "fanout.tasks.evil.0", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "fanout.tasks.evil.0", []byte(`{"sweep":"evil","job":"exec","lo":0,"hi":1}`))
			return err
		})
		refused(t, v, "worker deletes the results stream", "$JS.API.STREAM.DELETE."+ResultsStream, func(ctx context.Context) error {
			return js.DeleteStream(ctx, ResultsStream)
		})
		refused(t, v, "worker purges the tasks stream", "$JS.API.STREAM.PURGE."+TasksStream, func(ctx context.Context) error {
			st, err := js.Stream(ctx, TasksStream)
			if err != nil {
				return err
			}
			return st.Purge(ctx)
		})
		refused(t, v, "worker creates a stream", "$JS.API.STREAM.CREATE.EVIL", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
			return err
		})
		refused(t, v, "worker deletes the task consumer", "$JS.API.CONSUMER.DELETE."+TasksStream+"."+WorkerConsumer, func(ctx context.Context) error {
			return js.DeleteConsumer(ctx, TasksStream, WorkerConsumer)
		})
		if _, err := nc.SubscribeSync("fanout.>"); err == nil {
			_ = nc.Flush()
		}
		waitViolation(t, v, "worker subscribes to fanout.>", "fanout.>")
	})

	t.Run("submitter", func(t *testing.T) {
		nc, v := rawConn(t, s.URL, seeds[RoleSubmitter])
		js, _ := jetstream.New(nc)
		refused(t, v, "submitter publishes a result", "fanout.results."+rec.ID+".0.0", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "fanout.results."+rec.ID+".0.0", []byte("forged"))
			return err
		})
		refused(t, v, "submitter publishes a heartbeat", "$KV.fanout_workers.fake", func(ctx context.Context) error {
			kv, err := js.KeyValue(ctx, WorkersBucket)
			if err != nil {
				return err
			}
			_, err = kv.Put(ctx, "fake", []byte(`{"name":"fake","allow":["exec"]}`))
			return err
		})
		refused(t, v, "submitter pulls a task", "$JS.API.CONSUMER.MSG.NEXT."+TasksStream+"."+WorkerConsumer, func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT."+TasksStream+"."+WorkerConsumer, []byte(`{"batch":1}`))
			return err
		})
		refused(t, v, "submitter deletes the sweeps bucket", "$JS.API.STREAM.DELETE.KV_"+SweepsBucket, func(ctx context.Context) error {
			return js.DeleteKeyValue(ctx, SweepsBucket)
		})
		refused(t, v, "submitter changes the results stream", "$JS.API.STREAM.UPDATE."+ResultsStream, func(ctx context.Context) error {
			_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: ResultsStream, Subjects: []string{resultsPrefix + ">"}, MaxAge: time.Second})
			return err
		})
	})

	// None of it got through: the admin sees the sweep as submitted, and
	// no forged result or heartbeat.
	ac := connectClient(t, ctx, s.URL, Credentials{NkeySeed: seeds[RoleAdmin]}, "admin", t.Logf)
	if _, err := ac.Lookup(ctx, "evil"); !errors.Is(err, ErrNoSweep) {
		t.Errorf("sweep evil: %v, want ErrNoSweep", err)
	}
	if got, err := ac.Lookup(ctx, rec.ID); err != nil || got.Spec.Job != rec.Spec.Job {
		t.Errorf("sweep %s after the attacks: %+v, %v", rec.ID, got.Spec, err)
	}
	if ws, err := ac.Workers(ctx); err != nil || len(ws) != 0 {
		t.Errorf("workers after the attacks: %v, %v; want none", ws, err)
	}
	if info, err := ac.s.results.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("results stored after the attacks: %+v, %v; want none", info, err)
	}
	if err := ac.Delete(ctx, rec.ID); err != nil {
		t.Errorf("admin deletes a sweep: %v", err)
	}
}

func waitViolation(t *testing.T, v *violations, what, subject string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !v.has(subject) {
		select {
		case <-v.ch:
		case <-deadline:
			t.Errorf("%s: no permissions violation for %q", what, subject)
			return
		}
	}
}

// TestRolesRunASweep: the permitted flows work with role-separated
// credentials, nkey and password alike: a worker pulls, runs and publishes,
// a submitter submits, collects and reads status.
func TestRolesRunASweep(t *testing.T) {
	t.Parallel()
	users, seeds := roleUsers(t)
	const pw = "correct horse battery staple"
	// The lowest cost: a slow bcrypt under -race on a loaded machine would
	// hold the CONNECT past the server's first PING. HashPassword's cost
	// is tested on its own.
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users = append(users, User{Name: "alice", Role: RoleSubmitter, Password: string(hash)})
	s := startUsersServer(t, users)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	plog := &permissionLog{t: t}
	logf := plog.logf
	wnc, err := Connect(ctx, s.URL, Credentials{NkeySeed: seeds[RoleWorker]}, "worker", logf)
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	w, err := NewWorker(ctx, wnc, WorkerOptions{Name: "w", Concurrency: 20, AckWait: 5 * time.Second, Logf: logf})
	if err != nil {
		t.Fatalf("worker role: %v", err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	defer func() { stop(); <-done }()

	if _, err := Connect(ctx, s.URL, Credentials{User: "alice", Password: pw + "x"}, "alice", t.Logf); err == nil {
		t.Error("wrong password accepted")
	}
	c := connectClient(t, ctx, s.URL, Credentials{User: "alice", Password: pw}, "alice", logf)
	const n = 300
	rec, err := submit(ctx, c, sleepSpec(n, 1), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	if err := c.Collect(ctx, rec.ID, k.opts()); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "collected", k.counts, n)
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status as submitter: %v", err)
	}
	if len(st.Sweeps) != 1 || !st.Sweeps[0].Complete || len(st.Workers) != 1 {
		t.Errorf("status: %+v, want the sweep complete and worker w", st)
	}
	plog.check()
}

func TestUsersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	seed := filepath.Join(dir, "w.nk")
	pub, err := GenNkeySeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := AddUser(users, User{Name: "w", Role: RoleWorker, Nkey: pub}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(users); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := AddUser(users, User{Name: "w", Role: RoleSubmitter, Nkey: pub}); err == nil {
		t.Error("a second user w was added")
	}
	got, err := ReadUsers(users)
	if err != nil || len(got) != 1 || got[0].Nkey != pub || got[0].Role != RoleWorker {
		t.Fatalf("ReadUsers: %+v, %v", got, err)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"users":[{"name":"a","role":"worker","password":"hunter2hunter2hunter2"}]}`, "bcrypt hash"},
		{`{"users":[{"name":"a","role":"boss","nkey":"` + pub + `"}]}`, `role "boss"`},
		{`{"users":[{"name":"a","role":"worker","nkey":"UNOPE"}]}`, "not a user public key"},
		{`{"users":[{"name":"a","role":"worker"}]}`, "no credential"},
		{`{"users":[{"name":"a","role":"worker","nkey":"` + pub + `","token":"x"}]}`, "unknown field"},
	} {
		p := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadUsers(p); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("users file %s: %v, want an error naming the file and %q", tc.body, err, tc.want)
		}
	}
}

// TestLocalCreds: a server given no credentials makes an nkey, keeps its
// seed in a 0600 file and refuses clients without it; a restart on the same
// port keeps the seed, so its clients go on working.
func TestLocalCreds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state")
	port := freePort(t)
	o := ServerOptions{Listen: fmt.Sprintf("127.0.0.1:%d", port), StoreDir: t.TempDir(), LocalCreds: true, StateDir: state}
	s, err := StartServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if s.SeedFile != LocalSeedFile(state, port) || !s.SeedCreated {
		t.Errorf("seed file %q (created %v), want %q made now", s.SeedFile, s.SeedCreated, LocalSeedFile(state, port))
	}
	if fi, err := os.Stat(s.SeedFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, %v; want mode 0600", fi, err)
	}
	if nc, err := nats.Connect(s.URL); err == nil {
		nc.Close()
		t.Error("a client without the seed was accepted")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a client without the seed: %v, want an authorization violation", err)
	}
	good := Credentials{NkeySeed: s.SeedFile}
	nc, err := Connect(ctx, s.URL, good, "test", t.Logf)
	if err != nil {
		t.Fatalf("the seed's holder: %v", err)
	}
	nc.Close()
	s.Shutdown()

	s, err = StartServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if s.SeedCreated {
		t.Error("restart made a new seed, want the old one reused")
	}
	nc, err = Connect(ctx, s.URL, good, "test", t.Logf)
	if err != nil {
		t.Fatalf("after a restart, the seed's holder: %v", err)
	}
	nc.Close()
	s.Shutdown()

	// A seed file others can read is not used.
	if err := os.Chmod(LocalSeedFile(state, port), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := StartServer(o); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("seed file mode 0644: %v, want a refusal saying chmod 600", err)
	}
}

func TestServerOptionErrors(t *testing.T) {
	t.Parallel()
	ca, cert, key := writeTestCerts(t, t.TempDir())
	for _, tc := range []struct {
		name string
		o    ServerOptions
		want string
	}{
		{"short token", ServerOptions{Creds: Credentials{Token: "x"}}, "at least 16"},
		{"CA without a certificate", ServerOptions{Creds: Credentials{TLSCA: ca}}, "--tls-cert"},
		{"certificate without key", ServerOptions{Creds: Credentials{TLSCert: cert}}, "--tls-key"},
		{"key without certificate", ServerOptions{Creds: Credentials{TLSKey: key}}, "--tls-cert"},
		{"routes without token or TLS", ServerOptions{LocalCreds: true, ClusterListen: "127.0.0.1:0"}, "routes between servers need"},
		{"nkey routes without token", ServerOptions{Creds: Credentials{NkeySeed: "x"}, ClusterListen: "127.0.0.1:0"}, "routes between servers need"},
	} {
		tc.o.Listen, tc.o.StoreDir, tc.o.StateDir = "127.0.0.1:0", t.TempDir(), t.TempDir()
		s, err := StartServer(tc.o)
		if err == nil {
			s.Shutdown()
		}
		if !errors.Is(err, ErrServerOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrServerOptions saying %q", tc.name, err, tc.want)
		}
	}
	if err := (Credentials{Token: "abc"}).Check(); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("client token of 3 characters: %v, want refused", err)
	}
}

// TestRouteTLS: with client TLS on, routes are TLS too: a peer (or anyone
// on the path) must do TLS before the route's CONNECT carries the token.
func TestRouteTLS(t *testing.T) {
	t.Parallel()
	ca, cert, key := writeTestCerts(t, t.TempDir())
	creds := Credentials{Token: testToken, TLSCert: cert, TLSKey: key}
	ports := [2]int{freePort(t), freePort(t)}
	var srv [2]*Server
	for i := range srv {
		s, err := StartServer(ServerOptions{
			Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", ports[1-i])}, Name: fmt.Sprintf("r%d", i),
			StoreDir: t.TempDir(), Creds: creds,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		srv[i] = s
	}
	// The route port speaks TLS from the first byte, and only to a peer
	// that proves itself with a certificate the CA signed.
	routeAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	tc, err := tls.DialWithDialer(dialer, "tcp", routeAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }})
	if err != nil {
		t.Fatalf("TLS to the route port: %v", err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(30 * time.Second))
	if info, err := bufio.NewReader(tc).ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Errorf("route INFO over TLS: %q, %v", info, err)
	}
	tc.Close()
	anon, err := tls.DialWithDialer(dialer, "tcp", routeAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err == nil {
		_ = anon.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = bufio.NewReader(anon).ReadString('\n') // TLS 1.3: the refusal comes with the first read
		anon.Close()
	}
	if err == nil {
		t.Error("route port: a TLS peer without a certificate was let in")
	}
	deadline := time.Now().Add(60 * time.Second)
	for srv[0].ns.NumRoutes() == 0 || srv[1].ns.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the servers never joined over TLS routes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := Connect(ctx, srv[1].URL, Credentials{Token: testToken, TLSCA: ca}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := NewClient(ctx, nc); err != nil {
		t.Errorf("client of a TLS-routed cluster: %v", err)
	}
}

// TestConnectTLSErrors: a client that cannot verify the server's TLS, or
// that wants TLS from a server without it, fails with a plain message and
// never falls back to clear text.
func TestConnectTLSErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, cert, key := writeTestCerts(t, t.TempDir())
	tlsSrv := startTestServer(t, Credentials{Token: testToken, TLSCert: cert, TLSKey: key})
	u := strings.Replace(tlsSrv.URL, "tls://", "nats://", 1)
	if _, err := Connect(ctx, u, Credentials{Token: testToken}, "test", t.Logf); err == nil ||
		!strings.Contains(err.Error(), "requires TLS") || !strings.Contains(err.Error(), "--tls-ca") {
		t.Errorf("nats:// to a TLS server without its CA: %v, want a message naming --tls-ca", err)
	}
	plain := startTestServer(t, Credentials{Token: testToken})
	tlsURL := strings.Replace(plain.URL, "nats://", "tls://", 1)
	if _, err := Connect(ctx, tlsURL, Credentials{Token: testToken}, "test", t.Logf); err == nil || !strings.Contains(err.Error(), "does not offer it") {
		t.Errorf("tls:// to a server without TLS: %v, want refused", err)
	}
}

func TestClearTextSecret(t *testing.T) {
	t.Parallel()
	tok := Credentials{Token: testToken}
	for _, tc := range []struct {
		url   string
		tls   bool
		creds Credentials
		want  string
	}{
		{"nats://10.1.2.3:4222", false, tok, "the token"},
		{"nats://nats.example.com:4222", false, Credentials{User: "a", Password: "p"}, `the password of user "a"`},
		{"nats://10.1.2.3:4222", true, tok, ""},
		{"nats://127.0.0.1:4222", false, tok, ""},
		{"nats://[::1]:4222", false, tok, ""},
		{"nats://localhost:4222", false, tok, ""},
		{"nats://10.1.2.3:4222", false, Credentials{NkeySeed: "seed.nk"}, ""},
	} {
		if got := clearTextSecret(tc.url, tc.tls, tc.creds); got != tc.want {
			t.Errorf("%s (tls %v): %q, want %q", tc.url, tc.tls, got, tc.want)
		}
	}
}

func TestQuietRepeats(t *testing.T) {
	t.Parallel()
	var lines []string
	say := QuietRepeats(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }, time.Hour)
	for i := 0; i < 100; i++ {
		say("fetch: %v", "connection closed")
	}
	say("task %d done", 1)
	say("task %d done", 2)
	if len(lines) != 3 {
		t.Errorf("lines %q: want the repeated one once and each other line", lines)
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	t.Setenv("FANOUT_TOKEN", testToken)
	t.Setenv("FANOUT_PASSWORD", "from-env-password")
	t.Setenv("FANOUT_USER", "")
	t.Setenv("FANOUT_NKEY_SEED", "")
	if c := (Credentials{NkeySeed: "w.nk"}).FromEnv(); c.Token != "" || c.Password != "" || c.Check() != nil {
		t.Errorf("--nkey-seed with FANOUT_TOKEN and FANOUT_PASSWORD set: %+v (%v), want the seed alone", c, c.Check())
	}
	if c := (Credentials{}).FromEnv(); c.Token != testToken || c.Password != "" || c.Check() != nil {
		t.Errorf("nothing given: %+v, want the environment's token", c)
	}
	if c := (Credentials{User: "alice"}).FromEnv(); c.Password != "from-env-password" || c.Token != "" || c.Check() != nil {
		t.Errorf("--cluster-user alice: %+v, want alice with FANOUT_PASSWORD", c)
	}
}
