package cli_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestInterruptKillsEscapees: Ctrl-C in the middle of a sweep whose
// commands escape their process group (a setsid child) and their process
// tree (a daemon, forked twice) leaves none of their processes running once
// fanout has exited.
func TestInterruptKillsEscapees(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A sleep under a name of its own, to find survivors in /proc.
	sleep := filepath.Join(dir, "sleep-escapee-test")
	path, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	if err := os.Symlink(path, sleep); err != nil {
		t.Fatal(err)
	}
	// Four sleeps a target: in the group, a setsid child, a daemon, and
	// the leader itself.
	script := `"$1" 3600 &
setsid "$1" 3600 &
(setsid sh -c '"$0" 3600 &' "$1" &)
exec "$1" 3600`
	const targets, perTarget = 3, 4
	cmd := exec.Command(fanoutBin(t), "exec", "-o", "jsonl", "127.0.0.1-3", "--", "sh", "-c", script, "sh", sleep)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	defer func() {
		for _, pid := range survivors(t, sleep) { // a failed test cleans up
			if n, err := parsePid(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	}()

	waitUntil(t, "every sleep to run", func() bool { return len(survivors(t, sleep)) == targets*perTarget })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit: %v, want code 130; stderr:\n%s", err, stderr.String())
	}
	// SIGKILL was sent before fanout exited; give the kernel time to
	// tear the processes down.
	waitUntil(t, "no sleep to survive fanout", func() bool { return len(survivors(t, sleep)) == 0 })
}

// waitUntil polls cond until it holds, failing after a delay that only a
// hang reaches.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	const hang = time.Minute
	for deadline := time.Now().Add(hang); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, hang)
		}
	}
}

func parsePid(s string) (int, error) {
	var n int
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, os.ErrInvalid
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
