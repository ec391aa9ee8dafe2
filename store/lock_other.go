//go:build unix && !linux

package store

import "golang.org/x/sys/unix"

// setLock takes a POSIX record lock where open file description locks are
// missing: it excludes other processes, not another Store of this one.
const setLock = unix.F_SETLK
