package cluster

// Issue #14, the cluster's trust model: a worker's operator decides what
// runs on that worker and with which of its files and keys; a submitter
// chooses targets and a job within that; nothing read from the bus is
// trusted beyond what the server's permissions guarantee. Each test below
// reproduces one finding with the embedded server, real worker processes
// and, where the finding needs one, a raw nats.go client as the attacker
// (anyone who may publish on the bus), and checks it no longer works.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/exec" // the kind an attacker wants to run
	sshjob "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/spec"
)

// attacker is a bare nats.go client: it writes on the bus whatever it
// likes, with no fanout code in between.
type attacker struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

func newAttacker(t *testing.T, ctx context.Context, url string) *attacker {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, SweepsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return &attacker{js: js, kv: kv}
}

// record stores rec as a sweep record and returns its revision and digest,
// which the tasks it publishes then name.
func (a *attacker) record(t *testing.T, ctx context.Context, rec Record) (uint64, string) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := a.kv.Create(ctx, rec.ID, b)
	if err != nil {
		t.Fatal(err)
	}
	return rev, digest(b)
}

func (a *attacker) task(t *testing.T, ctx context.Context, tk task) {
	t.Helper()
	b, _ := json.Marshal(tk)
	if _, err := a.js.Publish(ctx, taskSubject(tk.Sweep, tk.Chunk), b); err != nil {
		t.Fatal(err)
	}
}

func (a *attacker) publish(t *testing.T, ctx context.Context, subject string, data []byte) {
	t.Helper()
	if _, err := a.js.Publish(ctx, subject, data); err != nil {
		t.Fatal(err)
	}
}

// touchSpec is an exec sweep of n loopback targets that creates
// dir/pwned-<index>: the proof that a command ran on a worker.
func touchSpec(dir string, n int) spec.Spec {
	opts, _ := json.Marshal(map[string]any{"argv": []string{"touch", filepath.Join(dir, "pwned-{index}")}})
	return spec.Spec{Job: "exec", JobOptions: opts, Targets: []string{fmt.Sprintf("127.0.0.1-127.0.0.%d", n)}}
}

func noneRan(t *testing.T, dir string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(dir, "pwned-*")); len(m) > 0 {
		t.Fatalf("the forged command ran on the worker: %v", m)
	}
}

// storedSubjects is how many results messages the server holds for id.
func storedSubjects(t *testing.T, ctx context.Context, c *Client, id string) int {
	t.Helper()
	info, err := c.s.results.Info(ctx, jetstream.WithSubjectFilter(resultsPrefix+id+".>"))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

// Finding 1: --allow was checked on the task message's job field, while the
// worker ran the job of the sweep's spec. A task saying clustertest-sleep
// whose spec says exec ran a local command on a worker that never allowed
// exec. Now the kind that runs is the spec's, a task must agree with its
// spec (kind, range within the spec's targets), and one that does not is
// refused and logged.
func TestSecurityAllowIsCheckedOnTheSpecThatRuns(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t)
	w := tc.worker("sleeper", 8, "clustertest-sleep")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	a := newAttacker(t, ctx, tc.url)
	dir := t.TempDir()

	rec := Record{ID: "forged-kind", Spec: touchSpec(dir, 4), Total: 4, TaskSize: 4, Tasks: 1, Submitted: time.Now(), Retention: time.Hour}
	rev, d := a.record(t, ctx, rec)
	a.task(t, ctx, task{Sweep: rec.ID, Chunk: 0, Lo: 0, Hi: 4, Job: "clustertest-sleep", Rev: rev, SHA256: d})
	w.waitLine(t, `the task says job "clustertest-sleep", its sweep's spec runs "exec"`, 30*time.Second)

	// A task reaching beyond its sweep's targets: refused too.
	rec2 := Record{ID: "forged-range", Spec: sleepSpec(10, 1), Total: 10, TaskSize: 10, Tasks: 1, Submitted: time.Now(), Retention: time.Hour}
	rev, d = a.record(t, ctx, rec2)
	a.task(t, ctx, task{Sweep: rec2.ID, Chunk: 0, Lo: 0, Hi: 1000, Job: "clustertest-sleep", Rev: rev, SHA256: d})
	w.waitLine(t, "task 0 is [0, 1000), the sweep's layout (10 targets in tasks of 10) says otherwise", 30*time.Second)

	// A task whose subject names another sweep than its body.
	a.publish(t, ctx, taskSubject("other", 0), mustJSON(task{Sweep: rec2.ID, Chunk: 0, Lo: 0, Hi: 10, Job: "clustertest-sleep", Rev: rev, SHA256: d}))
	w.waitLine(t, "stored as "+tasksPrefix+"other.0: refused", 30*time.Second)

	noneRan(t, dir)
	for _, id := range []string{rec.ID, rec2.ID} {
		if n := storedSubjects(t, ctx, c, id); n != 0 {
			t.Errorf("sweep %s: %d results messages stored, want none", id, n)
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sshLab is an SSH host on 127.0.0.1 that accepts one key, and the files a
// worker's operator keeps for it: the key, a known_hosts holding the host's
// key, and an ssh_config.
type sshLab struct {
	fleet                       *lab.Fleet
	dir, key, known, conf, user string
}

func newSSHLab(t *testing.T) *sshLab { return newSSHLabOn(t, "127.0.0.1:0", "127.0.0.1") }

// newSSHLabOn is an sshLab whose fleet listens on listen (lab's default when
// empty: every 127.x.y.z is a host) and whose known_hosts trusts its key on
// the hosts matching pattern.
func newSSHLabOn(t *testing.T, listen, pattern string) *sshLab {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	l := &sshLab{dir: t.TempDir(), user: "fanout"}
	l.fleet = lab.StartSSHFleetT(t, lab.SSHFleetOptions{Listen: listen, AuthorizedKeys: []ssh.PublicKey{sshPub}})
	block, err := ssh.MarshalPrivateKey(priv, "security test")
	if err != nil {
		t.Fatal(err)
	}
	l.key, l.known, l.conf = filepath.Join(l.dir, "id_ed25519"), filepath.Join(l.dir, "known_hosts"), filepath.Join(l.dir, "ssh_config")
	line := fmt.Sprintf("[%s]:%d %s", pattern, l.fleet.Port, ssh.MarshalAuthorizedKey(l.fleet.HostKey))
	for f, data := range map[string]string{l.key: string(pem.EncodeToMemory(block)), l.known: line, l.conf: "GlobalKnownHostsFile none\n"} {
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// local is the worker's own ssh settings with policy (its known_hosts:
// known, else the lab's).
func (l *sshLab) local(policy, known string) string {
	if known == "" {
		known = l.known
	}
	b, _ := json.Marshal(sshjob.Local{SSHConfig: l.conf, Identities: []string{l.key}, NoAgent: true, KnownHosts: []string{known}, HostKey: policy})
	return "FANOUT_CLUSTER_SSH=" + string(b)
}

// spec is an ssh sweep of the lab host (one target: the lab listens on
// 127.0.0.1 only) with cfg.
func (l *sshLab) spec(cfg sshjob.Config) spec.Spec {
	cfg.User, cfg.Port = l.user, l.fleet.Port
	opts, _ := json.Marshal(cfg)
	return spec.Spec{Job: sshjob.Kind, JobOptions: opts, Targets: []string{"127.0.0.1"}}
}

// Finding 2: a sweep's ssh options chose the worker's known_hosts path and
// policy, identity files, ssh_config and bastion: together, a worker would
// append a key to a file of the submitter's choice and log in elsewhere as
// its own user. Now a worker runs ssh only with --allow ssh, and every file,
// key and route comes from its own settings; a sweep that names any of them,
// or asks a wider host-key policy than the worker's, is refused and logged.
func TestSecuritySSHRunsWithTheWorkersOwnFiles(t *testing.T) {
	t.Parallel()
	l := newSSHLab(t)
	if kinds := DefaultAllow(); strings.Contains(strings.Join(kinds, ","), "ssh") {
		t.Errorf("DefaultAllow() = %v: ssh lends the worker's keys, it must be opt-in", kinds)
	}
	tc := newTestCluster(t)
	w := tc.worker("strict", 8, "ssh", l.local("", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)

	// The attack: the sweep's own known_hosts (to append to), accept-new,
	// identity and config.
	planted := filepath.Join(t.TempDir(), "authorized_keys")
	attack := l.spec(sshjob.Config{Command: "hostname", HostKey: sshjob.HostKeyAcceptNew, KnownHosts: []string{planted},
		Identities: []string{l.key}, SSHConfig: "none"})
	if _, err := submit(ctx, c, attack, SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitLine(t, "the sweep sets --identity, --ssh-config, --known-hosts, which on a worker only its operator chooses", 30*time.Second)

	// A wider policy alone, by -o StrictHostKeyChecking: refused as well.
	wider := l.spec(sshjob.Config{Command: "hostname", Options: map[string]string{"StrictHostKeyChecking": "no"}})
	if _, err := submit(ctx, c, wider, SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitLine(t, "asks host-key policy off, wider than this worker's strict: refused", 30*time.Second)

	// A plain sweep runs, with the worker's key and known_hosts.
	rec, err := submit(ctx, c, l.spec(sshjob.Config{Command: "hostname"}), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	var bad []string
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Emit: func(r job.Result) {
		k.emit(r)
		if r.Status != job.Up || string(r.Stdout) != "127.0.0.1\n" {
			bad = append(bad, fmt.Sprintf("%d: %s/%s %s %q", r.Index, r.Status, r.Class, r.Error, r.Stdout))
		}
	}}); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "plain ssh sweep", k.counts, 1)
	for _, b := range bad {
		t.Error(b)
	}
	if _, err := os.Stat(planted); !errors.Is(err, os.ErrNotExist) {
		b, _ := os.ReadFile(planted)
		t.Errorf("the sweep's known_hosts was written on the worker (%v):\n%s", err, b)
	}
}

// Finding 2, the other way: a sweep may narrow the worker's policy. On a
// worker that accepts new keys, a sweep asking strict checks strictly: the
// unknown host fails, and the worker's known_hosts is left alone.
func TestSecuritySSHSweepMayNarrowThePolicy(t *testing.T) {
	t.Parallel()
	l := newSSHLab(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t)
	tc.worker("lenient", 8, "ssh", l.local(sshjob.HostKeyAcceptNew, empty))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, l.spec(sshjob.Config{Command: "hostname", HostKey: sshjob.HostKeyStrict}), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	var classes []job.Class
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Emit: func(r job.Result) {
		k.emit(r)
		classes = append(classes, r.Class)
	}}); err != nil {
		t.Fatal(err)
	}
	for _, cl := range classes {
		if cl != job.ClassHostKey {
			t.Errorf("strict sweep on an accept-new worker: class %q, want %q (host unknown)", cl, job.ClassHostKey)
		}
	}
	if b, _ := os.ReadFile(empty); len(b) > 0 {
		t.Errorf("the worker's known_hosts was written by a strict sweep:\n%s", b)
	}
}

// Finding 3: "@FILE" and "-" in a spec's targets were expanded on the
// worker, which read its own files for whoever submitted. Now targets are
// expanded where the spec is written (Submit reads @FILE), and a worker
// refuses a spec that still names one; so do the collector and attach.
func TestSecurityWorkersReadNoFileASpecNames(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t)
	w := tc.worker("sleeper", 8, "clustertest-sleep")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	a := newAttacker(t, ctx, tc.url)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1\n127.0.0.2\n127.0.0.3\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	spec := sleepSpec(1, 1)
	spec.Targets = []string{"@" + hosts}
	rec := Record{ID: "reads-a-file", Spec: spec, Total: 3, TaskSize: 3, Tasks: 1, Submitted: time.Now(), Retention: time.Hour}
	rev, d := a.record(t, ctx, rec)
	a.task(t, ctx, task{Sweep: rec.ID, Chunk: 0, Lo: 0, Hi: 3, Job: spec.Job, Rev: rev, SHA256: d})
	w.waitLine(t, `target "@`+hosts+`" reads a local file or standard input`, 30*time.Second)
	if n := storedSubjects(t, ctx, c, rec.ID); n != 0 {
		t.Errorf("the worker ran a sweep of its own file: %d results messages", n)
	}
	if err := c.Collect(ctx, rec.ID, CollectOptions{}); err == nil || !strings.Contains(err.Error(), "reads a local file") {
		t.Errorf("collecting a sweep that names a file: %v, want a refusal", err)
	}

	// Submitted the proper way, the file is read by the submitter.
	good, err := submit(ctx, c, spec, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(good.Spec.Targets, " "); got != "127.0.0.1 127.0.0.2 127.0.0.3" {
		t.Errorf("submitted targets %q, want the file's lines", got)
	}
	k := newCollector()
	if err := c.Collect(ctx, good.ID, k.opts()); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "inlined sweep", k.counts, 3)
	spec.Targets = []string{"-"}
	if _, err := submit(ctx, c, spec, SubmitOptions{}); err == nil {
		t.Error(`Submit of a spec reading "-" (no stdin given): no error`)
	}
}

// Finding 6: results were first-writer-wins and never checked against the
// target at their index, so anyone who could publish results could store
// made-up ones first. Now the collector drops (and counts) a result whose
// host, address, port or job is not its target's, or whose index is outside
// the sweep or its task; a worker that finds its slot taken by such a
// message publishes its own results anyway; a message that does not decode
// is skipped.
func TestSecurityForgedResultsAreDropped(t *testing.T) {
	t.Parallel()
	const n = 200
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	a := newAttacker(t, ctx, tc.url)
	rec, err := submit(ctx, c, sleepSpec(n, 1), SubmitOptions{TaskSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	// Before any worker: task 0's first slot holds 100 made-up results, one
	// of another task and one beyond the sweep; task 1's holds junk.
	var forged []job.Result
	for i := range 100 {
		forged = append(forged, job.Result{Index: uint64(i), Host: "forged.invalid", Job: "clustertest-sleep", Status: job.Up})
	}
	forged = append(forged,
		job.Result{Index: 150, Host: "127.0.0.150", Addr: "127.0.0.150", Job: "clustertest-sleep", Status: job.Up},
		job.Result{Index: 5000, Host: "127.0.19.136", Addr: "127.0.19.136", Job: "clustertest-sleep", Status: job.Up})
	b, _, _ := encodeBatch(forged, 1<<20)
	a.publish(t, ctx, resultSubject(rec.ID, 0, 0), b)
	a.publish(t, ctx, resultSubject(rec.ID, 1, 0), []byte("\xff\x00\x01not results"))
	tc.worker("w1", 50, "")

	k := newCollector()
	var drop Dropped
	var wrong []string
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Dropped: &drop, Emit: func(r job.Result) {
		k.emit(r)
		if want := fmt.Sprintf("127.0.0.%d", r.Index); r.Host != want && r.Index < 256 {
			wrong = append(wrong, fmt.Sprintf("index %d: host %q", r.Index, r.Host))
		}
	}}); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "collector", k.counts, n)
	if len(wrong) > 0 {
		t.Errorf("forged results emitted: %v", wrong[:min(5, len(wrong))])
	}
	if f, i, m := drop.Forged.Load(), drop.Invalid.Load(), drop.Malformed.Load(); f != 100 || i != 2 || m != 1 {
		t.Errorf("dropped %d forged, %d invalid, %d malformed; want 100, 2, 1", f, i, m)
	}
	// The junk starts like a batch of version 1, and is refused as such.
	if why := drop.MalformedReason(); !strings.Contains(why, "format version 1, this fanout reads version 2") {
		t.Errorf("malformed message refused because %q, want its version named", why)
	}
}

// Finding 7: the spec in the sweeps bucket could be replaced while the
// sweep ran; workers ran the new one and attach saved it. Now a record is
// written once (KV Create), its tasks name its revision and digest, a worker
// runs no other record for them, and the collector refuses a record whose
// digest is not the submitted one.
func TestSecuritySpecsAreWriteOnce(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	a := newAttacker(t, ctx, tc.url)
	dir := t.TempDir()
	rec, err := submit(ctx, c, sleepSpec(4, 1), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c.s.sweeps.Get(ctx, rec.ID); err != nil || e.Revision() != rec.Revision || digest(e.Value()) != rec.Digest {
		t.Fatalf("after Submit the record is not the one created (err %v): was it written twice?", err)
	}
	// The attacker replaces it with an exec sweep of its own.
	evil := rec
	evil.Spec = touchSpec(dir, 4)
	if _, err := a.kv.Put(ctx, rec.ID, mustJSON(evil)); err != nil {
		t.Fatal(err)
	}
	w := tc.worker("both", 8, "clustertest-sleep,exec")
	w.waitLine(t, fmt.Sprintf("sweep %q revision %d: no such sweep on this server (deleted, expired or rewritten); dropped", rec.ID, rec.Revision), 30*time.Second)
	err = c.Collect(ctx, rec.ID, CollectOptions{Digest: rec.Digest})
	if !errors.Is(err, ErrSpecChanged) {
		t.Errorf("collect with the submitted digest after the rewrite: %v, want ErrSpecChanged", err)
	}
	noneRan(t, dir)
}

// Finding 9: ssh --stdin bytes were stored, base64, in the spec on the
// server (and in --db), and everything stayed 7 days. Now the spec holds
// their SHA-256 and the bytes are kept beside it only until every result is
// in; a sweep's spec, tasks and results carry its retention (--retention,
// default 24h) and expire with it, unrun tasks included; Delete removes it
// all at once.
func TestSecurityStdinAndRetention(t *testing.T) {
	t.Parallel()
	l := newSSHLab(t)
	tc := newTestCluster(t)
	tc.worker("w1", 8, "ssh", l.local("", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := tc.client(ctx)

	secret := []byte("hunter2: a secret for the hosts only\n")
	spec := l.spec(sshjob.Config{Command: "cat", Stdin: secret})
	rec, err := submit(ctx, c, spec, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.s.sweeps.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(secret))} {
		if bytes.Contains(e.Value(), leak) {
			t.Errorf("the stored spec holds the stdin bytes:\n%s", e.Value())
		}
	}
	if rec.Retention != DefaultRetention {
		t.Errorf("retention %v, want the default %v", rec.Retention, DefaultRetention)
	}
	ttl := func(stream, subject string) string {
		s, err := c.s.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatalf("%s %s: %v", stream, subject, err)
		}
		return m.Header.Get(jetstream.MsgTTLHeader)
	}
	if got := ttl("KV_"+SweepsBucket, "$KV."+SweepsBucket+"."+rec.ID); got != DefaultRetention.String() {
		t.Errorf("record TTL %q, want %v", got, DefaultRetention)
	}
	k := newCollector()
	var outs []string
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Emit: func(r job.Result) { k.emit(r); outs = append(outs, string(r.Stdout)) }}); err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if o != string(secret) {
			t.Errorf("a host got stdin %q, want %q", o, secret)
		}
	}
	if got := ttl(ResultsStream, resultSubject(rec.ID, 0, 0)); got != DefaultRetention.String() {
		t.Errorf("results TTL %q, want %v", got, DefaultRetention)
	}
	if _, err := c.s.sweeps.Get(ctx, rec.ID+stdinKeySuffix); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("stdin still on the server once every result is in: %v", err)
	}

	// A sweep no worker runs (exec, not allowed here) is gone with its
	// tasks once its short retention is over.
	short, err := submit(ctx, c, touchSpec(t.TempDir(), 3), SubmitOptions{Retention: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, c, short.ID)

	// Delete takes everything at once.
	rec2, err := submit(ctx, c, l.spec(sshjob.Config{Command: "cat", Stdin: secret}), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Collect(ctx, rec2.ID, CollectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, rec2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, rec2.ID); !errors.Is(err, ErrNoSweep) {
		t.Errorf("after Delete: %v, want ErrNoSweep", err)
	}
	if n := storedSubjects(t, ctx, c, rec2.ID); n != 0 {
		t.Errorf("after Delete: %d results messages left", n)
	}
	if err := c.Delete(ctx, rec2.ID); !errors.Is(err, ErrNoSweep) {
		t.Errorf("Delete twice: %v, want ErrNoSweep", err)
	}
}

// waitGone waits until sweep id's record and tasks have expired.
func waitGone(t *testing.T, ctx context.Context, c *Client, id string) {
	t.Helper()
	for {
		_, lerr := c.Lookup(ctx, id)
		info, err := c.s.tasks.Info(ctx, jetstream.WithSubjectFilter(tasksPrefix+id+".>"))
		if err != nil {
			t.Fatal(err)
		}
		if errors.Is(lerr, ErrNoSweep) && len(info.State.Subjects) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("sweep %s not expired: lookup %v, %d tasks left", id, lerr, len(info.State.Subjects))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Finding 10: consumers trusted what they decoded: one malformed results
// message ended attach; a record's Total sized a bitmap unchecked (a huge
// one panicked in makeslice). Now a record's layout is checked and its
// Total must be its spec's, within a bound, before anything is sized;
// messages that do not decode, or come on subjects no task of the sweep
// has, are skipped and counted. (Unrun exec tasks expiring is in
// TestSecurityStdinAndRetention; the decoders are fuzzed in fuzz_test.go.)
func TestSecurityHostileRecordsAndMessages(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := tc.client(ctx)
	a := newAttacker(t, ctx, tc.url)

	huge := Record{ID: "huge-total", Spec: sleepSpec(10, 1), Total: 1 << 62, TaskSize: 1 << 62, Tasks: 1, Submitted: time.Now()}
	a.record(t, ctx, huge)
	if err := c.Collect(ctx, huge.ID, CollectOptions{}); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("collecting a record of 2^62 targets: %v, want a refusal", err)
	}
	lying := Record{ID: "lying-total", Spec: sleepSpec(10, 1), Total: 1000, TaskSize: 10, Tasks: 100, Submitted: time.Now()}
	a.record(t, ctx, lying)
	if err := c.Collect(ctx, lying.ID, CollectOptions{}); err == nil || !strings.Contains(err.Error(), "10 targets here, 1000 in its record") {
		t.Errorf("collecting a record whose Total is not its spec's: %v, want a refusal", err)
	}
	layout := Record{ID: "bad-layout", Spec: sleepSpec(10, 1), Total: 10, TaskSize: 3, Tasks: 2, Submitted: time.Now()}
	a.record(t, ctx, layout)
	if _, err := c.Lookup(ctx, layout.ID); err == nil || !strings.Contains(err.Error(), "2 tasks of 3 do not make 10 targets") {
		t.Errorf("a record whose tasks do not cover its targets: %v, want an error", err)
	}

	rec, err := submit(ctx, c, sleepSpec(300, 1), SubmitOptions{TaskSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	a.publish(t, ctx, resultSubject(rec.ID, 0, 0), []byte("junk"))
	a.publish(t, ctx, resultsPrefix+rec.ID+".999.0", mustJSON("no such task"))
	a.publish(t, ctx, resultsPrefix+rec.ID+".x.0", nil)
	tc.worker("w1", 50, "")
	k := newCollector()
	var drop Dropped
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Dropped: &drop, Emit: k.emit}); err != nil {
		t.Fatalf("collect past malformed messages: %v", err)
	}
	exactlyOnce(t, "collector", k.counts, 300)
	if m := drop.Malformed.Load(); m != 3 {
		t.Errorf("%d malformed messages counted, want 3", m)
	}
}
