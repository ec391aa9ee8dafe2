package exec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Why a spawner: fork copies the forking thread's whole file descriptor
// table and exec then closes every close-on-exec entry, so a process holding
// the pipes and pidfds of 2,000 running commands pays for 8,000 descriptors
// on every fork (measured here: 1.1 ms per fork/exec becomes 2-4 ms). A
// spawner is an OS thread (one per CPU, up to 4: Go runs forks concurrently)
// that unshared its descriptor table and keeps it nearly empty: it creates
// each command's pipes, forks and execs it, and hands the parent's ends
// (stdout, stderr, pidfd) to the process's shared table over a socketpair
// (SCM_RIGHTS), where one receiver goroutine dispatches them. Forks stay
// cheap however many commands run. The runtime never clones other threads
// from a locked one, and each thread dies with its goroutine, which exits
// after spawnIdle without requests. When the kernel refuses (unshare),
// commands are forked from the caller's thread instead.

// spawnIdle is how long the spawner threads outlive their last request.
const spawnIdle = 200 * time.Millisecond

// child is a started command: the parent's ends of its pipes and its pidfd.
type child struct {
	pid          int
	cg           *cgroup  // the command's cgroup; nil = none
	pidfd        *os.File // pollable; nil when pidfds are unavailable
	stdout, errp *os.File // pollable read ends
}

func (c *child) close() {
	if c.pidfd != nil {
		c.pidfd.Close()
	}
	c.stdout.Close()
	c.errp.Close()
}

type spawnReq struct {
	id        uint64
	path      string
	argv, env []string
	cgroup    string // the directory of the command's cgroup; "" = none
}

type spawnReply struct {
	pid      int
	fds      [3]int
	inCgroup bool // the command was forked into the requested cgroup
	err      error
}

// spawnGen is one life of the spawner thread: its queue, its socket and
// the requests waiting for their descriptors.
type spawnGen struct {
	req     chan spawnReq
	pending map[uint64]chan spawnReply // under spawner.mu
}

// spawner is the process's one spawner thread, started on demand.
var spawner struct {
	mu     sync.Mutex
	cur    *spawnGen // nil when no spawner runs
	broken bool      // the spawner could not start once: fork in place
	nextID uint64
}

var errSpawnerGone = errors.New("spawner: thread ended before replying")

// start runs path with argv and env in a new process group (and in the
// cgroup directory cgroup, unless ""), stdin on /dev/null, stdout and
// stderr on fresh pipes. Requests queue up, so the spawner thread forks
// back to back while other threads take the replies. The pid is recorded
// (recordChild) until the caller reaps it and calls forgetChild.
func start(path string, argv, env []string, cgroup string) (spawnReply, error) {
	reply := make(chan spawnReply, 1)
	spawner.mu.Lock()
	if spawner.cur == nil && !spawner.broken {
		g, err := startSpawner()
		if err != nil {
			spawner.broken = true
		}
		spawner.cur = g
	}
	if spawner.broken {
		spawner.mu.Unlock()
		return startHere(path, argv, env, cgroup)
	}
	g := spawner.cur
	spawner.nextID++
	id := spawner.nextID
	g.pending[id] = reply // the spawner does not exit while a request is pending
	spawner.mu.Unlock()
	g.req <- spawnReq{id: id, path: path, argv: argv, env: env, cgroup: cgroup}
	rep := <-reply
	var errno syscall.Errno
	if errors.As(rep.err, &errno) {
		return rep, &os.PathError{Op: "fork/exec", Path: path, Err: errno}
	}
	return rep, rep.err
}

// startSpawner starts a spawner thread and its receiver; called with
// spawner.mu held.
func startSpawner() (*spawnGen, error) {
	// The runtime creates its epoll descriptor on first use: make sure that
	// happens here, in the shared table, not on the spawner thread.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	g := &spawnGen{req: make(chan spawnReq, 4096), pending: make(map[uint64]chan spawnReply)}
	// Go lets forks run concurrently; a thread per CPU keeps them all busy
	// (and gets the spawner its share of a crowded machine).
	n := min(runtime.GOMAXPROCS(0), 4)
	ready := make(chan error, n)
	for i := 0; i < n; i++ {
		go spawnLoop(pair, g, ready)
	}
	var failed error
	for i := 0; i < n; i++ {
		if err := <-ready; err != nil {
			failed = err
		}
	}
	if failed != nil {
		// Threads that did start find nothing pending and idle out.
		unix.Close(pair[0])
		unix.Close(pair[1])
		return nil, failed
	}
	unix.Close(pair[1]) // the spawner's end lives on in its own table
	_ = unix.SetNonblock(pair[0], true)
	go receive(g, os.NewFile(uintptr(pair[0]), "spawner"))
	return g, nil
}

// spawnLoop runs the spawner thread on a thread other than the main one:
// the main thread cannot exit, so a table it unshared would outlive us (and
// /proc/self/fd would show it).
func spawnLoop(pair [2]int, g *spawnGen, ready chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		spawnThread(pair, g, ready)
		return
	}
	locked := make(chan struct{})
	go func() {
		runtime.LockOSThread() // not the main thread: we hold it
		close(locked)
		spawnThread(pair, g, ready)
	}()
	<-locked
	runtime.UnlockOSThread()
}

// spawnThread is the spawner. pair[1] is its end of the socketpair. It
// returns (and its locked thread exits, closing its end, which ends the
// receiver) after spawnIdle with no request pending.
func spawnThread(pair [2]int, g *spawnGen, ready chan<- error) {
	// Never unlocked: the thread exits with us, private table and all.
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		ready <- err
		return
	}
	// Our table is now a copy: drop what would keep the shared table's files
	// open (listeners, pipes), but keep the runtime's own epoll and eventfd,
	// which it may write to from any thread.
	unix.Close(pair[0])
	trimTable(pair[1])
	sock := pair[1]
	ready <- nil

	devnull, _ := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	cgfds := cgroupFDs{} // in this thread's table, which dies with it
	idle := time.NewTimer(spawnIdle)
	defer idle.Stop()
	for {
		select {
		case r := <-g.req:
			pid, fds, inCg, err := forkChild(r.path, r.argv, r.env, devnull, r.cgroup, cgfds)
			if serr := sendReply(sock, r.id, pid, fds, inCg, err); serr != nil {
				if err == nil {
					_ = syscall.Kill(-pid, syscall.SIGKILL)
					var ws syscall.WaitStatus
					_, _ = syscall.Wait4(pid, &ws, 0, nil)
					forgetChild(pid)
				}
				// Answer this request ourselves; later ones fork in place.
				spawner.mu.Lock()
				if ch := g.pending[r.id]; ch != nil {
					delete(g.pending, r.id)
					ch <- spawnReply{err: fmt.Errorf("spawner: %w", serr)}
				}
				if spawner.cur == g {
					spawner.cur = nil
				}
				spawner.broken = true
				spawner.mu.Unlock()
				return
			}
			idle.Reset(spawnIdle)
		case <-idle.C:
			spawner.mu.Lock()
			if len(g.pending) > 0 || len(g.req) > 0 {
				spawner.mu.Unlock()
				idle.Reset(spawnIdle)
				continue
			}
			if spawner.cur == g {
				spawner.cur = nil
			}
			spawner.mu.Unlock()
			return // the thread and its table die here
		}
	}
}

// A reply on the socket: request id, pid, errno (0 on success), whether a
// pidfd follows, whether the child is in its cgroup; the descriptors ride
// along as SCM_RIGHTS on success.
const replySize = 8 + 4 + 4 + 1 + 1

func sendReply(sock int, id uint64, pid int, fds [3]int, inCgroup bool, err error) error {
	var b [replySize]byte
	binary.LittleEndian.PutUint64(b[0:], id)
	binary.LittleEndian.PutUint32(b[8:], uint32(pid))
	if inCgroup {
		b[17] = 1
	}
	if err != nil {
		errno := syscall.EIO
		errors.As(err, &errno)
		binary.LittleEndian.PutUint32(b[12:], uint32(errno))
		return unix.Sendmsg(sock, b[:], nil, nil, 0)
	}
	list := fds[:]
	if fds[2] >= 0 {
		b[16] = 1
	} else {
		list = fds[:2]
	}
	serr := unix.Sendmsg(sock, b[:], unix.UnixRights(list...), nil, 0)
	for _, fd := range list {
		unix.Close(fd)
	}
	return serr
}

// receive takes the spawner's replies into the shared table and hands each
// to its requester, until the spawner's end closes; then fails whatever is
// still pending.
func receive(g *spawnGen, sock *os.File) {
	defer sock.Close()
	rc, err := sock.SyscallConn()
	if err != nil {
		failPending(g)
		return
	}
	buf := make([]byte, replySize)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil || n == 0 { // EOF: the spawner thread is gone
			failPending(g)
			return
		}
		id := binary.LittleEndian.Uint64(buf[0:])
		rep := spawnReply{pid: int(binary.LittleEndian.Uint32(buf[8:])), fds: [3]int{-1, -1, -1}, inCgroup: buf[17] == 1}
		if errno := syscall.Errno(binary.LittleEndian.Uint32(buf[12:])); errno != 0 {
			rep.err = errno
		} else {
			rep.fds, rep.err = parseRights(oob[:oobn], 2+int(buf[16]))
			if rep.err != nil {
				_ = syscall.Kill(-rep.pid, syscall.SIGKILL)
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(rep.pid, &ws, 0, nil)
				forgetChild(rep.pid)
			}
		}
		spawner.mu.Lock()
		ch := g.pending[id]
		delete(g.pending, id)
		spawner.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

func failPending(g *spawnGen) {
	spawner.mu.Lock()
	defer spawner.mu.Unlock()
	for id, ch := range g.pending {
		ch <- spawnReply{err: errSpawnerGone}
		delete(g.pending, id)
	}
	if spawner.cur == g {
		spawner.cur = nil
	}
}

// parseRights extracts want descriptors from a control message: stdout,
// stderr and the pidfd (-1 when want is 2).
func parseRights(oob []byte, want int) ([3]int, error) {
	r := [3]int{-1, -1, -1}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return r, fmt.Errorf("spawner: bad control message (%d, %v)", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != want {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return r, fmt.Errorf("spawner: want %d descriptors, got %d (%v)", want, len(fds), err)
	}
	copy(r[:], fds)
	return r, nil
}

// trimTable closes every descriptor of this thread's table except keep,
// 0-2 and the runtime's epoll and eventfd descriptors. Raw syscalls only: an
// os.File here could touch the poller from the wrong table.
func trimTable(keep int) {
	dir, err := unix.Open("/proc/thread-self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return // keeping the copies costs only fork time
	}
	var fds []int
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dir, buf)
		if err != nil || n <= 0 {
			break
		}
		var names []string
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd > 2 && fd != keep && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
	unix.Close(dir)
	link := make([]byte, 256)
	for _, fd := range fds {
		n, err := unix.Readlink("/proc/thread-self/fd/"+strconv.Itoa(fd), link)
		if err != nil || strings.HasPrefix(string(link[:n]), "anon_inode:[event") {
			continue // the runtime's netpoller
		}
		unix.Close(fd)
	}
}

// cgroupFDs caches, in a spawner thread's own table, the descriptors of the
// cgroups it forked into (pooled cgroups come back): opening one is a path
// walk through the cgroup file system, measured here at a fifth of the
// cost of a fork. Cgroup names are never reused, so an entry is never
// wrong, only stale once its cgroup is removed; the cache is emptied when
// it reaches maxCachedCgroups.
type cgroupFDs map[string]int

const maxCachedCgroups = 4096

// open returns a descriptor of dir, cached when m is not nil; close
// undoes it.
func (m cgroupFDs) open(dir string) int {
	if fd, ok := m[dir]; ok {
		return fd
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if m != nil {
		if len(m) >= maxCachedCgroups {
			for d, fd := range m {
				unix.Close(fd)
				delete(m, d)
			}
		}
		m[dir] = fd
	}
	return fd
}

func (m cgroupFDs) close(dir string, fd int, failed bool) {
	if m == nil || failed {
		if m != nil {
			delete(m, dir)
		}
		unix.Close(fd)
	}
}

// forkChild creates the pipes, forks and execs (into the cgroup directory
// cgroup, unless ""; its descriptor cached in cgfds unless nil), and returns
// the parent's ends: stdout, stderr and the pidfd (-1 when unavailable), and
// whether the child is in the cgroup. It runs on the spawner thread, or in
// place, never on the main thread (see reaper.go).
func forkChild(path string, argv, env []string, devnull int, cgroup string, cgfds cgroupFDs) (int, [3]int, bool, error) {
	var out, errp [2]int
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		return 0, [3]int{}, false, err
	}
	if err := unix.Pipe2(errp[:], unix.O_CLOEXEC); err != nil {
		unix.Close(out[0])
		unix.Close(out[1])
		return 0, [3]int{}, false, err
	}
	pidfd := -1
	sys := &syscall.SysProcAttr{Setpgid: true, PidFD: &pidfd}
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{uintptr(devnull), uintptr(out[1]), uintptr(errp[1])},
		Sys:   sys,
	}
	cgfd := -1
	if cgroup != "" {
		if cgfd = cgfds.open(cgroup); cgfd >= 0 {
			sys.UseCgroupFD, sys.CgroupFD = true, cgfd
		}
	}
	forkMu.RLock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil && cgfd >= 0 {
		// Not the command's fault if it starts without the cgroup (clone3
		// refused by a seccomp profile, a cgroup of the wrong type): then
		// commands stop asking for cgroups.
		sys.UseCgroupFD, sys.CgroupFD = false, 0
		pidfd = -1
		if pid, err = syscall.ForkExec(path, argv, attr); err == nil {
			cgroups.broken.Store(true)
			cgfds.close(cgroup, cgfd, true)
			cgfd = -1
		}
	}
	if err == nil {
		recordChild(pid)
	}
	forkMu.RUnlock()
	if cgfd >= 0 {
		cgfds.close(cgroup, cgfd, false)
	}
	unix.Close(out[1])
	unix.Close(errp[1])
	if err != nil {
		unix.Close(out[0])
		unix.Close(errp[0])
		return 0, [3]int{}, false, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	if pidfd < 0 {
		// No pidfd from clone: open one (the child is ours and unreaped, so
		// its pid cannot be reused meanwhile).
		pidfd, _ = unix.PidfdOpen(pid, 0)
	}
	return pid, [3]int{out[0], errp[0], pidfd}, cgfd >= 0, nil
}

// startHere forks from the calling thread, or another when that is the
// main one (orphans are adopted by the main thread: our commands' leaders
// must not be its children): the fallback path.
func startHere(path string, argv, env []string, cgroup string) (spawnReply, error) {
	rep := spawnReply{fds: [3]int{-1, -1, -1}}
	devnull, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return rep, err
	}
	defer unix.Close(devnull)
	fork := func() {
		rep.pid, rep.fds, rep.inCgroup, rep.err = forkChild(path, argv, env, devnull, cgroup, nil)
	}
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		fork()
		runtime.UnlockOSThread()
		return rep, rep.err
	}
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // not the main thread: we hold it
		fork()
		runtime.UnlockOSThread()
		close(done)
	}()
	<-done
	runtime.UnlockOSThread()
	return rep, rep.err
}

// newChild wraps the parent's descriptors as pollable files (non-blocking
// before os.NewFile, so the runtime's poller takes them): the path for
// commands the reactor does not watch.
func newChild(pid int, fds [3]int) (*child, error) {
	for _, fd := range fds {
		if fd >= 0 {
			_ = unix.SetNonblock(fd, true)
		}
	}
	c := &child{pid: pid, stdout: os.NewFile(uintptr(fds[0]), "stdout"), errp: os.NewFile(uintptr(fds[1]), "stderr")}
	if fds[2] >= 0 {
		c.pidfd = os.NewFile(uintptr(fds[2]), "pidfd")
	}
	return c, nil
}
