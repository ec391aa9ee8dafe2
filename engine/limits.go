package engine

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdHeadroom is kept free for what is not per target: stdio, output files,
// the store, the progress bar, NATS connections, the Go runtime.
const fdHeadroom = 64

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the soft limit now in force. (The Go runtime does this at start too, but a
// library caller may have lowered it; child processes get the original back
// from os/exec.)
func RaiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, fmt.Errorf("raise RLIMIT_NOFILE from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = want
	}
	return lim.Cur, nil
}

// FitConcurrency lowers concurrency c so that c targets using fdsPerTarget
// file descriptors each fit under the soft RLIMIT_NOFILE with some headroom,
// rather than failing with EMFILE halfway through a sweep. It returns the
// concurrency to use and, when it lowered it, a warning for the user.
// c <= 0 stands for DefaultConcurrency; fdsPerTarget <= 0 means a target in
// flight holds no descriptor of its own (ICMP: one socket for the sweep), so c
// is not lowered.
func FitConcurrency(c, fdsPerTarget int) (int, string) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return c, ""
	}
	return fit(c, fdsPerTarget, lim.Cur)
}

func fit(c, fdsPerTarget int, limit uint64) (int, string) {
	if c <= 0 {
		c = DefaultConcurrency
	}
	if fdsPerTarget <= 0 || limit == unix.RLIM_INFINITY {
		return c, ""
	}
	avail := int64(limit) - fdHeadroom
	max := avail / int64(fdsPerTarget)
	if max < 1 {
		max = 1
	}
	if int64(c) <= max {
		return c, ""
	}
	return int(max), fmt.Sprintf("concurrency %d needs about %d open files but the limit is %d (ulimit -n); using concurrency %d (raise the hard limit to go higher)",
		c, int64(c)*int64(fdsPerTarget)+fdHeadroom, limit, max)
}
