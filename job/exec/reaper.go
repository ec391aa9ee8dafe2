package exec

import (
	"errors"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Orphans. A process whose parent exits is adopted by the nearest ancestor
// that is a "child subreaper", else by init. AdoptOrphans makes this process
// one (PR_SET_CHILD_SUBREAPER), so that what a command leaves behind, even
// a daemon that forked twice, comes back to us: it is then killed once no
// command that could have started it is still running, and reaped. Without
// cgroups that is how a daemonised process is found at all; with them, it
// is already killed with its command's cgroup, and this reaps its zombie
// (init may not: pid 1 of a container seldom does).
//
// Our children are then of three kinds: the commands' leaders (the reactor
// reaps them), children of os/exec or other code of the program (theirs to
// reap), and adopted orphans (ours). Orphans are adopted by the main thread
// (the kernel picks the thread group leader), leaders are forked on other
// threads and recorded before they can move (children), and a child of
// os/exec stays in our process group while commands, and all they start,
// run in groups of their own. So an adopted orphan is a child of the main
// thread, not a recorded leader, outside our process group; it is reaped by
// pid (waitid P_PID), never by a wait for any child, which would take the
// exit status of os/exec's children.

// children records the pids of the leaders we forked, from fork until
// reaped (a count: a pid reused after its reaping is briefly recorded
// twice). forkMu is read-held across fork and record, and write-held while
// the reaper lists the main thread's children: a leader it sees is recorded.
var children struct {
	mu   sync.Mutex
	pids map[int]int
}

var forkMu sync.RWMutex

func recordChild(pid int) {
	children.mu.Lock()
	if children.pids == nil {
		children.pids = make(map[int]int)
	}
	children.pids[pid]++
	children.mu.Unlock()
}

// forgetChild is called once pid is reaped.
func forgetChild(pid int) {
	children.mu.Lock()
	if children.pids[pid] <= 1 {
		delete(children.pids, pid)
	} else {
		children.pids[pid]--
	}
	children.mu.Unlock()
}

func isChild(pid int) bool {
	children.mu.Lock()
	defer children.mu.Unlock()
	return children.pids[pid] > 0
}

// running holds the start time (CLOCK_BOOTTIME, taken before the fork) of
// every command in flight: an orphan started before all of them belongs to
// none, so it is killed.
var running struct {
	mu    sync.Mutex
	next  uint64
	start map[uint64]int64
}

// startRunning records a command about to be forked; the returned func
// forgets it once the command and its group are dead.
func startRunning() func() {
	now := boottime()
	running.mu.Lock()
	if running.start == nil {
		running.start = make(map[uint64]int64)
	}
	running.next++
	id := running.next
	running.start[id] = now
	running.mu.Unlock()
	return func() {
		running.mu.Lock()
		delete(running.start, id)
		running.mu.Unlock()
		pokeReaper()
	}
}

// oldestRunning is the start of the oldest command in flight, or the
// largest int64 when none is.
func oldestRunning() int64 {
	oldest := int64(1<<63 - 1)
	running.mu.Lock()
	for _, t := range running.start {
		oldest = min(oldest, t)
	}
	running.mu.Unlock()
	return oldest
}

func boottime() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// reaper is the process's orphan reaper, started by AdoptOrphans.
var reaper struct {
	once    sync.Once
	err     error
	enabled atomic.Bool
	wake    chan struct{}
	// scanMu makes a scan by Close wait for one under way.
	scanMu sync.Mutex
}

// reapInterval spaces scans: a SIGCHLD comes with every command's end, and
// zombies can wait that long.
const reapInterval = 10 * time.Millisecond

// AdoptOrphans makes this process the subreaper of every process its exec
// commands start (Linux PR_SET_CHILD_SUBREAPER), and starts a goroutine, for
// the life of the process, that kills the orphans no running command can
// own and reaps them. Call it once, early, in a program that starts child
// processes only through this package, or through os/exec in its own
// process group: an orphan of any other child would be adopted too, and
// killed once no command runs. The fanout command calls it.
func AdoptOrphans() error {
	reaper.once.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			reaper.err = os.NewSyscallError("prctl PR_SET_CHILD_SUBREAPER", err)
			return
		}
		reaper.wake = make(chan struct{}, 1)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGCHLD)
		go reapLoop(sig)
		reaper.enabled.Store(true)
	})
	return reaper.err
}

// pokeReaper asks the reaper for a scan (a command ended: its orphans may
// be killable now). It never blocks.
func pokeReaper() {
	if reaper.enabled.Load() {
		select {
		case reaper.wake <- struct{}{}:
		default:
		}
	}
}

func reapLoop(sig <-chan os.Signal) {
	for {
		select {
		case <-sig:
		case <-reaper.wake:
		}
		reapScan()
		time.Sleep(reapInterval)
	}
}

// reapScan kills the orphans no running command can own and reaps the
// dead ones. It returns how many live orphans it left running, and how
// many it killed that have not been reaped yet.
func reapScan() (kept, dying int) {
	reaper.scanMu.Lock()
	defer reaper.scanMu.Unlock()
	me := os.Getpid()
	forkMu.Lock()
	kids := childrenOf(me, me)
	forkMu.Unlock()
	if len(kids) == 0 {
		return 0, 0
	}
	ourGroup := syscall.Getpgrp()
	oldest := int64(-1)
	for _, pid := range kids {
		if isChild(pid) {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != me || st.pgrp == ourGroup {
			continue
		}
		if st.state == 'Z' {
			var info unix.Siginfo
			for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG, nil) == unix.EINTR {
			}
			continue
		}
		if oldest < 0 {
			oldest = oldestRunning()
		}
		// start is in clock ticks: the orphan started before end, and
		// belongs to no running command when end is before all of them.
		if end := (st.start + 1) * tickNanos; end <= oldest {
			_ = syscall.Kill(pid, syscall.SIGKILL) // our child: its pid is ours until reaped
			dying++
		} else {
			kept++
		}
	}
	return kept, dying
}

// finalReap, for Job.Close: kill the orphans no running command owns and
// reap them, waiting for them up to limit.
func finalReap(limit time.Duration) {
	if !reaper.enabled.Load() {
		return
	}
	deadline := time.Now().Add(limit)
	for {
		_, dying := reapScan()
		if dying == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// tickNanos is the length of a clock tick of /proc/PID/stat's start time
// (USER_HZ: 100 on every Linux architecture Go supports).
const tickNanos = int64(time.Second / 100)

// procStat is what we use of /proc/PID/stat.
type procStat struct {
	state byte
	ppid  int
	pgrp  int
	start int64 // clock ticks since boot
}

func readStat(pid int) (procStat, error) {
	var st procStat
	b, err := readSmall("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, err
	}
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice threads
	// itrealvalue starttime ...; comm may hold anything, so cut at the last ')'.
	i := strings.LastIndexByte(b, ')')
	if i < 0 {
		return st, errors.New("bad stat")
	}
	f := strings.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return st, errors.New("bad stat")
	}
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgrp, _ = strconv.Atoi(f[2])
	st.start, _ = strconv.ParseInt(f[19], 10, 64)
	return st, nil
}

// readSmall reads a small /proc file with raw calls (no *os.File, no poller).
func readSmall(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= 1<<20 {
				return "", errors.New(path + ": too long")
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			return string(buf), nil
		}
		buf = buf[:len(buf)+n]
	}
}

// childrenOf lists the children of thread tid of process pid
// (/proc/PID/task/TID/children).
func childrenOf(pid, tid int) []int {
	s, err := readSmall("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/children")
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// allChildren lists the children of every thread of pid.
func allChildren(pid int) []int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, childrenOf(pid, tid)...)
		}
	}
	return pids
}

// killTree kills the processes descending from leader (our child, not yet
// reaped) by the parent links in /proc, those that left its process group
// included: where there is no cgroup, the way to reach a child that called
// setsid while its parent lives. It stops them first, pass after pass until
// a pass finds no new one, so that none forks past the walk, then kills
// them all. A process is signalled through a pidfd opened while its parent,
// itself checked, was still its parent: a reused pid is never hit.
func killTree(leader int) {
	_ = syscall.Kill(leader, syscall.SIGSTOP)
	seen := map[int]bool{leader: true}
	walk := []int{leader}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for pass := 0; pass < 16; pass++ {
		grew := false
		for i := 0; i < len(walk) && len(walk) < 1<<15; i++ { // walk grows as we go
			parent := walk[i]
			for _, pid := range allChildren(parent) {
				if seen[pid] {
					continue
				}
				fd, err := unix.PidfdOpen(pid, 0)
				if err != nil {
					continue
				}
				if st, err := readStat(pid); err != nil || st.ppid != parent {
					unix.Close(fd)
					continue // gone, or the pid was reused
				}
				seen[pid] = true
				_ = unix.PidfdSendSignal(fd, unix.SIGSTOP, nil, 0)
				fds = append(fds, fd)
				walk = append(walk, pid)
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	for _, fd := range fds {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}
