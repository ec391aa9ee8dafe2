package exec

import (
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
// on every fork (measured here: 1.1 ms per fork/exec becomes 4.1 ms). The
// spawner is one OS thread that unshared its descriptor table and keeps it
// nearly empty: it creates each command's pipes, forks and execs it, and
// hands the parent's ends (stdout, stderr, pidfd) to the process's shared
// table over a socketpair (SCM_RIGHTS). Forks stay cheap however many
// commands run. The runtime never clones other threads from a locked one,
// and the thread dies with its goroutine, which exits after spawnIdle
// without requests. When the kernel refuses (unshare, pidfd), commands are
// forked from the caller's thread instead.

// spawnIdle is how long the spawner thread outlives its last request.
const spawnIdle = 200 * time.Millisecond

// child is a started command: the parent's ends of its pipes and its pidfd.
type child struct {
	pid          int
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
	path      string
	argv, env []string
	reply     chan spawnReply
}

type spawnReply struct {
	pid int
	err error
}

// spawner is the process's one spawner thread, started on demand.
var spawner struct {
	mu      sync.Mutex // one exchange at a time; held by the thread to stop
	running bool
	broken  bool // unshare or socketpair failed once: fork in place
	req     chan spawnReq
	sock    int // our end of the socketpair, in the shared table
}

// start runs path with argv and env in a new process group, stdin on
// /dev/null, stdout and stderr on fresh pipes.
func start(path string, argv, env []string) (*child, error) {
	spawner.mu.Lock()
	if !spawner.running && !spawner.broken {
		if err := startSpawner(); err != nil {
			spawner.broken = true
		}
	}
	if spawner.broken {
		spawner.mu.Unlock()
		return startHere(path, argv, env)
	}
	reply := make(chan spawnReply, 1)
	spawner.req <- spawnReq{path: path, argv: argv, env: env, reply: reply}
	rep := <-reply
	if rep.err != nil {
		spawner.mu.Unlock()
		return nil, rep.err
	}
	fds, err := recvFds(spawner.sock)
	spawner.mu.Unlock()
	if err != nil {
		// The command runs but we lost its pipes: kill it rather than leak it.
		_ = syscall.Kill(-rep.pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(rep.pid, &ws, 0, nil)
		return nil, fmt.Errorf("spawner: %w", err)
	}
	return newChild(rep.pid, fds)
}

// startSpawner starts the spawner thread; called with spawner.mu held.
func startSpawner() error {
	// The runtime creates its epoll descriptor on first use: make sure that
	// happens here, in the shared table, not on the spawner thread.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ready := make(chan error, 1)
	req := make(chan spawnReq)
	go spawnLoop(pair, req, ready)
	if err := <-ready; err != nil {
		unix.Close(pair[0])
		unix.Close(pair[1])
		return err
	}
	unix.Close(pair[1]) // the spawner's end lives on in its own table
	spawner.running, spawner.req, spawner.sock = true, req, pair[0]
	return nil
}

// spawnLoop runs the spawner thread on a thread other than the main one:
// the main thread cannot exit, so a table it unshared would outlive us (and
// /proc/self/fd would show it).
func spawnLoop(pair [2]int, req chan spawnReq, ready chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		spawnThread(pair, req, ready)
		return
	}
	locked := make(chan struct{})
	go func() {
		runtime.LockOSThread() // not the main thread: we hold it
		close(locked)
		spawnThread(pair, req, ready)
	}()
	<-locked
	runtime.UnlockOSThread()
}

// spawnThread is the spawner. pair[1] is its end of the socketpair. It
// returns (and its locked thread exits) after spawnIdle without requests.
func spawnThread(pair [2]int, req chan spawnReq, ready chan<- error) {
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
	idle := time.NewTimer(spawnIdle)
	defer idle.Stop()
	for {
		select {
		case r := <-req:
			pid, fds, err := forkChild(r.path, r.argv, r.env, devnull)
			if err == nil {
				if err = sendFds(sock, fds); err != nil {
					_ = syscall.Kill(-pid, syscall.SIGKILL)
					var ws syscall.WaitStatus
					_, _ = syscall.Wait4(pid, &ws, 0, nil)
					err = fmt.Errorf("spawner: %w", err)
				}
			}
			r.reply <- spawnReply{pid: pid, err: err}
			idle.Reset(spawnIdle)
		case <-idle.C:
			if !spawner.mu.TryLock() {
				idle.Reset(spawnIdle) // a request is on its way
				continue
			}
			spawner.running = false
			mainSock := spawner.sock
			// Close our end's peer in the shared table from a thread that
			// uses it (any goroutine but this locked one).
			done := make(chan struct{})
			go func() { unix.Close(mainSock); close(done) }()
			<-done
			spawner.mu.Unlock()
			return // the thread and its table die here
		}
	}
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

// forkChild creates the pipes, forks and execs, and returns the parent's
// ends: stdout, stderr and the pidfd (-1 when unavailable). It runs on the
// spawner thread, or in place.
func forkChild(path string, argv, env []string, devnull int) (int, [3]int, error) {
	var out, errp [2]int
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		return 0, [3]int{}, err
	}
	if err := unix.Pipe2(errp[:], unix.O_CLOEXEC); err != nil {
		unix.Close(out[0])
		unix.Close(out[1])
		return 0, [3]int{}, err
	}
	pidfd := -1
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{uintptr(devnull), uintptr(out[1]), uintptr(errp[1])},
		Sys:   &syscall.SysProcAttr{Setpgid: true, PidFD: &pidfd},
	}
	pid, err := syscall.ForkExec(path, argv, attr)
	unix.Close(out[1])
	unix.Close(errp[1])
	if err != nil {
		unix.Close(out[0])
		unix.Close(errp[0])
		return 0, [3]int{}, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	if pidfd < 0 {
		// No pidfd from clone: open one (the child is ours and unreaped, so
		// its pid cannot be reused meanwhile).
		pidfd, _ = unix.PidfdOpen(pid, 0)
	}
	return pid, [3]int{out[0], errp[0], pidfd}, nil
}

// sendFds hands a spawn's descriptors to the shared table and closes ours.
func sendFds(sock int, fds [3]int) error {
	has := byte(1)
	list := fds[:]
	if fds[2] < 0 {
		has, list = 0, fds[:2]
	}
	err := unix.Sendmsg(sock, []byte{has}, unix.UnixRights(list...), nil, 0)
	for _, fd := range list {
		unix.Close(fd)
	}
	return err
}

// startHere forks from the calling thread: the fallback path.
func startHere(path string, argv, env []string) (*child, error) {
	devnull, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(devnull)
	pid, fds, err := forkChild(path, argv, env, devnull)
	if err != nil {
		return nil, err
	}
	return newChild(pid, fds)
}

// recvFds receives one spawn's descriptors from sock: stdout, stderr and
// the pidfd (-1 when the spawner had none).
func recvFds(sock int) ([3]int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return [3]int{}, err
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return [3]int{}, fmt.Errorf("bad control message (%d, %v)", len(msgs), err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		want := 2 + int(buf[0])
		if err != nil || len(fds) != want {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return [3]int{}, fmt.Errorf("want %d descriptors, got %d (%v)", want, len(fds), err)
		}
		r := [3]int{fds[0], fds[1], -1}
		if want == 3 {
			r[2] = fds[2]
		}
		return r, nil
	}
}

// newChild wraps the parent's descriptors as pollable files (non-blocking
// before os.NewFile, so the runtime's poller takes them).
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
