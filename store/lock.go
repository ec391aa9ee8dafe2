package store

// The run lock: one process at a time runs a sweep. Two resumes of one
// sweep would otherwise both run every target still without a Result (an
// exec command twice). The lock is a byte-range lock on a file beside the
// database (FILE-lock), one range per sweep, so that different sweeps of
// one file still run side by side (SQLite serializes their commits). The
// kernel drops it when the process ends, kill -9 included: a crashed sweep
// is never left locked. Not the database file itself: closing any
// descriptor of it would drop SQLite's own POSIX locks on it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrSweepRunning is matched (errors.Is) by the error of a sweep that another
// process is running.
var ErrSweepRunning = errors.New("sweep is running")

// SweepRunningError says which sweep is taken and by which process.
type SweepRunningError struct {
	Path string
	ID   int64
	PID  int // 0 when unknown
}

func (e *SweepRunningError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = fmt.Sprintf("pid %d", e.PID)
	}
	return fmt.Sprintf("%s: sweep %d is running (%s): wait for it to end, or stop it, before running it again", e.Path, e.ID, pid)
}

func (e *SweepRunningError) Is(target error) bool { return target == ErrSweepRunning }

// lockSlot is the width of a sweep's range in the lock file: the range
// holds the pid of the process holding it, for the message of the next.
const lockSlot = 8

// runLock is a Store's hold on the lock file.
type runLock struct {
	mu   sync.Mutex
	f    *os.File
	held map[int64]bool
}

// lockPath is the lock file of the database at path.
func lockPath(path string) string { return path + "-lock" }

// LockSweep takes sweep id's run lock for this Store, until FinishSweep or
// Close. It is an error wrapping ErrSweepRunning (a *SweepRunningError) when
// another process, or another Store, holds it. Taking it again is a no-op.
// CreateSweep and ResumeSweep take it themselves.
func (s *Store) LockSweep(id int64) error {
	if id < 1 || id >= 1<<(63-idxBits) {
		return fmt.Errorf("lock sweep %d in %s: no such sweep id", id, s.path)
	}
	return s.lockKey(id, func(pid int) error { return &SweepRunningError{Path: s.path, ID: id, PID: pid} })
}

// lockKey takes the run lock of key: a sweep id, or -id for watch id (see
// lockOffset). busy makes the error when another process holds it.
func (s *Store) lockKey(id int64, busy func(pid int) error) error {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	if s.lock.held[id] {
		return nil
	}
	if s.lock.f == nil {
		f, err := openLockFile(lockPath(s.path))
		if err != nil {
			return err
		}
		s.lock.f, s.lock.held = f, map[int64]bool{}
	}
	fd := int(s.lock.f.Fd())
	off := lockOffset(id)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: lockSlot}
	if err := unix.FcntlFlock(uintptr(fd), setLock, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			var b [lockSlot]byte
			pid := 0
			if n, _ := s.lock.f.ReadAt(b[:], off); n == lockSlot {
				pid = int(binary.LittleEndian.Uint64(b[:]))
			}
			return busy(pid)
		}
		return fmt.Errorf("lock %s in %s: %s: %w", lockName(id), s.path, lockPath(s.path), err)
	}
	// A sweep's range holds the pid for the next one's message; a watch's,
	// beyond the sweeps' 64 MiB, is not written (the file stays small).
	if id > 0 {
		var b [lockSlot]byte
		binary.LittleEndian.PutUint64(b[:], uint64(os.Getpid()))
		if _, err := s.lock.f.WriteAt(b[:], off); err != nil {
			s.unlockLocked(id)
			return fmt.Errorf("lock %s in %s: %s: %w", lockName(id), s.path, lockPath(s.path), unwrapPathError(err))
		}
	}
	s.lock.held[id] = true
	return nil
}

// lockOffset is where key's range starts in the lock file: sweeps first
// (ids below 2^23), watches after them.
func lockOffset(key int64) int64 {
	if key < 0 {
		return (1<<(63-idxBits) - key) * lockSlot
	}
	return key * lockSlot
}

func lockName(key int64) string {
	if key < 0 {
		return fmt.Sprintf("watch %d", -key)
	}
	return fmt.Sprintf("sweep %d", key)
}

// openLockFile opens (creating, mode 0600 whatever the umask) the lock file.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("create %s: %w", path, unwrapPathError(err))
		}
		return f, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create %s (the lock that keeps one process per sweep): %w", path, unwrapPathError(err))
	}
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s (the lock that keeps one process per sweep): %w", path, unwrapPathError(err))
	}
	return f, nil
}

// unlockSweep releases sweep id's run lock, if this Store holds it.
func (s *Store) unlockSweep(id int64) {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	if s.lock.held[id] {
		s.unlockLocked(id)
	}
}

// unlockLocked clears the pid and releases the range; s.lock.mu is held.
func (s *Store) unlockLocked(id int64) {
	off := lockOffset(id)
	if id > 0 {
		var zero [lockSlot]byte
		_, _ = s.lock.f.WriteAt(zero[:], off)
	}
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: off, Len: lockSlot}
	_ = unix.FcntlFlock(s.lock.f.Fd(), setLock, &lk)
	delete(s.lock.held, id)
}

// closeLock releases every run lock of the Store.
func (s *Store) closeLock() error {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	if s.lock.f == nil {
		return nil
	}
	for id := range s.lock.held {
		s.unlockLocked(id)
	}
	err := s.lock.f.Close()
	s.lock.f = nil
	return err
}
