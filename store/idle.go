package store

import (
	"runtime"
	"time"

	"github.com/fanout/fanout/job"
)

// starved is how long a commit may wait for idle CPU: a 2,048-Result commit
// takes 3-5 ms of CPU, so a commit still running after this has found no
// idle core, and it and the rest of the sweep's commits run at the sweep's
// own priority.
const starved = 25 * time.Millisecond

// idleThread commits on an OS thread of its own at the lowest CPU priority
// (SCHED_IDLE on Linux). A commit then never takes a core from the sweep
// whose Results it stores (a ping sweep keeps one core busy in the kernel
// sending), only time that would go unused; on 2 cores that cuts what
// --db adds to a 65,536-target ping sweep by about a third. A commit that finds no idle CPU
// within starved is raised back to normal priority by the writer's
// goroutine, so a busy machine never stalls a sweep. The thread is used
// only where both changes are allowed (lowering is; raising again takes
// CAP_SYS_NICE, which a root ping sweep has); elsewhere every commit runs
// on the writer's goroutine as before.
type idleThread struct {
	do     chan []job.Result
	done   chan struct{}
	tid    int
	ok     bool // the thread runs at idle priority and can be raised
	wait   time.Duration
	raised bool // a commit was starved: no more idle commits
}

func startIdle(commit func([]job.Result), wait time.Duration) *idleThread {
	t := &idleThread{do: make(chan []job.Result), done: make(chan struct{}), wait: wait}
	if noIdle {
		return t // not ok: the caller commits
	}
	ready := make(chan struct{})
	go func() {
		// Locked and never unlocked: when this goroutine returns, the
		// runtime ends the thread, so no other goroutine inherits its
		// priority.
		runtime.LockOSThread()
		t.tid, t.ok = idlePriority()
		close(ready)
		if !t.ok {
			return
		}
		for b := range t.do {
			commit(b)
			t.done <- struct{}{}
		}
	}()
	<-ready
	return t
}

// run commits b on the idle thread and waits for it; false means it did not
// (the thread is not in use), and the caller commits b itself.
func (t *idleThread) run(b []job.Result) bool {
	if !t.ok || t.raised {
		return false
	}
	t.do <- b
	timer := time.NewTimer(t.wait)
	defer timer.Stop()
	select {
	case <-t.done:
		return true
	case <-timer.C:
	}
	// No idle CPU: finish this commit at normal priority, and the rest on
	// the writer's goroutine.
	t.raised = true
	normalPriority(t.tid)
	<-t.done
	return true
}

func (t *idleThread) stop() {
	if t.ok {
		close(t.do)
	}
}
