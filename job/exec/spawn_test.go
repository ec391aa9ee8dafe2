package exec

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
	"github.com/fanout/fanout/target"
)

// openFds counts this process's (shared table's) descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	if testing.Verbose() {
		var l []string
		for _, e := range ents {
			link, _ := os.Readlink("/proc/self/fd/" + e.Name())
			l = append(l, e.Name()+"="+link)
		}
		t.Log(l)
	}
	return len(ents)
}

// waitSpawnerGone waits for the idle spawner thread to exit.
func waitSpawnerGone(t *testing.T) {
	t.Helper()
	testwait.For(t, "the idle spawner to exit", func() bool {
		spawner.mu.Lock()
		defer spawner.mu.Unlock()
		return spawner.cur == nil
	})
}

// waitQuiet waits until no spawner thread, receiver or reactor is left:
// every thread holding the spawner's socket has exited (so the receiver saw
// its end and closed the socket: no SOCK_SEQPACKET descriptor is open, only
// the spawner makes them) and the reactor closed its epoll descriptor.
// Then the descriptor table holds only what the test itself has open.
func waitQuiet(t *testing.T) {
	t.Helper()
	waitSpawnerGone(t)
	testwait.For(t, "the spawner's receiver and the reactor to close their descriptors", func() bool {
		reactor.mu.Lock()
		running := reactor.running
		reactor.mu.Unlock()
		return !running && !seqpacketOpen()
	})
}

// seqpacketOpen reports whether this process has a SOCK_SEQPACKET socket open.
func seqpacketOpen() bool {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if !strings.HasPrefix(link, "socket:") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil && typ == unix.SOCK_SEQPACKET {
			return true
		}
	}
	return false
}

// TestSpawnerNoLeaks: commands leave no descriptor behind, and the idle
// spawner takes its socket with it.
func TestSpawnerNoLeaks(t *testing.T) {
	j, err := New(Config{Argv: []string{"sh", "-c", "echo out; echo err >&2"}})
	if err != nil {
		t.Fatal(err)
	}
	watched := 0
	testHookWatched = func() { watched++ }
	defer func() { testHookWatched = nil }()
	waitQuiet(t) // a previous test's spawner, receiver and reactor gone
	before := openFds(t)
	for i := 0; i < 50; i++ {
		r := j.Run(context.Background(), target.Target{Host: "x"})
		if r.Status != job.Up || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" {
			t.Fatalf("run %d: %s/%s %q %q (%s)", i, r.Status, r.Class, r.Stdout, r.Stderr, r.Error)
		}
	}
	if spawner.broken {
		t.Error("spawner fell back to forking in place")
	}
	if watched != 50 {
		t.Errorf("the reactor watched %d of 50 commands", watched)
	}
	reactor.mu.Lock()
	if reactor.broken || reactor.nprocs != 0 || len(reactor.keys) != 0 {
		t.Errorf("reactor after 50 commands: broken %v procs %d keys %d (want unbroken, 0, 0)",
			reactor.broken, reactor.nprocs, len(reactor.keys))
	}
	reactor.mu.Unlock()
	waitQuiet(t)
	if after := openFds(t); after != before {
		t.Errorf("%d descriptors before, %d after 50 commands", before, after)
	}
}

// TestSpawnerTrimsTable: a descriptor open when the spawner started is not
// kept alive by the spawner's copy of the table: a closed listener's port
// refuses connections.
func TestSpawnerTrimsTable(t *testing.T) {
	waitSpawnerGone(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	j, _ := New(Config{Argv: []string{"true"}})
	if r := j.Run(context.Background(), target.Target{Host: "x"}); r.Status != job.Up {
		t.Fatalf("%s/%s %s", r.Status, r.Class, r.Error)
	}
	ln.Close()
	c, err := net.DialTimeout("tcp4", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatal("listener still accepts after Close: the spawner holds a copy")
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial closed listener: %v", err)
	}
}

// TestStartHere: the in-place fallback runs commands the same way.
func TestStartHere(t *testing.T) {
	t.Parallel()
	rep, err := startHere("/bin/sh", []string{"sh", "-c", "echo out; echo err >&2; exit 4"}, os.Environ(), "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := newChild(rep.pid, rep.fds)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	out := readBounded(c.stdout, 100)
	errOut := readBounded(c.errp, 100)
	waitExit(c)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(c.pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	forgetChild(c.pid)
	if string(out.buf) != "out\n" || string(errOut.buf) != "err\n" || ws.ExitStatus() != 4 {
		t.Errorf("stdout %q stderr %q exit %d", out.buf, errOut.buf, ws.ExitStatus())
	}
	if _, err := startHere("/nonexistent", []string{"x"}, nil, ""); err == nil {
		t.Error("startHere of a missing file succeeded")
	}
}

// TestForkFromSmallTable: with many descriptors open (a wide sweep's
// pipes), commands still fork from the spawner's own table, which holds a
// handful: that is what keeps a fork's cost flat however many commands run
// (without it, 8,000 descriptors made each fork 2-4x slower here; the
// timing itself is bench material, not a test's). Checked in /proc: while
// commands run, one of this process's threads has a table of a few entries
// although the process has thousands open.
func TestForkFromSmallTable(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 10000 {
		t.Skipf("RLIMIT_NOFILE %d: want 10000 descriptors", lim.Cur)
	}
	waitSpawnerGone(t) // the next spawner starts with the descriptors below open
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for i := 0; i < int(min(lim.Cur-1000, 18000))/2; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Skip("cannot open the descriptors: ", err)
		}
		files = append(files, r, w)
	}
	j, _ := New(Config{Argv: []string{"true"}})
	// Commands back to back keep the spawner alive while /proc is read.
	stop := make(chan struct{})
	ran := make(chan int)
	go func() {
		n := 0
		defer func() { ran <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r := j.Run(context.Background(), target.Target{Host: "x"}); r.Status != job.Up {
				t.Errorf("with %d descriptors open: %s/%s %s", len(files), r.Status, r.Class, r.Error)
				return
			}
			n++
		}
	}()
	smallest := -1
	testwait.For(t, "a thread with a small descriptor table (the spawner)", func() bool {
		smallest = smallestTable(t)
		return smallest >= 0 && smallest < 64
	})
	close(stop)
	if n := <-ran; n == 0 {
		t.Error("no command ran")
	}
	t.Logf("%d descriptors open; the spawner's table holds %d", len(files), smallest)
}

// smallestTable is the fewest descriptors any thread of this process has
// open (threads share the process's table unless they unshared it), or -1;
// an empty table is a thread on its way out, not counted.
// It reads at most 64 entries of each table.
func smallestTable(t *testing.T) int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skip("no /proc/self/task")
	}
	smallest := -1
	for _, task := range tasks {
		d, err := os.Open("/proc/self/task/" + task.Name() + "/fd")
		if err != nil {
			continue // the thread exited
		}
		ents, _ := d.ReadDir(64)
		d.Close()
		if len(ents) == 0 {
			continue // an exiting thread has let its table go
		}
		if smallest < 0 || len(ents) < smallest {
			smallest = len(ents)
		}
	}
	return smallest
}

// TestFallbackInPlace: where the spawner cannot start (unshare refused by a
// seccomp profile), commands fork from the caller's thread and behave the same.
func TestFallbackInPlace(t *testing.T) {
	waitSpawnerGone(t)
	spawner.mu.Lock()
	spawner.broken = true
	spawner.mu.Unlock()
	defer func() {
		spawner.mu.Lock()
		spawner.broken = false
		spawner.mu.Unlock()
	}()
	j, _ := New(Config{Argv: []string{"sh", "-c", "echo {}; exit 2"}})
	r := j.Run(context.Background(), target.Target{Host: "fb"})
	if r.Status != job.Down || r.Class != job.ClassExit || *r.ExitCode != 2 || string(r.Stdout) != "fb\n" {
		t.Errorf("in place: %s/%s %v %q (%s)", r.Status, r.Class, r.ExitCode, r.Stdout, r.Error)
	}
	spawner.mu.Lock()
	started := spawner.cur != nil
	spawner.mu.Unlock()
	if started {
		t.Error("a spawner started although it is marked broken")
	}
}

// TestGoroutinePath: without the reactor (no epoll), each command is watched
// by its own goroutines and passes the same conformance suite.
func TestGoroutinePath(t *testing.T) {
	reactor.mu.Lock()
	reactor.broken = true
	reactor.mu.Unlock()
	defer func() {
		reactor.mu.Lock()
		reactor.broken = false
		reactor.mu.Unlock()
	}()
	const bound = 1000
	script := `case "$1" in
up) echo hello;; fail) exit 3;; slow) sleep 1000 & sleep 1000;;
noisy) head -c 200000 /dev/zero; head -c 200000 /dev/zero >&2;; esac`
	j, _ := New(Config{Argv: []string{"sh", "-c", script, "sh", "{}"}, MaxOutput: bound})
	jobtest.Run(t, jobtest.Suite{
		Job:       j,
		Up:        target.Target{Index: 1, Host: "up"},
		Slow:      target.Target{Index: 2, Host: "slow"},
		Failures:  []jobtest.Expect{{Name: "exit", Target: target.Target{Index: 3, Host: "fail"}, Status: job.Down, Class: job.ClassExit}},
		MaxOutput: bound,
		Noisy:     target.Target{Index: 4, Host: "noisy"},
	})
	if r := j.Run(context.Background(), target.Target{Host: "up"}); string(r.Stdout) != "hello\n" {
		t.Errorf("stdout %q", r.Stdout)
	}
}
