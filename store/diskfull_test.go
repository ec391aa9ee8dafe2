package store

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
)

// smallDisk mounts a tmpfs of size on a fresh directory, or skips.
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

func growDisk(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
}

// TestDiskFull fills a small disk mid-sweep: the writer stops with a message
// that says disk full and how to continue, what was committed stays intact,
// and once there is room the rest is written.
func TestDiskFull(t *testing.T) {
	dir := smallDisk(t, "1m")
	path := filepath.Join(dir, "full.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.CreateSweep(testSpec(), Meta{Total: 4000})
	if err != nil {
		t.Fatal(err)
	}
	var reported error
	// Small batches on a 1m disk: it holds ten and more before it fills,
	// whenever the WAL checkpoints (every 100ms) happen to copy pages. With
	// batches of 100 on 384k it held one or none, depending on that timing:
	// a busy machine made the first commit fail (1 in 30 beside two CPU hogs).
	w, err := s.NewWriter(id, WriterOptions{Batch: 20, OnError: func(err error) { reported = err }})
	if err != nil {
		t.Fatal(err)
	}
	out := []byte(strings.Repeat("x", 400))
	var writeErr error
	for i := uint64(0); i < 4000; i++ {
		r := result(i, job.Up, "")
		r.Stdout = out
		if writeErr = w.Write(r); writeErr != nil {
			break
		}
	}
	closeErr := w.Close()
	err = writeErr
	if err == nil {
		err = closeErr
	}
	if err == nil {
		t.Fatal("4000 results of 400 bytes fit in 1m: the disk never filled")
	}
	if !IsDiskFull(err) || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "fanout resume "+path) {
		t.Errorf("error = %v, want disk full with the resume hint", err)
	}
	if reported == nil {
		t.Errorf("OnError not called")
	}
	committed := w.Written()
	s.Close()
	t.Logf("disk full after %d results: %v", committed, err)

	growDisk(t, dir, "8m")
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var check string
	if err := s.db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	done, err := s.Done(id, 4000)
	if err != nil {
		t.Fatal(err)
	}
	if done.Count() != committed || committed == 0 {
		t.Fatalf("after the disk filled: %d results stored, writer said %d committed", done.Count(), committed)
	}
	// Resume: the rest goes in.
	w, err = s.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 4000; i++ {
		if !done.Has(i) {
			r := result(i, job.Up, "")
			r.Stdout = out
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Counts(id); c.Done != 4000 {
		t.Errorf("after resume: %d results, want 4000", c.Done)
	}
}
