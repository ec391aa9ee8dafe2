package exec

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Why a cgroup per command: a command that calls setsid, or daemonises
// (fork, setsid, fork again), leaves its process group and, once its parent
// exits, its process tree; nothing but a cgroup still tells it belongs to
// the command. Where cgroup v2 is mounted and our cgroup is writable (root,
// or a delegated systemd scope), each command is forked straight into a
// cgroup of its own (clone3 CLONE_INTO_CGROUP: no write to cgroup.procs, no
// migration lock), and cgroup.kill kills all that is in it, forks racing
// with the kill included. When the leader exits, one read of cgroup.events
// (kept open) tells whether anything was left behind: the common path costs
// two system calls more than a plain fork, and opening the cgroup to fork
// into it (measured here: 10 µs in all, of 1 ms a command). The cgroups are pooled (a new one per command would cost a
// mkdir and an rmdir each, and the kernel frees cgroups lazily), and
// removed when the reactor idles and on Job.Close. A cgroup that was killed
// is not reused: measured on Linux 6.18, every later fork into it by
// CLONE_INTO_CGROUP is killed at birth (its kill sequence number is
// compared with the parent cgroup's). Elsewhere, commands fall
// back to process groups, the process tree (/proc) and the subreaper
// (reaper.go).

// cgroupState is the pool of command cgroups under
// <our cgroup>/fanout.<pid>.
var cgroups struct {
	mu     sync.Mutex
	tried  bool
	parent string    // "" when cgroups are unusable
	idle   []*cgroup // empty, ready for a command
	dead   []*cgroup // killed: removed once their processes are gone
	inUse  int
	next   int
	// broken is set when a fork into a cgroup failed where a plain fork
	// worked (a seccomp profile refusing clone3, say): commands stop using
	// cgroups.
	broken atomic.Bool
}

// cgroup is one command's cgroup directory.
type cgroup struct {
	dir    string
	events int // its cgroup.events, open; -1 if it could not be
	killed atomic.Bool
}

// acquireCgroup returns an empty cgroup for a command, or nil when cgroups
// are unusable here.
func acquireCgroup() *cgroup {
	if cgroups.broken.Load() {
		return nil
	}
	cgroups.mu.Lock()
	defer cgroups.mu.Unlock()
	if !cgroups.tried {
		cgroups.tried = true
		cgroups.parent = setupCgroups()
	}
	if cgroups.parent == "" {
		return nil
	}
	if len(cgroups.dead) > 0 && cgroups.dead[0].remove() {
		cgroups.dead[0] = nil
		cgroups.dead = cgroups.dead[1:]
	}
	if n := len(cgroups.idle); n > 0 {
		cg := cgroups.idle[n-1]
		cgroups.idle[n-1] = nil
		cgroups.idle = cgroups.idle[:n-1]
		cgroups.inUse++
		return cg
	}
	err := os.Mkdir(cgroups.parent, 0o755)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return nil
	}
	cgroups.next++
	dir := filepath.Join(cgroups.parent, "c"+strconv.Itoa(cgroups.next))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil
	}
	cgroups.inUse++
	cg := &cgroup{dir: dir}
	cg.events, err = unix.Open(dir+"/cgroup.events", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		cg.events = -1
	}
	return cg
}

// remove removes cg's directory, unless processes are still in it.
func (cg *cgroup) remove() bool {
	if err := unix.Rmdir(cg.dir); err != nil && err != unix.ENOENT {
		return false
	}
	if cg.events >= 0 {
		unix.Close(cg.events)
		cg.events = -1
	}
	return true
}

// releaseCgroup returns cg to the pool once its leader is reaped; a killed
// one is removed instead, once its dying processes are gone.
func releaseCgroup(cg *cgroup) {
	if cg == nil {
		return
	}
	cgroups.mu.Lock()
	switch {
	case !cg.killed.Load():
		cgroups.idle = append(cgroups.idle, cg)
	case !cg.remove():
		cgroups.dead = append(cgroups.dead, cg)
	}
	cgroups.inUse--
	cgroups.mu.Unlock()
}

// trimCgroups removes the idle and dead cgroups, and the parent when none
// is left. One whose killed processes are not gone yet is kept.
func trimCgroups() {
	cgroups.mu.Lock()
	defer cgroups.mu.Unlock()
	if cgroups.parent == "" {
		return
	}
	cgroups.idle = rmdirAll(cgroups.idle)
	cgroups.dead = rmdirAll(cgroups.dead)
	if len(cgroups.idle)+len(cgroups.dead)+cgroups.inUse == 0 {
		_ = unix.Rmdir(cgroups.parent)
	}
}

// rmdirAll removes the cgroups of l and returns those still busy.
func rmdirAll(l []*cgroup) []*cgroup {
	kept := l[:0]
	for _, cg := range l {
		if !cg.remove() {
			kept = append(kept, cg)
		}
	}
	clear(l[len(kept):])
	return kept
}

// populated reports whether a process is in cg (the leader, once it has
// exited, is not: a zombie leaves its cgroup).
func (cg *cgroup) populated() bool {
	if cg.events < 0 {
		return true // cannot tell: kill
	}
	var buf [128]byte
	n, err := unix.Pread(cg.events, buf[:], 0)
	if err != nil || n <= 0 {
		return true
	}
	return !bytes.Contains(buf[:n], []byte("populated 0"))
}

// kill sends SIGKILL to every process in cg, and those forking meanwhile.
func (cg *cgroup) kill() error {
	cg.killed.Store(true)
	fd, err := unix.Open(cg.dir+"/cgroup.kill", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, []byte("1"))
	unix.Close(fd)
	return err
}

// setupCgroups finds our cgroup v2 directory and checks that we may create
// cgroups in it that support cgroup.kill; it returns the parent of the
// command cgroups ("" when unusable). Leftovers of earlier fanout processes
// that are gone are removed on the way (empty ones only).
func setupCgroups() string {
	mnt, root := cgroup2Mount()
	self := selfCgroup()
	if mnt == "" || self == "" {
		return ""
	}
	rel, ok := strings.CutPrefix(self, root)
	if !ok || (root != "/" && rel != "" && rel[0] != '/') {
		return ""
	}
	base := filepath.Join(mnt, rel)
	removeStaleCgroups(base)
	parent := filepath.Join(base, "fanout."+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return ""
	}
	if _, err := os.Stat(parent + "/cgroup.kill"); err != nil {
		_ = unix.Rmdir(parent)
		return "" // before Linux 5.14
	}
	return parent
}

// removeStaleCgroups removes fanout.<pid> cgroups in base whose process is
// gone and that hold no process.
func removeStaleCgroups(base string) {
	ents, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "fanout.")
		if !ok || !e.IsDir() {
			continue
		}
		pid, err := strconv.Atoi(s)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		dir := filepath.Join(base, e.Name())
		subs, _ := os.ReadDir(dir)
		for _, sub := range subs {
			if sub.IsDir() {
				_ = unix.Rmdir(filepath.Join(dir, sub.Name()))
			}
		}
		_ = unix.Rmdir(dir)
	}
}

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted and the
// cgroup at the mount's root.
func cgroup2Mount() (mountpoint, root string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		if strings.Contains(fields[3], `\`) || strings.Contains(fields[4], `\`) {
			continue // escaped characters: not worth decoding
		}
		return fields[4], fields[3]
	}
	return "", ""
}

// selfCgroup is our cgroup v2 path ("0::/path" in /proc/self/cgroup).
func selfCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") {
			return p
		}
	}
	return ""
}
