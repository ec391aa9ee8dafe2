package cli_test

// The command-line side of the cluster's trust model (issue #14): what the
// submitter prints and notes, what attach checks before it saves anything,
// what stays on the workers, and what --db keeps of --stdin.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/store"
)

var digestRe = regexp.MustCompile(`sha256 ([0-9a-f]{64})`)

// A sweep submitted with --db has its digest printed and noted in the file;
// attach checks the server's record against it (or --digest) before it
// saves anything, so a spec rewritten on the server is neither saved nor
// offered to resume.
func TestClusterAttachChecksTheDigest(t *testing.T) {
	t.Parallel()
	url, _ := testServer(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "sweeps.db")
	r := fanout(t, "", append(refusedSweep(50, "0"), "--server", url, "--detach", "--db", db)...)
	if r.code != 0 {
		t.Fatalf("--detach --db: exit %d:\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	m := digestRe.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no digest printed at submission:\n%s", r.stderr)
	}
	sum := m[1]
	if !strings.Contains(r.stderr, "fanout attach --server "+url+" "+id+" --digest "+sum) {
		t.Errorf("the way back (attach with --digest) not printed:\n%s", r.stderr)
	}

	// Someone who may write the sweeps bucket (here the server's own local
	// credential, which a loopback client finds by itself) replaces the spec.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := cluster.Connect(ctx, url, cluster.Credentials{}, "attacker", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, "fanout_sweeps")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	rec["spec"] = map[string]any{"job": "exec", "job_options": map[string]any{"argv": []string{"touch", filepath.Join(dir, "pwned")}}, "targets": []string{"127.0.0.1"}}
	b, _ := json.Marshal(rec)
	if _, err := kv.Put(ctx, id, b); err != nil {
		t.Fatal(err)
	}

	a := fanout(t, "", "attach", "--server", url, id, "--db", db, "--progress", "never")
	if a.code != 1 || !strings.Contains(a.stderr, "not the one submitted") {
		t.Errorf("attach --db after a rewrite: exit %d, want 1 and a refusal:\n%s", a.code, a.stderr)
	}
	if rows := fanout(t, "", "sweeps", db, "-o", "jsonl").stdout; strings.Count(rows, "\n") != 1 || strings.Contains(rows, `"exec"`) {
		t.Errorf("the database after a refused attach, want its one tcp sweep:\n%s", rows)
	}
	a = fanout(t, "", "attach", "--server", url, id, "--digest", sum, "--progress", "never")
	if a.code != 1 || !strings.Contains(a.stderr, "not the one submitted") {
		t.Errorf("attach --digest after a rewrite: exit %d, want 1 and a refusal:\n%s", a.code, a.stderr)
	}
	a = fanout(t, "", "attach", "--server", url, id, "--db", filepath.Join(dir, "other.db"), "--progress", "never")
	if a.code != 2 || !strings.Contains(a.stderr, "notes no digest for sweep "+id) {
		t.Errorf("attach --db with a file that never saw the sweep: exit %d, want 2 asking for --digest:\n%s", a.code, a.stderr)
	}
	a = fanout(t, "", "attach", "--server", url, id, "--digest", "abc")
	if a.code != 2 {
		t.Errorf("attach --digest abc: exit %d, want 2:\n%s", a.code, a.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("the rewritten spec ran")
	}
}

// sweeps rm deletes a sweep from the server; --retention is checked.
func TestClusterSweepsRmAndRetention(t *testing.T) {
	t.Parallel()
	url, _ := testServer(t)
	for _, bad := range []string{"0s", "500ms", "1000h"} {
		r := fanout(t, "", append(refusedSweep(5, "0"), "--server", url, "--detach", "--retention", bad)...)
		if r.code != 2 || !strings.Contains(r.stderr, "--retention") {
			t.Errorf("--retention %s: exit %d, want 2:\n%s", bad, r.code, r.stderr)
		}
	}
	r := fanout(t, "", append(refusedSweep(5, "0"), "--server", url, "--detach", "--retention", "1h")...)
	if r.code != 0 || !strings.Contains(r.stderr, "kept 1h") {
		t.Fatalf("--retention 1h: exit %d:\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if st := fanout(t, "", "status", "--server", url); !strings.Contains(st.stdout, id) {
		t.Fatalf("status does not list %s:\n%s", id, st.stdout)
	}
	rm := fanout(t, "", "sweeps", "rm", "--server", url, id)
	if rm.code != 0 || !strings.Contains(rm.stderr, "deleted") {
		t.Fatalf("sweeps rm: exit %d:\n%s", rm.code, rm.stderr)
	}
	if st := fanout(t, "", "status", "--server", url); strings.Contains(st.stdout, id) {
		t.Errorf("status still lists %s after sweeps rm:\n%s", id, st.stdout)
	}
	if rm = fanout(t, "", "sweeps", "rm", "--server", url, id); rm.code != 1 || !strings.Contains(rm.stderr, "not on") {
		t.Errorf("sweeps rm twice: exit %d, want 1:\n%s", rm.code, rm.stderr)
	}
	if rm = fanout(t, "", "sweeps", "rm", "--server", url, "no/such"); rm.code != 2 {
		t.Errorf("sweeps rm no/such: exit %d, want 2:\n%s", rm.code, rm.stderr)
	}
}

// An ssh sweep for a cluster names none of the submitter's files: the
// workers use their own, and a worker checks its own at start.
func TestClusterSSHFilesStayOnWorkers(t *testing.T) {
	t.Parallel()
	for _, flag := range [][]string{{"-i", "/nonexistent/id"}, {"--known-hosts", "/tmp/x"}, {"-F", "none"}, {"-J", "bastion"}, {"-o", "UserKnownHostsFile=/tmp/x"}} {
		args := append([]string{"ssh", "--server", "nats://127.0.0.1:1"}, flag...)
		r := fanout(t, "", append(args, "127.0.0.1", "--", "true")...)
		if r.code != 2 || !strings.Contains(r.stderr, "with --server") {
			t.Errorf("ssh %v --server: exit %d, want 2 before connecting:\n%s", flag, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"--host-key", "lax"}, {"--allow", "ssh", "--ssh-config", "/nonexistent/ssh_config"}} {
		r := fanout(t, "", append([]string{"worker", "--server", "nats://127.0.0.1:1"}, args...)...)
		if r.code != 2 {
			t.Errorf("worker %v: exit %d, want 2:\n%s", args, r.code, r.stderr)
		}
	}
}

// --stdin bytes are not written to --db, only their SHA-256: resume needs
// the same bytes again and checks them.
func TestSSHStdinNotStoredInDB(t *testing.T) {
	t.Parallel()
	flags, dir := sshFleet(t)
	secret := []byte("hunter2 is not for the database\n")
	in, other := filepath.Join(dir, "in"), filepath.Join(dir, "other")
	os.WriteFile(in, secret, 0o600)
	os.WriteFile(other, []byte("something else\n"), 0o600)
	db := filepath.Join(dir, "ssh.db")
	out := filepath.Join(dir, "out.jsonl")
	p := startFanout(t, nil, append(flags, "--stdin", in, "--db", db, "-c", "1", "--rate", "5", "-o", "jsonl", "--output-file", out,
		"--progress", "never", "127.2.1.[1-40]", "--", "cat")...)
	waitFor(t, "a few results", time.Minute, func() bool { return countLines(out) >= 3 })
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, time.Minute); code != 130 {
		t.Fatalf("interrupted: exit %d, want 130:\n%s", code, p.errText())
	}
	st, err := store.OpenExisting(db)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := st.Sweep(1)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if opts := string(sw.Spec.JobOptions); strings.Contains(opts, base64.StdEncoding.EncodeToString(secret)) ||
		!strings.Contains(opts, `"stdin_sha256":"`) || strings.Contains(opts, `"stdin":`) {
		t.Errorf("the stored spec's ssh options, want the stdin's digest and not its bytes: %s", opts)
	}
	r := fanout(t, "", "resume", db, "--progress", "never")
	if r.code != 2 || !strings.Contains(r.stderr, "resume --stdin FILE") {
		t.Errorf("resume without --stdin: exit %d, want 2 asking for it:\n%s", r.code, r.stderr)
	}
	r = fanout(t, "", "resume", db, "--stdin", other, "--progress", "never")
	if r.code != 2 || !strings.Contains(r.stderr, "not the same bytes") {
		t.Errorf("resume --stdin with other bytes: exit %d, want 2:\n%s", r.code, r.stderr)
	}
	r = fanout(t, "", "resume", db, "--stdin", in, "-c", "20", "-o", "jsonl", "--progress", "never")
	if r.code != 0 {
		t.Fatalf("resume --stdin: exit %d:\n%s", r.code, r.stderr)
	}
	rs := results(t, r.stdout)
	if len(rs) == 0 {
		t.Fatal("resume ran nothing")
	}
	for _, x := range rs {
		if string(x.Stdout) != string(secret) {
			t.Errorf("%s: stdout %q, want the stdin back", x.Host, x.Stdout)
		}
	}
}
