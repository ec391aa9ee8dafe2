package store

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
)

// policy is thread tid's scheduling class.
func policy(t *testing.T, tid int) uint32 {
	t.Helper()
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a.Policy
}

// TestIdleThread: commits run at idle priority; one that finds no idle CPU
// within the wait is raised to normal priority and finishes, and later
// commits are left to the caller.
func TestIdleThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raising a thread from SCHED_IDLE needs CAP_SYS_NICE (root); without it commits never use the idle thread")
	}
	type seen struct {
		n      int
		policy uint32
	}
	got := make(chan seen, 1)
	release := make(chan struct{})
	var it *idleThread
	commit := func(b []job.Result) {
		got <- seen{len(b), policy(t, unix.Gettid())}
		<-release
	}
	// A wait no busy machine outlasts: an idle-priority thread gets some
	// CPU however loaded the machine is, only late.
	it = startIdle(commit, testwait.Hang)
	defer it.stop()
	if !it.ok {
		t.Fatal("idle thread not in use as root")
	}

	// Prompt: done within the wait, at idle priority, still in use.
	close(release)
	if !it.run(make([]job.Result, 3)) {
		t.Fatal("run = false, want the idle thread to commit")
	}
	if s := <-got; s.n != 3 || s.policy != unix.SCHED_IDLE {
		t.Fatalf("commit saw %d Results at policy %d, want 3 at SCHED_IDLE (%d)", s.n, s.policy, unix.SCHED_IDLE)
	}

	// Starved (the commit outlasts the wait, as it blocks until released):
	// raised, finished, retired.
	it.wait = 30 * time.Millisecond
	release = make(chan struct{})
	done := make(chan bool)
	go func() { done <- it.run(make([]job.Result, 1)) }()
	<-got
	testwait.For(t, "the starved commit's thread to be raised to SCHED_NORMAL", func() bool {
		return policy(t, it.tid) == unix.SCHED_NORMAL
	})
	close(release)
	if !<-done {
		t.Error("a raised commit reported as not run")
	}
	if it.run(make([]job.Result, 1)) {
		t.Error("idle thread still used after a starved commit")
	}
}
