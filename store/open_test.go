package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/fanout/fanout/job"
)

// dirFiles lists the names in dir.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// rawDB runs stmts on a plain SQLite file (another program's, or an older
// fanout's) at dsn.
func rawDB(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestForeignFileUntouched: a file that is not a fanout database is
// refused with a message naming it, before anything is written to it or
// beside it: afterwards it is byte for byte what it was, and no -wal, -shm,
// -journal or -lock file is left (the old Open switched it to WAL first).
func TestForeignFileUntouched(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		make  func(t *testing.T, path string)
		wants string
	}{
		{"text", func(t *testing.T, p string) { os.WriteFile(p, []byte("hello, not a database\n"), 0o644) },
			"is not a fanout database (not an SQLite file)"},
		{"short", func(t *testing.T, p string) { os.WriteFile(p, []byte("SQLite"), 0o644) },
			"is not a fanout database (not an SQLite file)"},
		{"sqlite rollback journal", func(t *testing.T, p string) {
			rawDB(t, p, `CREATE TABLE customers(id INTEGER)`, `INSERT INTO customers VALUES(1)`)
		}, "is not a fanout database (an SQLite file of another program, application_id 0x0, 1 tables)"},
		{"sqlite wal", func(t *testing.T, p string) {
			rawDB(t, "file:"+p+"?_pragma=journal_mode(WAL)", `CREATE TABLE customers(id INTEGER)`)
		}, "is not a fanout database (an SQLite file of another program, application_id 0x0, 1 tables)"},
		{"sqlite with an application id", func(t *testing.T, p string) {
			rawDB(t, p, `PRAGMA application_id=1234`, `CREATE TABLE customers(id INTEGER)`)
		}, "is not a fanout database (an SQLite file of another program, application_id 0x4d2)"},
		{"sqlite with tables named like fanout's", func(t *testing.T, p string) {
			rawDB(t, p, `CREATE TABLE sweeps(id)`, `CREATE TABLE results(id)`)
		}, "is not a fanout database (an SQLite file of another program, application_id 0x0, 2 tables)"},
		{"sqlite with fanout's tables, no schema version", func(t *testing.T, p string) {
			rawDB(t, p, `CREATE TABLE fanout_meta(key, value)`, `CREATE TABLE sweeps(id)`, `CREATE TABLE results(id)`)
		}, "is not a fanout database (an SQLite file of another program, with tables named like fanout's but no schema version"},
		{"empty sqlite with an application id", func(t *testing.T, p string) {
			rawDB(t, p, `PRAGMA application_id=99`, `CREATE TABLE x(a)`, `DROP TABLE x`)
		}, "is not a fanout database (an SQLite file of another program, application_id 0x63)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "their.db")
			c.make(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files := dirFiles(t, dir)
			for _, o := range []struct {
				name string
				open func(string) (*Store, error)
			}{{"Open", Open}, {"OpenExisting", OpenExisting}} {
				s, err := o.open(path)
				if err == nil {
					s.Close()
					t.Fatalf("%s took %s", o.name, c.name)
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.wants) {
					t.Errorf("%s: %v\nwant it to name %s and say %q", o.name, err, path, c.wants)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
					t.Errorf("%s changed the file it refused (%d bytes, were %d)", o.name, len(after), len(before))
				}
				if got := dirFiles(t, dir); !slices.Equal(got, files) {
					t.Errorf("%s left files: %v, were %v", o.name, got, files)
				}
			}
		})
	}
}

// TestUnstampedStore: a fanout database made before fanout stamped its
// files (the fanout schema, application_id and user_version 0) is taken,
// read-only as it is, and stamped by the next writer.
func TestUnstampedStore(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s := mustOpen(t, path)
	id, err := s.CreateSweep(testSpec(), Meta{Total: 3})
	if err != nil {
		t.Fatal(err)
	}
	s.FinishSweep(id, Interrupted, "test")
	s.Close()
	header := func() (appID, userVersion int64) {
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow(`SELECT (SELECT application_id FROM pragma_application_id()), (SELECT user_version FROM pragma_user_version())`).Scan(&appID, &userVersion); err != nil {
			t.Fatal(err)
		}
		return
	}
	if a, v := header(); a != applicationID || v != int64(currentVersion()) {
		t.Fatalf("new file: application_id %#x user_version %d, want %#x %d", a, v, applicationID, currentVersion())
	}
	rawDB(t, path, `PRAGMA application_id=0`, `PRAGMA user_version=0`)

	ro, err := open(path, openOptions{readOnly: true, schema: currentVersion()})
	if err != nil {
		t.Fatalf("read-only open of an unstamped fanout database: %v", err)
	}
	if sw, err := ro.Sweep(id); err != nil || sw.Reason != "test" {
		t.Errorf("read-only: sweep %+v, %v", sw, err)
	}
	ro.Close()
	if a, _ := header(); a != 0 {
		t.Fatalf("a read-only open stamped the file")
	}

	s = mustOpen(t, path)
	if sw, err := s.Sweep(id); err != nil || sw.Reason != "test" {
		t.Errorf("after stamping: sweep %+v, %v", sw, err)
	}
	s.Close()
	if a, v := header(); a != applicationID || v != int64(currentVersion()) {
		t.Errorf("after Open: application_id %#x user_version %d, want %#x %d", a, v, applicationID, currentVersion())
	}
}

// TestFileNamesAreNotURIs: '?', '#' and '%' in a --db name are part of the
// file name (the old Open handed SQLite "file:NAME?..." unescaped: "x#y.db"
// wrote to "x", "a?mode=memory.db" failed).
func TestFileNamesAreNotURIs(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a?mode=memory.db", "x#y.db", "p%41.db", "q?#%3f.db", "sp ace&k=v.db"} {
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		s, err := Open(path)
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		id, err := s.CreateSweep(testSpec(), Meta{Total: 1})
		if err == nil {
			err = s.FinishSweep(id, Finished, "")
		}
		s.Close()
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if got := dirFiles(t, dir); !slices.Equal(got, []string{name, name + "-lock"}) {
			t.Errorf("%q: files %q, want the database and its lock", name, got)
		}
		r, err := OpenExisting(path)
		if err != nil {
			t.Errorf("%q: reopen: %v", name, err)
			continue
		}
		if sw, err := r.Sweep(id); err != nil || sw.State != Finished {
			t.Errorf("%q: reopen: sweep %+v, %v", name, sw, err)
		}
		r.Close()
	}
}

// TestNewFileModes: a new database, its -wal, -shm and -lock are 0600
// whatever the umask (the old Open left the database 0400 under umask 0277).
// Not parallel: the umask is the process's.
func TestNewFileModes(t *testing.T) {
	for _, mask := range []int{0o277, 0o022, 0} {
		path := tmpDB(t)
		old := syscall.Umask(mask)
		s, err := Open(path)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		id, err := s.CreateSweep(testSpec(), Meta{Total: 10})
		if err != nil {
			t.Fatal(err)
		}
		w, _ := s.NewWriter(id, WriterOptions{})
		w.Write(result(0, job.Up, ""))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{path, path + "-wal", path + "-shm", path + "-lock"} {
			st, err := os.Stat(f)
			if err != nil {
				t.Errorf("umask %#o: %v", mask, err)
			} else if st.Mode().Perm() != 0o600 {
				t.Errorf("umask %#o: %s has mode %v, want 0600", mask, filepath.Base(f), st.Mode().Perm())
			}
		}
		s.Close()
	}
}

// roMount mounts a tmpfs on a fresh directory; remountRO makes it
// read-only. Root writes through file modes; a read-only file system stops it.
func roMount(t *testing.T) (dir string, remountRO func()) {
	t.Helper()
	dir = smallDisk(t, "16m")
	return dir, func() {
		t.Helper()
		if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v: %s", err, out)
		}
	}
}

// TestReadOnlyFileSystem: a database on a read-only file system is read
// (OpenExisting), with no -shm that SQLite could create, both after a clean
// close (no -wal: read as immutable) and after a crash (its -wal holds
// committed Results: read through it); a writer is refused with a message
// that says so. The old OpenExisting failed with "cannot open".
func TestReadOnlyFileSystem(t *testing.T) {
	dir, remountRO := roMount(t)
	clean := filepath.Join(dir, "clean.db")
	s, err := Open(clean)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 100})
	w, _ := s.NewWriter(id, WriterOptions{})
	for i := uint64(0); i < 100; i++ {
		w.Write(result(i, job.Up, ""))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s.FinishSweep(id, Finished, "")
	s.Close()

	// A process killed after committing: its -wal and -shm stay.
	crashed := filepath.Join(dir, "crashed.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAfterCommit$")
	cmd.Env = append(os.Environ(), "FANOUT_TEST_CRASH_DB="+crashed)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crashing writer: %v\n%s", err, out)
	}
	if _, err := os.Stat(crashed + "-wal"); err != nil {
		t.Fatalf("the crashed writer left no -wal: %v", err)
	}
	remountRO()
	before := dirFiles(t, dir)

	for _, c := range []struct {
		path string
		want uint64
	}{{clean, 100}, {crashed, 7}} {
		r, err := OpenExisting(c.path)
		if err != nil {
			t.Errorf("read-only file system: %v", err)
			continue
		}
		n := 0
		err = r.Results(context.Background(), 1, Query{}, func(job.Result) error { n++; return nil })
		if cnt, _ := r.Count(1); err != nil || uint64(n) != c.want || cnt != c.want {
			t.Errorf("%s: %d results read, count %d (%v), want %d", filepath.Base(c.path), n, cnt, err, c.want)
		}
		if _, err := r.CreateSweep(testSpec(), Meta{}); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("%s: a new sweep in a read-only Store: %v", filepath.Base(c.path), err)
		}
		r.Close()
		_, err = Open(c.path)
		if want := "open " + c.path + ": database is read-only (" + c.path + ": read-only file system)"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open for a sweep: %v\nwant %q", err, want)
		}
	}
	if got := dirFiles(t, dir); !slices.Equal(got, before) {
		t.Errorf("files now %v, were %v", got, before)
	}
}

// TestCrashAfterCommit is TestReadOnlyFileSystem's writer that dies with
// its Results committed to the -wal (not checkpointed), as kill -9 leaves it.
func TestCrashAfterCommit(t *testing.T) {
	path := os.Getenv("FANOUT_TEST_CRASH_DB")
	if path == "" {
		t.Skip("run by TestReadOnlyFileSystem")
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 100})
	if _, err := s.db.Exec(`PRAGMA wal_autocheckpoint=0`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if _, err := s.db.Exec(`INSERT INTO results(sweep_idx, host, code) VALUES(?, 'h', 1)`, id<<idxBits|int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	os.Exit(0) // no Close: no checkpoint, the -wal stays
}

// TestSweepLock: one Store at a time runs a sweep; a second gets an error
// that names the sweep and the process running it. Different sweeps of one
// file run side by side. The old store let both run it.
func TestSweepLock(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	a := mustOpen(t, path)
	b := mustOpen(t, path)
	id, err := a.CreateSweep(testSpec(), Meta{Total: 200})
	if err != nil {
		t.Fatal(err)
	}
	running := fmt.Sprintf("%s: sweep %d is running (pid %d)", path, id, os.Getpid())
	err = b.ResumeSweep(id, "test")
	if !errors.Is(err, ErrSweepRunning) || !strings.Contains(err.Error(), running) {
		t.Fatalf("resume of a running sweep: %v\nwant %q", err, running)
	}
	if err := b.LockSweep(id); !errors.Is(err, ErrSweepRunning) {
		t.Fatalf("lock of a running sweep: %v", err)
	}
	if err := a.LockSweep(id); err != nil {
		t.Fatalf("its own Store again: %v", err)
	}
	// Another sweep of the same file, written at the same time.
	id2, err := b.CreateSweep(testSpec(), Meta{Total: 200})
	if err != nil {
		t.Fatal(err)
	}
	wa, _ := a.NewWriter(id, WriterOptions{Batch: 7})
	wb, _ := b.NewWriter(id2, WriterOptions{Batch: 5})
	done := make(chan error)
	for _, w := range []*Writer{wa, wb} {
		go func() {
			for i := uint64(0); i < 200; i++ {
				w.Write(result(i, job.Up, ""))
			}
			done <- w.Close()
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, sid := range []int64{id, id2} {
		if n, err := a.Count(sid); err != nil || n != 200 {
			t.Errorf("sweep %d: %d results, %v", sid, n, err)
		}
	}
	if err := a.ResumeSweep(id2, "test"); !errors.Is(err, ErrSweepRunning) {
		t.Errorf("resume of b's sweep by a: %v", err)
	}

	// Finishing releases the sweep; closing releases every sweep.
	if err := a.FinishSweep(id, Interrupted, "test"); err != nil {
		t.Fatal(err)
	}
	if err := b.ResumeSweep(id, "test"); err != nil {
		t.Fatalf("resume after the first run finished: %v", err)
	}
	if err := a.ResumeSweep(id, "test"); !errors.Is(err, ErrSweepRunning) {
		t.Errorf("resume of a sweep b resumed: %v", err)
	}
	b.Close()
	for _, sid := range []int64{id, id2} {
		if err := a.ResumeSweep(sid, "test"); err != nil {
			t.Errorf("sweep %d after b closed: %v", sid, err)
		}
	}
}
