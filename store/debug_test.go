//go:build fanout_debug

package store

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// TestCrashInCommit: a writer killed (SIGKILL, by the debug build's crash
// hook) inside its 3rd transaction, its rows inserted and not committed,
// leaves the two batches before it and their counts, nothing of the third.
func TestCrashInCommit(t *testing.T) {
	if path := os.Getenv("FANOUT_TEST_CRASH_DB"); path != "" {
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := s.CreateSweep(testSpec(), Meta{Total: 1000})
		w, _ := s.NewWriter(id, WriterOptions{Batch: 100, Interval: time.Hour}) // full batches only
		for i := uint64(0); i < 1000; i++ {
			w.Write(result(i, job.Up, ""))
		}
		w.Close()
		t.Fatal("the crash hook did not kill the writer")
	}
	path := tmpDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashInCommit$")
	cmd.Env = append(os.Environ(), "FANOUT_TEST_CRASH_DB="+path, crashEnv+"=3")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer: %v, want killed by SIGKILL\n%s", err, out)
	}
	s := mustOpen(t, path)
	n, err := s.Count(1)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := s.Counts(1)
	if n != 200 || c.Done != 200 || c.Up != 200 {
		t.Errorf("after a kill in the 3rd commit: %d rows, counts %+v; want the first two batches (200)", n, c)
	}
}
