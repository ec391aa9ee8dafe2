package cli_test

// The cluster's trust model with real `fanout server` and `fanout worker`
// processes: credentials a server makes for its own user, roles from a users
// file, recovery after a restart with other credentials, and credential
// options refused before anything is sent.

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestClusterLocalCredentials: `fanout server` given no credentials accepts
// no one without the seed it made (0600, in the user's state directory),
// and the same user's commands find it with no flag.
func TestClusterLocalCredentials(t *testing.T) {
	t.Parallel()
	url, srv := testServer(t)
	port := url[strings.LastIndex(url, ":")+1:]
	seed := filepath.Join(os.Getenv("XDG_STATE_HOME"), "fanout", "server-"+port+".nk")
	if !strings.Contains(srv.errText(), seed) || !strings.Contains(srv.errText(), "other local users cannot connect") {
		t.Errorf("server start-up does not say where its credentials are and who may connect:\n%s", srv.errText())
	}
	if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file %s: %v, %v; want mode 0600", seed, fi, err)
	}
	// Any local process without the seed: refused.
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was accepted")
	} else if !strings.Contains(err.Error(), "uthorization") {
		t.Errorf("client without credentials: %v, want an authorization violation", err)
	}
	// The same user's commands: no flag needed.
	if r := fanout(t, "", "status", "--server", url); r.code != 0 {
		t.Fatalf("status by the server's user: exit %d:\n%s", r.code, r.stderr)
	}
	if os.Getuid() != 0 {
		return
	}
	// Another local user, pointed at the same state directory: it cannot
	// read the seed, so the server refuses it.
	dir, err := os.MkdirTemp("", "fanout-other-user-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "fanout")
	copyFile(t, fanoutBin(t), bin)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "status", "--server", url)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refused these credentials") {
		t.Errorf("status as uid 65534: %v, want refused:\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterRolesEndToEnd: users made with --add-user, a server with
// --users, a worker and a submitter each with their own role: the sweep
// runs; the worker's seed cannot submit.
func TestClusterRolesEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	wseed, sseed := filepath.Join(dir, "w1.nk"), filepath.Join(dir, "alice.nk")
	for _, u := range [][]string{{"w1", "worker", wseed}, {"alice", "submitter", sseed}} {
		r := fanout(t, "", "server", "--add-user", u[0], "--role", u[1], "--users", users, "--seed-out", u[2])
		if r.code != 0 || !strings.Contains(r.stderr, "--nkey-seed "+u[2]) {
			t.Fatalf("--add-user %s: exit %d:\n%s", u[0], r.code, r.stderr)
		}
		if fi, err := os.Stat(u[2]); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("seed %s: %v, %v; want mode 0600", u[2], fi, err)
		}
	}
	if r := fanout(t, "", "server", "--add-user", "w1", "--role", "worker", "--users", users, "--seed-out", filepath.Join(dir, "again.nk")); r.code != 2 {
		t.Errorf("adding w1 twice: exit %d, want 2:\n%s", r.code, r.stderr)
	}
	url, srv := testServer(t, "--users", users)
	if !strings.Contains(srv.errText(), "2 users with roles (1 worker, 1 submitter, 0 admin)") {
		t.Errorf("server start-up does not sum up its users:\n%s", srv.errText())
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("XDG_STATE_HOME"), "fanout", "server-"+url[strings.LastIndex(url, ":")+1:]+".nk")); err == nil {
		t.Error("a server with --users also made its own credentials")
	}
	w := startFanout(t, nil, "worker", "--server", url, "--name", "w1", "--nkey-seed", wseed)
	waitFor(t, "worker ready", 20*time.Second, func() bool { return strings.Contains(w.errText(), "pulling tasks") })

	const n = 300
	r := fanout(t, "", append(refusedSweep(n, "0"), "--server", url, "--nkey-seed", sseed, "-o", "jsonl")...)
	if r.code != 1 {
		t.Fatalf("sweep as submitter: exit %d, want 1:\n%s", r.code, r.stderr)
	}
	if ws := checkOnce(t, r.stdout, n); ws["w1"] != n {
		t.Errorf("results per worker %v, want all from w1", ws)
	}
	if strings.Contains(strings.ToLower(w.errText()+r.stderr), "permission") {
		t.Errorf("a permitted flow hit a permission error:\nworker:\n%s\nsubmitter:\n%s", w.errText(), r.stderr)
	}
	// The worker's credentials cannot create a sweep.
	r = fanout(t, "", append(refusedSweep(10, "0"), "--server", url, "--nkey-seed", wseed, "--detach")...)
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "permissions violation") {
		t.Errorf("submit with the worker's seed: exit %d, want refused with a permissions violation:\n%s", r.code, r.stderr)
	}
}

// TestClusterWorkerResumesAfterRestart: the server restarts with another
// token; the worker, refused, logs that once (not once per retry) and goes
// on retrying; when the server is back with the worker's token, it resumes
// and runs a sweep.
func TestClusterWorkerResumesAfterRestart(t *testing.T) {
	t.Parallel()
	tokA, tokB := strings.Repeat("a", 32), strings.Repeat("b", 32)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url, store := "nats://"+addr, t.TempDir()
	server := func(tok string) *bgProc {
		p := startFanout(t, []string{"FANOUT_TOKEN=" + tok}, "server", "--listen", addr, "--store", store, "-v")
		waitFor(t, "server ready", 20*time.Second, func() bool { return strings.Contains(p.errText(), "ready on") })
		return p
	}
	srv := server(tokA)
	w := startFanout(t, []string{"FANOUT_TOKEN=" + tokA}, "worker", "--server", url, "--name", "w1", "--ack-wait", "2s")
	waitFor(t, "worker ready", 20*time.Second, func() bool { return strings.Contains(w.errText(), "pulling tasks") })

	srv.kill()
	before := countLines(w.stderr)
	t0 := time.Now()
	srv = server(tokB)
	// Let the worker be refused many times over.
	const refusals = 6
	waitFor(t, fmt.Sprintf("%d refusals of the worker", refusals), 2*time.Minute, func() bool {
		return strings.Count(srv.errText(), "authentication error") >= refusals
	})
	elapsed := time.Since(t0)
	lines := strings.Split(w.errText(), "\n")[before:]
	said := 0
	for _, l := range lines {
		if strings.Contains(l, "refuses these credentials") {
			said++
		}
	}
	allowed := 1 + int(elapsed/time.Minute)
	if said == 0 || said > allowed {
		t.Errorf("worker said %d times that the server refuses its credentials over %v (%d refusals), want 1 to %d:\n%s",
			said, elapsed.Round(time.Second), refusals, allowed, strings.Join(lines, "\n"))
	}
	t.Logf("worker while refused (%d refusals in %v):\n%s", refusals, elapsed.Round(time.Second), strings.Join(lines, "\n"))
	if len(lines) > 8*allowed {
		t.Errorf("worker logged %d lines while refused, want a few:\n%s", len(lines), strings.Join(lines, "\n"))
	}

	srv.kill()
	server(tokA)
	waitFor(t, "worker back", 2*time.Minute, func() bool { return strings.Contains(w.errText(), "connected again") })
	const n = 200
	r := fanout(t, "", append(refusedSweep(n, "0"), "--server", url, "--token", tokA, "-o", "jsonl")...)
	if r.code != 1 {
		t.Fatalf("sweep after the restart: exit %d, want 1:\n%s", r.code, r.stderr)
	}
	if ws := checkOnce(t, r.stdout, n); ws["w1"] != n {
		t.Errorf("results per worker %v, want all from w1", ws)
	}
}

// TestClusterCredentialUsageErrors: options that would be ignored or are
// not credentials exit 2 before anything is sent.
func TestClusterCredentialUsageErrors(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--listen", "127.0.0.1:0", "--store", store, "--tls-ca", "ca.pem"}, "--tls-cert"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--store", store, "--tls-cert", "cert.pem"}, "--tls-key"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--store", store, "--token", "x"}, "at least 16"},
		{[]string{"status", "--server", "nats://127.0.0.1:1", "--token", "secret"}, "at least 16"},
		{[]string{"worker", "--server", "nats://127.0.0.1:1", "--token", "secret"}, "at least 16"},
		{[]string{"server", "--add-user", "bob", "--role", "worker"}, "--users"},
		{[]string{"server", "--add-user", "bob", "--role", "boss", "--users", filepath.Join(store, "u.json")}, "want worker, submitter or admin"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--store", store, "--role", "worker"}, "--add-user"},
	} {
		r := fanout(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("fanout %s: exit %d, want 2 and %q:\n%s", strings.Join(tc.args, " "), r.code, tc.want, r.stderr)
		}
	}
}
