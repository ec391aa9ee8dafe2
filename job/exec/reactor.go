package exec

import (
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The reactor watches every running command's stdout, stderr and pidfd from
// one goroutine on its own epoll instance, rather than three goroutines per
// command: a sweep of 2,000 commands then costs 2,000 small records, not
// 6,000 goroutine stacks and runtime poller entries. It reads output into
// each command's bounded capture as it arrives (the child never blocks on a
// full pipe), and when the pidfd says the command exited it kills what the
// command left in its process group and its cgroup, reaps it, drains the
// pipes and closes its descriptors. It exits after reactorIdle with nothing
// to watch, and then removes the idle cgroups.

const reactorIdle = 200 * time.Millisecond

// proc is one command as the reactor sees it. The reactor goroutine owns
// caps and fds until done is closed.
type proc struct {
	pid  int
	cg   *cgroup // the command's cgroup; nil = none
	max  int
	fds  [3]int // stdout, stderr, pidfd; -1 once closed
	caps [2]capture
	keys [3]uint64 // epoll tokens of fds

	mu     sync.Mutex // guards reaped against kill
	reaped bool
	ws     syscall.WaitStatus
	werr   error

	done chan struct{}
}

// kill kills all that p's command started unless p is already reaped (its
// pid, the group id, may then belong to someone else; its cgroup to another
// command).
func (p *proc) kill() {
	p.mu.Lock()
	if !p.reaped {
		killCommand(p.pid, p.cg)
	}
	p.mu.Unlock()
}

// killCommand kills the command led by pid (our child, not reaped) and all
// it started: its cgroup when it has one, else its process tree; and its
// process group, where a process can be that the walk missed (its parent
// died: orphans are then the reaper's).
func killCommand(pid int, cg *cgroup) {
	if cg == nil || cg.kill() != nil {
		killTree(pid)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// killLeftovers kills what the command led by pid left behind when it
// exited (pid is not reaped yet, so it still names the group).
func killLeftovers(pid int, cg *cgroup) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if cg != nil && cg.populated() {
		_ = cg.kill()
	}
}

type watchKey struct {
	p     *proc
	which int // index into p.fds
}

var reactor struct {
	mu      sync.Mutex
	running bool
	broken  bool // epoll unavailable: commands use goroutines
	epfd    int
	next    uint64
	keys    map[uint64]watchKey
	nprocs  int
}

// watch hands a started command to the reactor. It takes ownership of fds
// (stdout, stderr, pidfd; all three must be valid) and returns false, owning
// nothing, when the reactor cannot run.
func watch(pid int, cg *cgroup, fds [3]int, max int) (*proc, bool) {
	reactor.mu.Lock()
	defer reactor.mu.Unlock()
	if reactor.broken {
		return nil, false
	}
	if !reactor.running {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			reactor.broken = true
			return nil, false
		}
		reactor.running, reactor.epfd = true, epfd
		if reactor.keys == nil {
			reactor.keys = make(map[uint64]watchKey)
		}
		go reactorLoop(epfd)
	}
	p := &proc{pid: pid, cg: cg, max: max, fds: fds, done: make(chan struct{})}
	for i, fd := range fds {
		_ = unix.SetNonblock(fd, true)
		reactor.next++
		k := reactor.next
		p.keys[i] = k
		reactor.keys[k] = watchKey{p, i}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(k), Pad: int32(k >> 32)}
		if err := unix.EpollCtl(reactor.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			// Cannot happen for pipes and pidfds; if it does, undo and fall back.
			for j := 0; j <= i; j++ {
				if j < i {
					_ = unix.EpollCtl(reactor.epfd, unix.EPOLL_CTL_DEL, fds[j], nil)
				}
				delete(reactor.keys, p.keys[j])
			}
			return nil, false
		}
	}
	reactor.nprocs++
	return p, true
}

// reactorLoop is the reactor goroutine for epoll instance epfd.
func reactorLoop(epfd int) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	idleSince := time.Now()
	for {
		n, err := unix.EpollWait(epfd, events, int(reactorIdle/time.Millisecond/2))
		if err != nil && err != unix.EINTR {
			n = 0 // unexpected; the idle check below still runs
		}
		for i := 0; i < n; i++ {
			k := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			reactor.mu.Lock()
			w, ok := reactor.keys[k]
			reactor.mu.Unlock()
			if !ok {
				continue // a descriptor closed earlier in this batch
			}
			if w.which == 2 {
				exited(epfd, w.p, buf)
			} else {
				readPipe(epfd, w.p, w.which, buf)
			}
		}
		reactor.mu.Lock()
		if reactor.nprocs > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) >= reactorIdle {
			reactor.running = false
			unix.Close(epfd)
			reactor.mu.Unlock()
			trimCgroups()
			return
		}
		reactor.mu.Unlock()
	}
}

// readPipe reads what p's stream which holds now; at EOF it stops watching it.
func readPipe(epfd int, p *proc, which int, buf []byte) {
	for p.fds[which] >= 0 {
		n, err := unix.Read(p.fds[which], buf)
		if n > 0 {
			p.caps[which].keep(buf[:n], p.max)
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		unwatch(epfd, p, which) // EOF or error
	}
}

// exited finishes p: its leader has exited (not yet reaped, so its pid still
// names the group). Kill the leftovers, reap, drain, close.
func exited(epfd int, p *proc, buf []byte) {
	p.mu.Lock()
	killLeftovers(p.pid, p.cg)
	_, p.werr = syscall.Wait4(p.pid, &p.ws, 0, nil)
	for p.werr == syscall.EINTR {
		_, p.werr = syscall.Wait4(p.pid, &p.ws, 0, nil)
	}
	p.reaped = true
	p.mu.Unlock()
	forgetChild(p.pid)
	// Every writer is dead: what they wrote is in the pipes now.
	readPipe(epfd, p, 0, buf)
	readPipe(epfd, p, 1, buf)
	for i := range p.fds {
		if p.fds[i] >= 0 {
			unwatch(epfd, p, i)
		}
	}
	reactor.mu.Lock()
	reactor.nprocs--
	reactor.mu.Unlock()
	close(p.done)
}

func unwatch(epfd int, p *proc, which int) {
	_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, p.fds[which], nil)
	unix.Close(p.fds[which])
	p.fds[which] = -1
	reactor.mu.Lock()
	delete(reactor.keys, p.keys[which])
	reactor.mu.Unlock()
}
