package store

import "golang.org/x/sys/unix"

// idlePriority puts the calling thread in the SCHED_IDLE class, after
// checking that it can be raised back (CAP_SYS_NICE): a thread that could
// not be raised could starve a sweep on a busy machine. It returns the
// thread's id and whether the thread now runs at idle priority.
func idlePriority() (int, bool) {
	tid := unix.Gettid()
	idle := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if unix.SchedSetAttr(tid, &idle, 0) != nil {
		return tid, false
	}
	if !normalPriority(tid) {
		// Stuck at idle priority: the caller ends the thread.
		return tid, false
	}
	return tid, unix.SchedSetAttr(tid, &idle, 0) == nil
}

// normalPriority puts thread tid back in the normal (SCHED_OTHER) class.
func normalPriority(tid int) bool {
	return unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0) == nil
}
