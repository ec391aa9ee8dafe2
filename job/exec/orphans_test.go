package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// These tests need the test binary to be the subreaper (main_test.go calls
// AdoptOrphans), as the fanout command is.

// hang bounds every wait in these tests: it only catches a hang.
const hang = 60 * time.Second

// triggered is a context that ends when the test says so, with the error
// it chooses: a "timeout" that fires once the command has started what it
// should, however slow the machine.
type triggered struct {
	context.Context
	done chan struct{}
	err  error
}

func newTriggered(err error) *triggered {
	return &triggered{Context: context.Background(), done: make(chan struct{}), err: err}
}

func (c *triggered) Done() <-chan struct{} { return c.done }

func (c *triggered) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *triggered) fire() { close(c.done) }

var markers atomic.Int64

// marker is a sleep duration no other process uses: /proc/PID/cmdline
// then tells our sleep from a process that reused its pid.
func marker() string {
	return fmt.Sprintf("%d.%d", 7000+markers.Add(1), os.Getpid())
}

// alive reports whether pid is a live process whose command line is
// "sleep <marker>": gone, reaped, a zombie or another process is not.
func alive(pid int, mark string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && string(b) == "sleep\x00"+mark+"\x00"
}

// ourZombie reports whether pid is a zombie child of ours, not reaped.
func ourZombie(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state == 'Z' && st.ppid == os.Getpid()
}

// waitFor polls cond until it holds or hang passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", hang, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readPid waits for file to hold a pid (written with mv: whole or absent).
func readPid(t *testing.T, file string) int {
	t.Helper()
	var pid int
	waitFor(t, file, func() bool {
		b, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// escapes are commands that leave a "sleep <marker>" out of their process
// group, and write its pid to $F (via a temporary file). wait is what the
// leader does after: "exec sleep ..." to keep running, or nothing to exit.
var escapes = []struct {
	name string
	argv func(f, mark, wait string) []string
	exit bool // has a variant whose leader exits by itself
}{
	// A child that calls setsid: out of the group, still in the tree.
	{"setsid-child", func(f, mark, wait string) []string {
		return []string{"sh", "-c", fmt.Sprintf(`setsid sleep %s & echo $! >%s.tmp && mv %s.tmp %s; %s`, mark, f, f, f, wait)}
	}, true},
	// A daemon: fork, setsid, fork, the middle one exits; its child is
	// an orphan out of the group and the tree.
	{"daemon", func(f, mark, wait string) []string {
		return []string{"sh", "-c", fmt.Sprintf(`(setsid sh -c 'sleep %s & echo $! >%s.tmp && mv %s.tmp %s' &); while [ ! -e %s ]; do sleep 0.01; done; %s`, mark, f, f, f, f, wait)}
	}, true},
	// The command itself is setsid: a leader forks off the new session.
	{"setsid-command", func(f, mark, _ string) []string {
		return []string{"setsid", "-w", "sh", "-c", fmt.Sprintf(`echo $$ >%s.tmp && mv %s.tmp %s; exec sleep %s`, f, f, f, mark)}
	}, false},
}

// withoutCgroups runs f with commands in no cgroup: process groups, the
// process tree and the subreaper only.
func withoutCgroups(f func()) {
	was := cgroups.broken.Swap(true)
	defer cgroups.broken.Store(was)
	f()
}

// TestNoEscape: whatever a command starts, out of its process group and
// session or daemonised, is gone once the command is (at its timeout, on
// cancel, or when its leader exits), and reaped, with cgroups and without.
func TestNoEscape(t *testing.T) {
	modes := []struct {
		name      string
		noCgroups bool
	}{
		{"cgroup", false},
		{"tree", true},
	}
	ends := []struct {
		name   string
		err    error // nil: the leader exits by itself
		status job.Status
		class  job.Class
	}{
		{"timeout", context.DeadlineExceeded, job.Down, job.ClassTimeout},
		{"cancel", context.Canceled, job.Error, job.ClassCanceled},
		{"exit", nil, job.Up, job.ClassNone},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			if mode.noCgroups {
				// Until the parallel subtests are done.
				was := cgroups.broken.Swap(true)
				t.Cleanup(func() { cgroups.broken.Store(was) })
			} else if cg := acquireCgroup(); cg == nil {
				t.Skip("cgroup v2 is not writable here")
			} else {
				releaseCgroup(cg)
			}
			{
				for _, esc := range escapes {
					for _, end := range ends {
						if end.err == nil && !esc.exit {
							continue
						}
						t.Run(esc.name+"/"+end.name, func(t *testing.T) {
							t.Parallel()
							f := filepath.Join(t.TempDir(), "pid")
							mark := marker()
							wait := "exec sleep " + marker()
							if end.err == nil {
								wait = "exit 0"
							}
							j, err := New(Config{Argv: esc.argv(f, mark, wait)})
							if err != nil {
								t.Fatal(err)
							}
							ctx := context.Context(context.Background())
							if end.err != nil {
								tc := newTriggered(end.err)
								ctx = tc
								go func() {
									// Fire once the escapee runs; a failure shows below.
									deadline := time.Now().Add(hang)
									for time.Now().Before(deadline) {
										if b, err := os.ReadFile(f); err == nil {
											if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid, mark) {
												break
											}
										}
										time.Sleep(5 * time.Millisecond)
									}
									tc.fire()
								}()
							}
							r := j.Run(ctx, target.Target{Host: "x"})
							if r.Status != end.status || r.Class != end.class {
								t.Errorf("status %s/%s (%s), want %s/%s", r.Status, r.Class, r.Error, end.status, end.class)
							}
							pid := readPid(t, f)
							waitFor(t, fmt.Sprintf("pid %d (sleep %s) to die", pid, mark), func() bool { return !alive(pid, mark) })
							waitFor(t, fmt.Sprintf("pid %d to be reaped", pid), func() bool { return !ourZombie(pid) })
						})
					}
				}
			}
		})
	}
}

// TestReaperSparesOtherChildren: the reaper reaps orphans only, never a
// child of os/exec, whose Wait must see its exit status.
func TestReaperSparesOtherChildren(t *testing.T) {
	withoutCgroups(func() {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := 0; i < 20; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				err := osexec.Command("sh", "-c", "sleep 0.0$1; exit 3", "sh", strconv.Itoa(i%10)).Run()
				var ee *osexec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 3 {
					errs <- fmt.Errorf("os/exec child: %v, want exit status 3", err)
				}
			}()
			go func() {
				defer wg.Done()
				// A daemon that exits at once: a zombie of ours to reap.
				j, _ := New(Config{Argv: []string{"sh", "-c", "(setsid sh -c 'sleep 0.05 &' &)"}})
				if r := j.Run(context.Background(), target.Target{Host: "x"}); r.Status != job.Up {
					errs <- fmt.Errorf("exec: %s/%s %s", r.Status, r.Class, r.Error)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestCloseKillsOrphans: an orphan no running command can own is dead and
// reaped when Close returns, without waiting for the reaper.
func TestCloseKillsOrphans(t *testing.T) {
	withoutCgroups(func() {
		f := filepath.Join(t.TempDir(), "pid")
		mark := marker()
		j, _ := New(Config{Argv: escapes[1].argv(f, mark, "exit 0")})
		if r := j.Run(context.Background(), target.Target{Host: "x"}); r.Status != job.Up {
			t.Fatalf("%s/%s %s", r.Status, r.Class, r.Error)
		}
		pid := readPid(t, f)
		j.Close()
		if alive(pid, mark) || ourZombie(pid) {
			t.Errorf("pid %d (sleep %s) alive or unreaped after Close", pid, mark)
		}
	})
}

// TestCgroupsRemoved: the command cgroups go once the reactor idles, and
// their parent with them.
func TestCgroupsRemoved(t *testing.T) {
	cg := acquireCgroup()
	if cg == nil {
		t.Skip("cgroup v2 is not writable here")
	}
	releaseCgroup(cg)
	j, _ := New(Config{Argv: []string{"sh", "-c", "sleep 100 & echo $!"}})
	r := j.Run(context.Background(), target.Target{Host: "x"})
	if r.Status != job.Up {
		t.Fatalf("%s/%s %s", r.Status, r.Class, r.Error)
	}
	j.Close()
	waitFor(t, "the command cgroups to be removed", func() bool {
		trimCgroups()
		_, err := os.Stat(cgroups.parent)
		return errors.Is(err, os.ErrNotExist)
	})
}
