package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
)

// doneCount is how many Results sweep 1 of path has.
func doneCount(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := store.OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.Count(1)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stopAt starts fanout with args and, once it has printed `at` results (one
// JSONL line each, on stdout), sends it sig; at 0 means never: it runs to its
// end. Counting its output, not the database, stops it at a point of the
// sweep itself: the database may lag behind by a few batches. The
// environment gets env. It returns the exit code (128+signal when killed)
// and stderr.
func stopAt(t *testing.T, at uint64, sig syscall.Signal, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	cmd := exec.CommandContext(ctx, fanoutBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var lines uint64
	for {
		n, rerr := out.Read(buf)
		lines += uint64(bytes.Count(buf[:n], []byte("\n")))
		if at > 0 && lines >= at {
			cmd.Process.Signal(sig)
			at = 0
		}
		if rerr != nil {
			break
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("fanout %q: still running after %v; stderr:\n%s", args, testwait.Hang, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if err != nil {
		t.Fatal(err)
	}
	return code, errb.String()
}

// TestResumeAfterKill sweeps 65,536 targets into a database, kills fanout
// at random moments (kill -9, Ctrl-C, and kill -9 in the middle of a
// commit), resumes each time, and checks that in the end every target has
// exactly one Result: none lost, none twice.
func TestResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and resumes a 65,536-target sweep")
	}
	const n = 1 << 16
	db := filepath.Join(t.TempDir(), "kill.db")
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)

	// ICMP in the lab (the batch path of the engine, every target up);
	// elsewhere tcp to a closed port (refused at once on every 127.x: cheap,
	// yet a Result).
	kind, wantStatus, wantClass, endCode := []string{"tcp", "-p", strconv.Itoa(closedPort(t))}, job.Down, job.ClassRefused, 1
	if lab.InLab() {
		// Every lab target answers: a timeout far beyond a reply's delay, so that
		// a reply starved of CPU on a loaded machine is not a host down.
		kind, wantStatus, wantClass, endCode = []string{"ping", "--timeout", "20s"}, job.Up, job.ClassNone, 0
	}
	t.Logf("job: %v", kind)
	sweep := append(kind, "--db", db, "--shuffle", "--seed", "99", "-c", "500",
		"--rate", "10000", "-q", "-o", "jsonl", "--all-addresses", "127.0.0.0/16")
	resume := []string{"resume", db, "-q", "-o", "jsonl"}

	// at is a fraction of what remains: kill after a random share of it.
	type step struct {
		name   string
		lo, hi float64 // kill once this share of the remaining targets is stored
		sig    syscall.Signal
		env    []string
		code   int
	}
	steps := []step{
		{"kill -9", 0.05, 0.3, syscall.SIGKILL, nil, 128 + 9},
		{"ctrl-c", 0.1, 0.4, syscall.SIGINT, nil, 130},
		{"kill -9 again", 0.1, 0.5, syscall.SIGKILL, nil, 128 + 9},
		{"to the end", 0, 0, 0, nil, endCode},
	}
	if debugBuild {
		// The crash hook (in -tags fanout_debug builds only) kills the
		// process mid-transaction of its 2nd commit, rows inserted.
		steps = slices.Insert(steps, 2, step{"kill -9 during a commit", 0, 0, 0, []string{"FANOUT_TEST_CRASH_IN_COMMIT=2"}, 128 + 9})
	} else {
		t.Log("kill -9 during a commit: only with -tags fanout_debug (the crash hook)")
	}
	var before uint64
	for i, s := range steps {
		args := resume
		if i == 0 {
			args = sweep
		}
		var at uint64 // results of this run
		if s.sig != 0 {
			left := float64(n - before)
			at = uint64(left*s.lo+rng.Float64()*left*(s.hi-s.lo)) + 1
		}
		code, stderr := stopAt(t, at, s.sig, s.env, args...)
		got := doneCount(t, db)
		t.Logf("%s at %d: exit %d, %d results stored (was %d)", s.name, at, code, got, before)
		if code != s.code {
			t.Fatalf("%s: exit %d, want %d; stderr:\n%s", s.name, code, s.code, stderr)
		}
		if got < before {
			t.Fatalf("%s: results went from %d down to %d", s.name, before, got)
		}
		if i < len(steps)-1 && got >= n {
			t.Fatalf("%s: the sweep finished before it could be stopped (%d results)", s.name, got)
		}
		if s.sig == syscall.SIGINT && !strings.Contains(stderr, "fanout resume "+db) {
			t.Errorf("ctrl-c: stderr does not say how to resume:\n%s", stderr)
		}
		before = got
	}

	st, err := store.OpenExisting(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sw, err := st.Sweep(1)
	if err != nil {
		t.Fatal(err)
	}
	if sw.State != store.Finished || sw.Runs != len(steps) || sw.Total != n || sw.Spec.Seed != 99 || !sw.Spec.Shuffle {
		t.Errorf("sweep: state %s runs %d total %d seed %d", sw.State, sw.Runs, sw.Total, sw.Spec.Seed)
	}
	if all, _ := st.Sweeps(); len(all) != 1 {
		t.Errorf("%d sweeps in the file, want 1 (resume appends)", len(all))
	}
	seen := make([]int, n)
	var rows int
	err = st.Results(context.Background(), 1, store.Query{}, func(r job.Result) error {
		rows++
		if r.Index >= n {
			return fmt.Errorf("index %d out of range", r.Index)
		}
		seen[r.Index]++
		// Canonical order: index i is 127.0.0.0 + i, whatever the visiting order.
		a, err := netip.ParseAddr(r.Host)
		if err != nil {
			return err
		}
		b := a.As4()
		if want := uint64(b[2])<<8 | uint64(b[3]); want != r.Index || b[0] != 127 || b[1] != 0 {
			return fmt.Errorf("index %d holds %s", r.Index, r.Host)
		}
		if r.Status != wantStatus || r.Class != wantClass {
			return fmt.Errorf("index %d: %s %s %q", r.Index, r.Status, r.Class, r.Error)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var lost, twice int
	for i, c := range seen {
		switch {
		case c == 0:
			if lost++; lost < 5 {
				t.Errorf("index %d has no Result", i)
			}
		case c > 1:
			twice++
		}
	}
	if rows != n || lost != 0 || twice != 0 {
		t.Errorf("%d rows for %d targets: %d lost, %d twice", rows, n, lost, twice)
	}
}

// smallDisk mounts a tmpfs of size, or skips.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFullThenResume: the disk fills mid-sweep; fanout stops, says why
// and how to continue; once there is room, resume completes the sweep.
func TestDiskFullThenResume(t *testing.T) {
	dir := smallDisk(t, "1m")
	db := filepath.Join(dir, "full.db")
	const n = 1 << 14
	port := strconv.Itoa(closedPort(t))
	r := fanout(t, "", "tcp", "-p", port, "--db", db, "-q", "--output-file", os.DevNull, "--all-addresses", "127.0.0.0/18")
	if r.code != 1 || !strings.Contains(r.stderr, "disk full") || !strings.Contains(r.stderr, "fanout resume "+db) {
		t.Fatalf("disk full: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	got := doneCount(t, db)
	t.Logf("%d of %d results stored before the disk filled", got, n)
	if got == 0 || got >= n {
		t.Fatalf("%d results stored before the disk filled, want some but not all %d", got, n)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	r = fanout(t, "", "resume", db, "-q", "--output-file", os.DevNull)
	if r.code != 1 { // every target refused
		t.Fatalf("resume: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if got := doneCount(t, db); got != n {
		t.Errorf("after resume: %d results, want %d", got, n)
	}
	r = fanout(t, "", "sweeps", db)
	if !strings.Contains(r.stdout, "finished") || !strings.Contains(r.stdout, fmt.Sprintf("%d/%d", n, n)) {
		t.Errorf("sweeps after resume:\n%s", r.stdout)
	}
}

// TestResumeEmptyDB: a database with no sweep (created by the store, or an
// empty file) has nothing to resume, which is not "every sweep finished".
func TestResumeEmptyDB(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	created := filepath.Join(dir, "created.db")
	st, err := store.Open(created)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{created, empty} {
		r := fanout(t, "", "resume", db)
		if r.code != 2 || !strings.Contains(r.stderr, "no sweep in "+db) || strings.Contains(r.stderr, "finished") {
			t.Errorf("resume %s: exit %d, stderr %q; want 2 and \"no sweep in %s\"", db, r.code, r.stderr, db)
		}
	}
}
