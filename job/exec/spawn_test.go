package exec

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

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
	for i := 0; i < 100; i++ {
		spawner.mu.Lock()
		running := spawner.cur != nil
		spawner.mu.Unlock()
		if !running {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("spawner still running long after its idle timeout")
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
	waitSpawnerGone(t)
	time.Sleep(100 * time.Millisecond) // a previous receiver closing its socket
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
	waitSpawnerGone(t)
	// The receiver closes its socket just after the spawner thread ends.
	after := openFds(t)
	for i := 0; i < 100 && after != before; i++ {
		time.Sleep(20 * time.Millisecond)
		after = openFds(t)
	}
	if after != before {
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

// TestForkCostFlat: with many descriptors open (a wide sweep's pipes), a
// command still starts quickly, because forks happen from the spawner's
// small table. Without it, 8,000 descriptors made each fork 2-4x slower here.
func TestForkCostFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	j, _ := New(Config{Argv: []string{"true"}})
	run := func(n int) time.Duration {
		begin := time.Now()
		for i := 0; i < n; i++ {
			if r := j.Run(context.Background(), target.Target{Host: "x"}); r.Status != job.Up {
				t.Fatalf("%s/%s %s", r.Status, r.Class, r.Error)
			}
		}
		return time.Since(begin)
	}
	// The best of three runs: the machine is shared, a timing test must not
	// measure the neighbours.
	best := func() time.Duration {
		d := run(50)
		for i := 0; i < 2; i++ {
			d = min(d, run(50))
		}
		return d
	}
	run(20) // warm up
	base := best()
	var files []*os.File
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 10000 {
		t.Skipf("RLIMIT_NOFILE %d: want 10000 descriptors", lim.Cur)
	}
	for i := 0; i < int(min(lim.Cur-1000, 18000))/2; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Skip("cannot open the descriptors: ", err)
		}
		files = append(files, r, w)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	loaded := best()
	t.Logf("50 commands: %v with few descriptors, %v with %d open", base, loaded, len(files))
	if loaded > 2*base+20*time.Millisecond { // in place, forks run about 3x slower
		t.Errorf("forks slow down with open descriptors: %v -> %v", base, loaded)
	}
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
up) echo hello;; fail) exit 3;; slow) sleep 100 & sleep 100;;
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
