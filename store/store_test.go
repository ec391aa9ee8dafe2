package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/spec"
)

// The store's Writer is a sink like the others.
var _ output.Writer = (*Writer)(nil)

func tmpDB(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "sweeps.db")
}

func testSpec() spec.Spec {
	return spec.Spec{Job: "tcp", JobOptions: json.RawMessage(`{"ports":[22]}`),
		Targets: []string{"127.0.0.0/24"}, Shuffle: true, Seed: 7, Concurrency: 100, Timeout: time.Second}
}

func result(i uint64, st job.Status, cl job.Class) job.Result {
	code := int(i % 3)
	now := time.Unix(1700000000, int64(i)*1000)
	return job.Result{Index: i, Host: fmt.Sprintf("127.0.0.%d", i), Addr: fmt.Sprintf("127.0.0.%d", i), Port: 22,
		Job: "tcp", Status: st, Class: cl, RTT: time.Duration(i+1) * time.Microsecond,
		ExitCode: &code, Stdout: []byte(fmt.Sprintf("out %d", i)), Attempts: 1, Start: now, End: now.Add(time.Millisecond)}
}

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s := mustOpen(t, path)
	spec := testSpec()
	id, err := s.CreateSweep(spec, Meta{Total: 256, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewWriter(id, WriterOptions{Batch: 10})
	if err != nil {
		t.Fatal(err)
	}
	var want []job.Result
	for i := uint64(0); i < 100; i++ {
		r := result(i, job.Up, "")
		if i%4 == 0 {
			r = result(i, job.Down, job.ClassTimeout)
			r.Stdout = nil
			r.ExitCode = nil
		}
		want = append(want, r)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	// A duplicate (redelivered cluster task) is ignored, not an error.
	if err := w.Write(result(5, job.Down, job.ClassRefused)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Written() != 100 {
		t.Errorf("written %d, want 100 (duplicate must be dropped)", w.Written())
	}
	if err := s.FinishSweep(id, Interrupted, "interrupted by signal"); err != nil {
		t.Fatal(err)
	}

	var got []job.Result
	if err := s.Results(context.Background(), id, Query{}, func(r job.Result) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for i := range want {
		a, _ := json.Marshal(want[i])
		b, _ := json.Marshal(got[i])
		if string(a) != string(b) {
			t.Errorf("result %d:\n got %s\nwant %s", i, b, a)
		}
	}

	sw, err := s.Sweep(id)
	if err != nil {
		t.Fatal(err)
	}
	if sw.State != Interrupted || sw.Reason != "interrupted by signal" || sw.Total != 256 || sw.Version != "test" || sw.Runs != 1 {
		t.Errorf("sweep = %+v", sw)
	}
	if sw.Spec.Seed != 7 || !sw.Spec.Shuffle || sw.Spec.Targets[0] != "127.0.0.0/24" || sw.Spec.Timeout != time.Second ||
		string(sw.Spec.JobOptions) != `{"ports":[22]}` {
		t.Errorf("spec did not round-trip: %+v", sw.Spec)
	}
	c, err := s.Counts(id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Done != 100 || c.Up != 75 || c.Down != 25 || c.Classes["timeout"] != 25 {
		t.Errorf("counts = %+v", c)
	}
	var down int
	if err := s.Results(context.Background(), id, Query{Class: []job.Class{job.ClassTimeout}}, func(r job.Result) error {
		down++
		return nil
	}); err != nil || down != 25 {
		t.Errorf("class query: %d results, %v", down, err)
	}

	// The view for sqlite3 users spells the key out.
	var vs, vi int64
	var vaddr sql.NullString
	if err := s.db.QueryRow(`SELECT sweep, idx, addr FROM result_rows WHERE idx=7`).Scan(&vs, &vi, &vaddr); err != nil || vs != id || vi != 7 {
		t.Errorf("result_rows: sweep %d idx %d, %v", vs, vi, err)
	}
	done, err := s.Done(id, 256)
	if err != nil {
		t.Fatal(err)
	}
	if done.Count() != 100 || !done.Has(99) || done.Has(100) || done.Has(1000) {
		t.Errorf("done bitmap count %d", done.Count())
	}

	// Resume appends a run; the default sweep to resume is this one.
	if u, err := s.LastUnfinished(); err != nil || u.ID != id {
		t.Fatalf("last unfinished = %v, %v", u.ID, err)
	}
	if err := s.ResumeSweep(id, "test2"); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishSweep(id, Finished, ""); err != nil {
		t.Fatal(err)
	}
	sw, _ = s.Sweep(id)
	if sw.Runs != 2 || sw.State != Finished || sw.Version != "test2" {
		t.Errorf("after resume: %+v", sw)
	}
	if _, err := s.LastUnfinished(); !errors.Is(err, ErrNoSweep) {
		t.Errorf("every sweep finished: got %v", err)
	}

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(path + "-wal"); err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("wal mode %v, want 0600", st.Mode().Perm())
	}
}

func TestSeveralSweeps(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	var ids []int64
	for k := 0; k < 3; k++ {
		id, err := s.CreateSweep(testSpec(), Meta{Total: 10})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		w, _ := s.NewWriter(id, WriterOptions{})
		for i := uint64(0); i < uint64(k+1); i++ {
			w.Write(result(i, job.Up, ""))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	sw, err := s.Sweeps()
	if err != nil || len(sw) != 3 {
		t.Fatalf("sweeps: %d, %v", len(sw), err)
	}
	for k, id := range ids {
		c, _ := s.Counts(id)
		if c.Done != uint64(k+1) {
			t.Errorf("sweep %d: %d results, want %d", id, c.Done, k+1)
		}
	}
	if last, _ := s.Last(); last.ID != ids[2] {
		t.Errorf("last = %d", last.ID)
	}
	_, err = s.Sweep(99)
	if !errors.Is(err, ErrNoSweep) || !strings.Contains(err.Error(), "sweep 99") || !strings.Contains(err.Error(), "known: 1, 2, 3") {
		t.Errorf("unknown sweep: %v", err)
	}
}

func TestSecretsNeverStored(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s := mustOpen(t, path)
	spec := testSpec()
	spec.Job = "ssh"
	spec.JobOptions = json.RawMessage(`{"user":"ops","password":"hunter2","auth":{"Passphrase":"s3cret-pp","api_token":"tok-123"},"command":["uptime"]}`)
	id, err := s.CreateSweep(spec, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := s.Sweep(id)
	var opts map[string]any
	json.Unmarshal(sw.Spec.JobOptions, &opts)
	if opts["user"] != "ops" || opts["command"] == nil {
		t.Errorf("non-secret options lost: %s", sw.Spec.JobOptions)
	}
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(path + "-wal")
	for _, secret := range []string{"hunter2", "s3cret-pp", "tok-123"} {
		if strings.Contains(string(raw)+string(wal), secret) {
			t.Errorf("secret %q written to the database file", secret)
		}
	}
}

func TestInlinedTargetsOnly(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	for _, tg := range []string{"-", "@hosts.txt"} {
		spec := testSpec()
		spec.Targets = []string{tg}
		if _, err := s.CreateSweep(spec, Meta{}); err == nil || !strings.Contains(err.Error(), tg) {
			t.Errorf("target %q: err = %v", tg, err)
		}
	}
}

func TestBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, not a database\n"), 0o644)

	// An SQLite file from another program.
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE customers(id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// A fanout database written by a newer fanout.
	newer := filepath.Join(dir, "newer.db")
	s, err := Open(newer)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Exec(`UPDATE fanout_meta SET value='99' WHERE key='schema_version'`)
	s.Close()

	readonlyDir := filepath.Join(dir, "ro")
	os.Mkdir(readonlyDir, 0o555)

	cases := []struct {
		name, path, want string
	}{
		{"text file", text, "is not a fanout database (not an SQLite file)"},
		{"other sqlite", other, "is not a fanout database (an SQLite file of another program"},
		{"newer schema", newer, fmt.Sprintf("has schema version 99, newer than this fanout understands (%d)", currentVersion())},
		{"directory", dir, "is a directory"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		cases = append(cases, struct{ name, path, want string }{"read-only dir", filepath.Join(readonlyDir, "x.db"), "permission denied"})
	}
	for _, c := range cases {
		_, err := Open(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: err = %v, want it to name %s and say %q", c.name, err, c.path, c.want)
		}
	}
	// Refusing must not have touched the text file.
	if b, _ := os.ReadFile(text); string(b) != "hello, not a database\n" {
		t.Errorf("text file changed: %q", b)
	}
	if _, err := OpenExisting(filepath.Join(dir, "missing.db")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestReadOnlyFileForNewSweep(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s := mustOpen(t, path)
	s.Close()
	// Root ignores file modes: read-only through SQLite's own flag then.
	ro, err := open(path, openOptions{readOnly: true, schema: currentVersion()})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	_, err = ro.CreateSweep(testSpec(), Meta{})
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("new sweep in a read-only database: %v", err)
	}
}

// TestMigrations builds a version-1 database the way an old fanout did, with
// a sweep in it, and checks that Open migrates it and keeps the data.
// TestSchemaVersion: SchemaVersion is the last migration of a release
// build (the test build adds its extra field's after it).
func TestSchemaVersion(t *testing.T) {
	if got := currentVersion() - len(testMigrations); got != SchemaVersion {
		t.Errorf("%d migrations, SchemaVersion %d: bump it with a step", got, SchemaVersion)
	}
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	old, err := open(path, openOptions{create: true, schema: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(testSpec())
	if _, err := old.db.Exec(`INSERT INTO sweeps(id, job, spec, total, state, reason, created_ns) VALUES(1,'tcp',?,3,'interrupted','signal',?)`,
		string(spec), time.Unix(1700000000, 0).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if _, err := old.db.Exec(`INSERT INTO results(sweep_idx, host, status, end_ns) VALUES(1<<40,'a','up',?),((1<<40)+2,'c','down',?)`,
		time.Unix(1700000010, 0).UnixNano(), time.Unix(1700000020, 0).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if v, _ := old.Schema(); v != 1 {
		t.Fatalf("old schema = %d", v)
	}
	old.Close()

	s := mustOpen(t, path)
	if v, _ := s.Schema(); v != currentVersion() {
		t.Fatalf("schema after migration = %d, want %d", v, currentVersion())
	}
	sw, err := s.Sweep(1)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Runs != 1 || sw.State != Interrupted || sw.Elapsed != 20*time.Second {
		t.Errorf("migrated sweep: runs %d state %s elapsed %v", sw.Runs, sw.State, sw.Elapsed)
	}
	if done, _ := s.Done(1, 3); done.Count() != 2 || !done.Has(2) {
		t.Errorf("migrated results lost")
	}
	// Opening again is a no-op.
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}

func TestWriterThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := mustOpen(t, tmpDB(t))
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 200000})
	if raceEnabled {
		t.Log("race detector on: 20,000 results only")
	}
	w, _ := s.NewWriter(id, WriterOptions{})
	n := uint64(200000)
	if raceEnabled {
		n = 20000
	}
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		r := result(i, job.Up, "")
		r.Stdout, r.ExitCode = nil, nil
		w.Write(r)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	t.Logf("%d results in %v: %.0f results/s", n, el, float64(n)/el.Seconds())
	if c, _ := s.Counts(id); c.Done != n {
		t.Fatalf("stored %d", c.Done)
	}
}

// TestConcurrentCreate: two openers of one new file (a sweep and a reader
// polling it) both succeed; the schema is created once.
func TestConcurrentCreate(t *testing.T) {
	t.Parallel()
	for round := 0; round < 5; round++ {
		path := tmpDB(t)
		errs := make(chan error, 4)
		for k := 0; k < 4; k++ {
			go func() {
				s, err := Open(path)
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		for k := 0; k < 4; k++ {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// TestColumns: every field of a Result reads back as written, including
// zero values that are data (exit code 0, empty output, an empty address)
// and values the store keeps as NULL (an address equal to the host).
func TestColumns(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 100})
	w, err := s.NewWriter(id, WriterOptions{Batch: 1000})
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	var want []job.Result
	add := func(r job.Result) {
		r.Index, r.Job = uint64(len(want)), "tcp"
		want = append(want, r)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	add(job.Result{Host: "db1.example", Addr: "", Status: job.Error, Class: job.ClassResolve, Error: "no such host"})
	add(job.Result{Host: "127.0.0.1", Addr: "127.0.0.1", Status: job.Up, ExitCode: &zero, Stdout: []byte{}, Stderr: []byte{}})
	add(job.Result{Host: "web", Addr: "127.0.0.2", Port: 22, Status: job.Down, Class: job.ClassExit, ExitCode: &zero, Worker: "w1"})
	us := time.Microsecond
	add(job.Result{Host: "127.0.0.3", Status: job.Up, RTT: 41 * us, RTTMin: 41 * us, RTTAvg: 41 * us, RTTMax: 41 * us, Sent: 1, Recv: 1, Attempts: 1})
	add(job.Result{Host: "127.0.0.4", Status: job.Up, RTT: 41 * us, RTTMin: 41 * us, RTTAvg: 50 * us, RTTMax: 41 * us, Sent: 3, Recv: 2, Attempts: 3})
	add(job.Result{Host: "127.0.0.5", Status: job.Down, RTTAvg: 7 * us, RTTMax: 7 * us, Sent: 2, Attempts: 2})
	add(job.Result{Host: "127.0.0.6", Status: job.Up, RTT: 9 * us, RTTMin: 9 * us, RTTAvg: 9 * us, RTTMax: 9 * us, Sent: 1, Recv: 1, Attempts: 1, Start: time.Unix(5, 0)})
	add(job.Result{Host: "127.0.0.7", Status: job.Down, Class: job.ClassTimeout, Sent: 1, Attempts: 1})
	add(job.Result{Host: "127.0.0.8", Status: job.Error, Sent: 1, Recv: 1, Attempts: 2})
	add(job.Result{Host: "127.0.0.9", Status: "skipped", Sent: 1})
	// One field set at a time, then combinations.
	for k := 0; k < 40; k++ {
		r := job.Result{Host: fmt.Sprintf("h%d", k), Status: job.Up}
		d := time.Duration(k+1) * time.Microsecond
		switch k % 8 {
		case 0:
			r.RTT = d
		case 1:
			r.Sent, r.Recv = k, k/2
		case 2:
			r.RTTMin, r.RTTMax = d, 2*d
		case 3:
			r.Attempts = k
		case 4:
			r.Truncated = true
		case 5:
			r.Start = time.Unix(int64(k), 0)
		case 6:
			r.Port = k
		case 7:
			r.RTTAvg, r.End = d, time.Unix(0, int64(k))
		}
		if k >= 8 { // combinations beyond the first eight
			r.Attempts, r.Port = k, k%5
		}
		add(r)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	i := 0
	err = s.Results(context.Background(), id, Query{}, func(r job.Result) error {
		a, _ := json.Marshal(want[i])
		b, _ := json.Marshal(r)
		if string(a) != string(b) {
			t.Errorf("result %d:\n got %s\nwant %s", i, b, a)
		}
		i++
		return nil
	})
	if err != nil || i != len(want) {
		t.Fatalf("%d of %d results read back: %v", i, len(want), err)
	}
}

// TestPageSize: a new file gets 16 KiB pages; a file made with another page
// size (an older fanout's 4 KiB) keeps it and takes Results as before.
func TestPageSize(t *testing.T) {
	t.Parallel()
	pageSize := func(s *Store) int {
		var n int
		if err := s.db.QueryRow(`PRAGMA page_size`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if s := mustOpen(t, tmpDB(t)); pageSize(s) != 16384 {
		t.Errorf("new file: page size %d, want 16384", pageSize(s))
	}

	old := tmpDB(t)
	db, err := sql.Open("sqlite", "file:"+old+"?_pragma=page_size(4096)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE scratch(x); DROP TABLE scratch`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := mustOpen(t, old)
	id, err := s.CreateSweep(testSpec(), Meta{Total: 3000})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		w.Write(job.Result{Index: uint64(i), Host: "127.0.0.1", Status: job.Up, RTT: time.Duration(i)})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(id); err != nil || n != 3000 {
		t.Errorf("4 KiB file: %d results stored (%v), want 3000", n, err)
	}
	if pageSize(s) != 4096 {
		t.Errorf("4 KiB file: page size now %d, want 4096", pageSize(s))
	}
}
