package cli_test

// The --db file as the CLI meets it: a file of another program, odd names,
// modes, read-only copies, and two processes wanting to run one sweep.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dbProc is a fanout running in the background.
type dbProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
	code   int
}

// startDBProc starts fanout with args in dir (the test's cwd when empty),
// under umask when not negative.
func startDBProc(t *testing.T, dir string, umask int, args ...string) *dbProc {
	t.Helper()
	name, argv := fanoutBin(t), args
	if umask >= 0 {
		// The umask is the process's: set it in a shell that then becomes fanout.
		name, argv = "sh", append([]string{"-c", fmt.Sprintf(`umask %o; exec "$0" "$@"`, umask), fanoutBin(t)}, args...)
	}
	b := &dbProc{cmd: exec.Command(name, argv...), done: make(chan struct{})}
	b.cmd.Dir = dir
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := b.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			b.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				b.code = 128 + int(ws.Signal())
			}
		}
		close(b.done)
	}()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

// wait waits for b's end (bounded: a hang fails the test) and returns its
// exit code.
func (b *dbProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
		return b.code
	case <-time.After(commandTimeout):
		t.Fatalf("fanout %q: still running after %v; stderr:\n%s", b.cmd.Args, commandTimeout, b.stderr.String())
		return -1
	}
}

// fanoutAs runs fanout in dir, as cred's user when cred is set.
func fanoutAs(t *testing.T, dir string, cred *syscall.Credential, bin string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := run{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("fanout %q: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("fanout %q: still running after %v", args, commandTimeout)
	}
	return r
}

// logLines is the lines of file path (none when it does not exist yet).
func logLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}

// waitLogLines waits until file path has n lines: the event a blocked command
// announces itself with. The deadline only catches a hang.
func waitLogLines(t *testing.T, path string, n int, b *dbProc) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for len(logLines(path)) < n {
		select {
		case <-b.done:
			t.Fatalf("fanout ended (exit %d) before %s had %d lines; stderr:\n%s", b.code, path, n, b.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d lines after %v, want %d", path, len(logLines(path)), commandTimeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockingCmd is an exec command line that appends its target to log, then
// waits for the file gate to exist.
func blockingCmd(log, gate string) []string {
	// The gate's directory gone also frees it: the test's clean-up writes the
	// gate, but may remove its directory before a command polls again.
	return []string{"--", "sh", "-c", fmt.Sprintf(`echo {} >> '%s'; until [ -e '%s' ] || [ ! -d '%s' ]; do sleep 0.01; done`, log, gate, filepath.Dir(gate))}
}

// TestOneProcessPerSweep: while a sweep runs, `fanout resume` of it exits 2
// naming the sweep and the process, and runs nothing; a new sweep of the
// same file runs beside it. Then two resumes: the second is refused, the
// first runs what is left, once. New files are 0600 under any umask. The
// old fanout ran every remaining target in both resumes (and left the
// database 0400 under umask 0277).
func TestOneProcessPerSweep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "run.db")
	log, gate := filepath.Join(dir, "ran"), filepath.Join(dir, "go")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) }) // frees any command left

	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	a := startDBProc(t, "", 0o277, append(append([]string{"exec", "--db", db, "-c", "1", "-q"}, hosts...), blockingCmd(log, gate)...)...)
	waitLogLines(t, log, 1, a)

	for _, f := range []string{db, db + "-wal", db + "-shm", db + "-lock"} {
		if st, err := os.Stat(f); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("under umask 0277: %s has mode %v, want 0600", filepath.Base(f), st.Mode().Perm())
		}
	}
	running := func(pid int) string { return fmt.Sprintf("%s: sweep 1 is running (pid %d)", db, pid) }
	// refused runs fanout with args, which is to exit 2 with want, at
	// once: running a target of the sweep (a line in log) fails the test.
	refused := func(want string, args ...string) {
		t.Helper()
		n := len(logLines(log))
		p := startDBProc(t, "", -1, args...)
		deadline := time.Now().Add(commandTimeout)
		for {
			select {
			case <-p.done:
				if p.code != 2 || !strings.Contains(p.stderr.String(), want) {
					t.Errorf("fanout %v: exit %d, stderr:\n%s\nwant exit 2 and %q", args, p.code, p.stderr.String(), want)
				}
				if got := logLines(log); len(got) != n {
					t.Errorf("fanout %v ran targets: %q", args, got[n:])
				}
				return
			default:
			}
			if got := logLines(log); len(got) != n || time.Now().After(deadline) {
				t.Fatalf("fanout %v, while the sweep runs, ran targets (%q) instead of exiting 2 with %q", args, got[n:], want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	refused(running(a.cmd.Process.Pid), "resume", db, "1")
	refused(running(a.cmd.Process.Pid), "resume", db)
	// Another sweep of the same file runs beside it.
	if r := fanout(t, "", "exec", "--db", db, "-q", "127.0.0.9", "--", "sh", "-c", "echo {} >> "+log); r.code != 0 {
		t.Fatalf("a second sweep into %s: exit %d\n%s", db, r.code, r.stderr)
	}

	a.cmd.Process.Signal(os.Interrupt)
	if code := a.wait(t); code != 130 {
		t.Fatalf("interrupted sweep: exit %d\n%s", code, a.stderr.String())
	}
	// Two resumes at once: the first runs, the second is refused.
	r1 := startDBProc(t, "", -1, "resume", db, "1", "-c", "1", "-q")
	waitLogLines(t, log, 3, r1) // 127.0.0.1 again: it had no Result
	refused(running(r1.cmd.Process.Pid), "resume", db, "1")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := r1.wait(t); code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, r1.stderr.String())
	}
	got := logLines(log)
	slices.Sort(got)
	want := []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"}
	if !slices.Equal(got, want) {
		t.Errorf("commands run: %q\nwant %q (127.0.0.1 twice: interrupted, then resumed)", got, want)
	}
	if r := fanout(t, "", "sweeps", db); !regexp.MustCompile(`\n1 +exec +finished +4/4 `).MatchString(r.stdout) ||
		!regexp.MustCompile(`\n2 +exec +finished +1/1 `).MatchString(r.stdout) {
		t.Errorf("sweeps:\n%s%s", r.stdout, r.stderr)
	}
}

// TestForeignDBUntouched: --db naming another program's SQLite file is a
// usage error that names it, and leaves it byte for byte as it was, with no
// file beside it (the old fanout switched it to WAL before refusing it).
func TestForeignDBUntouched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	theirs := filepath.Join(dir, "crm.db")
	raw, err := sql.Open("sqlite", theirs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE customers(id INTEGER, name TEXT); INSERT INTO customers VALUES(1, 'ada')`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	before, _ := os.ReadFile(theirs)
	for _, args := range [][]string{
		{"exec", "--db", theirs, "127.0.0.1", "--", "true"},
		{"sweeps", theirs},
		{"results", theirs},
		{"resume", theirs},
	} {
		r := fanout(t, "", args...)
		want := theirs + " is not a fanout database (an SQLite file of another program"
		if r.code != 2 || !strings.Contains(r.stderr, want) || r.stdout != "" {
			t.Errorf("fanout %v: exit %d\n%s%s\nwant exit 2 and %q", args, r.code, r.stdout, r.stderr, want)
		}
		if after, _ := os.ReadFile(theirs); !bytes.Equal(after, before) {
			t.Fatalf("fanout %v changed %s", args, theirs)
		}
		if es, _ := os.ReadDir(dir); len(es) != 1 {
			t.Fatalf("fanout %v left files beside %s: %v", args, theirs, es)
		}
	}
}

// TestDBNamesAreFiles: --db names with '?' or '#' are file names, not
// URIs (the old fanout failed on "a?mode=memory.db" and wrote "x#y.db" to
// a file named "x").
func TestDBNamesAreFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := fanoutBin(t)
	names := []string{"a?mode=memory.db", "x#y.db", "50%.db"}
	for _, name := range names {
		if r := fanoutAs(t, dir, nil, bin, "exec", "--db", name, "-q", "127.0.0.1", "--", "true"); r.code != 0 {
			t.Errorf("--db %q: exit %d\n%s", name, r.code, r.stderr)
		}
		if r := fanoutAs(t, dir, nil, bin, "sweeps", name); r.code != 0 || !strings.Contains(r.stdout, "finished") {
			t.Errorf("sweeps %q: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
		}
	}
	var want []string
	for _, n := range names {
		want = append(want, n, n+"-lock")
	}
	slices.Sort(want)
	var got []string
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("files %q, want %q", got, want)
	}
}

// TestReadOnlyDBReaders: results, sweeps, diff and report read a database
// they may not write: on a read-only file system, both closed cleanly and
// left by a kill -9 (its -wal holds Results, its -shm cannot be made again),
// and a 0444 file of another user in a directory they may not write. A new
// sweep into it is a usage error that says it is read-only. The old fanout
// could read none of them ("cannot open the database file").
func TestReadOnlyDBReaders(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: to mount a read-only file system and to run as another user")
	}
	dir := smallDisk(t, "16m")
	events := t.TempDir()
	log, gate := filepath.Join(events, "ran"), filepath.Join(events, "go")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) })
	clean, crashed := filepath.Join(dir, "clean.db"), filepath.Join(dir, "crashed.db")
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	if r := fanout(t, "", append(append([]string{"exec", "--db", clean, "-q"}, hosts...), "--", "true")...); r.code != 0 {
		t.Fatalf("exec --db: exit %d\n%s", r.code, r.stderr)
	}
	// Two targets done and committed, the third blocked: then kill -9.
	script := fmt.Sprintf(`case {} in 127.0.0.3) echo {} >> '%s'; until [ -e '%s' ] || [ ! -d '%s' ]; do sleep 0.01; done;; esac`, log, gate, events)
	a := startDBProc(t, "", -1, append(append([]string{"exec", "--db", crashed, "-c", "3", "-q"}, hosts...), "--", "sh", "-c", script)...)
	waitLogLines(t, log, 1, a)
	deadline := time.Now().Add(commandTimeout)
	for !strings.Contains(fanout(t, "", "sweeps", crashed).stdout, "2/3") {
		if time.Now().After(deadline) {
			t.Fatalf("the two quick targets never committed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.cmd.Process.Kill()
	a.wait(t)
	for _, f := range []string{crashed + "-wal", crashed + "-shm"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("kill -9 left no %s: %v", filepath.Base(f), err)
		}
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	bin := fanoutBin(t)
	readers := func(t *testing.T, cred *syscall.Credential, bin, db, done string) {
		t.Helper()
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"sweeps", db}, done},
			{[]string{"results", db, "-o", "jsonl"}, `"host":"127.0.0.2"`},
			{[]string{"report", db}, "targets"},
			{[]string{"diff", db, "1", "1"}, "unchanged"},
		} {
			if r := fanoutAs(t, "", cred, bin, c.args...); r.code != 0 || !strings.Contains(r.stdout+r.stderr, c.want) {
				t.Errorf("fanout %v: exit %d\n%s%s\nwant exit 0 and %q", c.args, r.code, r.stdout, r.stderr, c.want)
			}
		}
		r := fanoutAs(t, "", cred, bin, "exec", "--db", db, "127.0.0.1", "--", "true")
		if want := "--db: open " + db + ": database is read-only ("; r.code != 2 || !strings.Contains(r.stderr, want) || r.stdout != "" {
			t.Errorf("a new sweep into %s: exit %d\n%s%s\nwant exit 2 and %q", db, r.code, r.stdout, r.stderr, want)
		}
	}
	readers(t, nil, bin, clean, "3/3")
	readers(t, nil, bin, crashed, "2/3")

	// A read-only file of another user (root, here) in a directory that
	// is not ours: read as it is, without a -shm beside it.
	theirs := t.TempDir()
	if r := fanout(t, "", append(append([]string{"exec", "--db", filepath.Join(theirs, "x.db"), "-q"}, hosts...), "--", "true")...); r.code != 0 {
		t.Fatalf("exec --db: exit %d\n%s", r.code, r.stderr)
	}
	pub := t.TempDir() // the binary, where that user can run it
	b, err := os.ReadFile(bin)
	if err == nil {
		err = os.WriteFile(filepath.Join(pub, "fanout"), b, 0o755)
	}
	for _, d := range []string{theirs, pub, filepath.Dir(theirs), filepath.Dir(pub)} {
		if err == nil {
			err = os.Chmod(d, 0o755)
		}
	}
	if err == nil {
		err = os.Chmod(filepath.Join(theirs, "x.db"), 0o444)
	}
	if err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	readers(t, nobody, filepath.Join(pub, "fanout"), filepath.Join(theirs, "x.db"), "3/3")
	if es, _ := os.ReadDir(theirs); len(es) != 2 { // x.db and x.db-lock
		t.Errorf("files beside a database read by another user: %v", es)
	}
}
