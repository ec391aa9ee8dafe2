// Package exec is the "exec" job kind: it runs a local command once per
// target, with the target substituted into the arguments, and reports its
// exit status and (bounded) output.
//
// Placeholders, substituted in every argument (never in the command name):
//
//	{} or {host}  the target as given (name or address)
//	{addr}        the target's address (a name is resolved first, only when used)
//	{port}        the target's port, empty when it has none
//	{index}       the target's index in the sweep's canonical order
//
// Any other brace text ({print $1}) is passed through untouched. There is no
// shell: write `sh -c '...'` to get one.
//
// Outcome: status up on exit 0; down with class exit and ExitCode on a
// non-zero exit (a signal death is 128+signal, as in a shell); down with
// class timeout when the attempt's deadline killed it; error with class
// canceled when the sweep was cancelled; error with class local when the
// command could not be started.
//
// Nothing a command starts outlives it. The command runs in its own process
// group and, where cgroup v2 is writable, in a cgroup of its own
// (cgroup.go). On timeout or cancel all of it is killed: the cgroup, else
// the process tree and the group; when the leader exits by itself, whatever
// it left running is killed too (it could keep the output pipes open, and
// outlive the sweep). Without cgroups, a process that left the tree (a
// daemon forked twice) is found by AdoptOrphans (reaper.go), which the
// fanout command calls, and killed once no command that could own it runs.
//
// Cost per command is the fork/exec itself: commands are forked from one
// spawner thread whose descriptor table stays small however many commands
// run (spawn.go), and one reactor goroutine watches every running command's
// pipes and exit (reactor.go), so a command in flight costs a small record,
// not goroutines. Both fall back to plain per-command goroutines where the
// kernel refuses what they need.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Kind is the registered name of this job kind.
const Kind = "exec"

// DefaultMaxOutput bounds each of stdout and stderr when Config.MaxOutput is 0.
const DefaultMaxOutput = 64 << 10

// drainGrace is how long EOF is awaited once the command and its group are
// dead; after it, what the pipes hold is drained and kept. Only output of a
// process that escaped the group (setsid) can be missed.
const drainGrace = 20 * time.Millisecond

// Config is the exec job's options, as the registry receives them in JSON.
type Config struct {
	// Argv is the command and its arguments, with placeholders.
	Argv []string `json:"argv"`
	// MaxOutput bounds the bytes kept per stream (stdout, stderr); the rest
	// is read and discarded, and the Result says Truncated. 0 means
	// DefaultMaxOutput; a negative value keeps nothing.
	MaxOutput int `json:"max_output,omitempty"`
	// Env adds KEY=VALUE entries to the inherited environment.
	Env []string `json:"env,omitempty"`
}

// Job runs one command per target. It is safe for concurrent use.
type Job struct {
	cfg      Config
	path     string  // the command, looked up once
	args     [][]seg // argv[1:] as literal and placeholder segments
	needAddr bool
	max      int
	env      []string // os.Environ() at New, plus Config.Env
}

var _ job.Job = (*Job)(nil)

// Traits are exec's: few targets per cluster task (a command runs for a
// while), 8 files per target in flight (pipes, pidfd, the child's own),
// output printed, and a local command, which a cluster worker runs only
// when its operator allows it. A target may carry a port (host:8080 fills
// {port}), not a user.
var Traits = job.Traits{
	TaskSize: [2]uint64{4, 64}, FDsPerTarget: 8, PrintsOutput: true, Local: true,
	Takes: target.Takes{Port: true},
}

func init() {
	job.Register(Kind, Traits, job.Decoded(Kind, New))
}

// New checks cfg and looks the command up in PATH, so that a missing command
// is reported before any target is visited.
func New(cfg Config) (*Job, error) {
	if len(cfg.Argv) == 0 || cfg.Argv[0] == "" {
		return nil, errors.New("exec: no command given (want: exec TARGETS -- COMMAND [ARGS...])")
	}
	name := cfg.Argv[0]
	if segs := parse(name); len(segs) != 1 || segs[0].ph != phNone {
		return nil, fmt.Errorf("exec: command %q: placeholders are substituted in arguments only", name)
	}
	path, err := osexec.LookPath(name)
	if err != nil {
		if errors.Is(err, osexec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("exec: command %q not found", name)
		}
		return nil, fmt.Errorf("exec: command %q: %w", name, err)
	}
	j := &Job{cfg: cfg, path: path, max: cfg.MaxOutput}
	if j.max == 0 {
		j.max = DefaultMaxOutput
	}
	if j.max < 0 {
		j.max = 0
	}
	for _, a := range cfg.Argv[1:] {
		s := parse(a)
		for _, x := range s {
			if x.ph == phAddr {
				j.needAddr = true
			}
		}
		j.args = append(j.args, s)
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("exec: env %q: want KEY=VALUE", kv)
		}
	}
	// Snapshot the environment once: every command gets the same one.
	j.env = append(os.Environ(), cfg.Env...)
	return j, nil
}

// Kind implements job.Job.
func (j *Job) Kind() string { return Kind }

// closeWait bounds how long Close waits for the orphans it killed to die.
const closeWait = 5 * time.Second

// Close is called once the sweep is over (Run must not be called after):
// with AdoptOrphans, it kills the orphans no running command can own, as
// the reaper would a moment later, and waits until they are reaped, so that
// none outlives the program that exits next; and it removes the idle
// command cgroups.
func (j *Job) Close() error {
	finalReap(closeWait)
	trimCgroups()
	return nil
}

// Config returns the options the job was built from.
func (j *Job) Config() Config { return j.cfg }

// Argv returns the command line j runs for t (the command resolved in PATH).
func (j *Job) Argv(t target.Target) []string {
	argv := make([]string, 1, 1+len(j.args))
	argv[0] = j.cfg.Argv[0]
	for i, s := range j.args {
		argv = append(argv, expand(j.cfg.Argv[i+1], s, t))
	}
	return argv
}

// Run implements job.Job: one execution of the command for t.
func (j *Job) Run(ctx context.Context, t target.Target) job.Result {
	start := time.Now()
	if j.needAddr && !t.Addr.IsValid() {
		a, err := job.Resolve(ctx, t)
		if err != nil {
			return job.ResolveFailed(ctx, t, Kind, start, err)
		}
		t.Addr = a
	}
	r := job.For(t, Kind)
	r.Start = start
	if st, c, done := job.CtxOutcome(ctx); done {
		r.Status, r.Class, r.Error, r.End = st, c, "not started: "+ctx.Err().Error(), time.Now()
		return r
	}
	j.run(ctx, t, &r)
	r.End = time.Now()
	return r
}

func (j *Job) run(ctx context.Context, t target.Target, r *job.Result) {
	cg := acquireCgroup()
	defer releaseCgroup(cg)
	defer startRunning()() // before the fork: orphans it makes are younger
	dir := ""
	if cg != nil {
		dir = cg.dir
	}
	rep, err := start(j.path, j.Argv(t), j.env, dir)
	if err != nil {
		r.Status, r.Class, r.Error = job.Error, job.ClassLocal, err.Error()
		return
	}
	pid, fds := rep.pid, rep.fds
	if !rep.inCgroup {
		cg = nil
	}
	if fds[2] >= 0 {
		if p, ok := watch(pid, cg, fds, j.max); ok {
			if testHookWatched != nil {
				testHookWatched()
			}
			stop := context.AfterFunc(ctx, p.kill)
			<-p.done
			stop()
			r.Stdout, r.Stderr = nonNil(p.caps[0].buf), nonNil(p.caps[1].buf)
			r.Truncated = p.caps[0].truncated || p.caps[1].truncated
			outcome(ctx, r, p.ws, p.werr)
			return
		}
	}
	c, err := newChild(pid, fds)
	if err != nil {
		r.Status, r.Class, r.Error = job.Error, job.ClassLocal, err.Error()
		return
	}
	c.cg = cg
	j.runGoroutines(ctx, c, r)
}

// testHookWatched, when set by a test, is called for each command the
// reactor watches.
var testHookWatched func()

// runGoroutines waits for c with a goroutine per stream: the path when
// pidfds or epoll are unavailable.
func (j *Job) runGoroutines(ctx context.Context, c *child, r *job.Result) {
	defer c.close()
	pid := c.pid

	// The leader is reaped only under mu, after which its pid (the group id)
	// may be reused: a late kill must then not fire.
	var mu sync.Mutex
	reaped := false
	killGroup := func() {
		mu.Lock()
		if !reaped {
			killCommand(pid, c.cg)
		}
		mu.Unlock()
	}
	stop := context.AfterFunc(ctx, killGroup)

	var errOut capture
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errOut = readBounded(c.errp, j.max)
	}()
	outc := make(chan capture, 1)
	go func() { outc <- readBounded(c.stdout, j.max) }()

	waitExit(c) // the leader is a zombie now, still holding the group id
	stop()
	var ws syscall.WaitStatus
	mu.Lock()
	killLeftovers(pid, c.cg)
	reaped = true
	_, werr := syscall.Wait4(pid, &ws, 0, nil)
	for werr == syscall.EINTR {
		_, werr = syscall.Wait4(pid, &ws, 0, nil)
	}
	mu.Unlock()
	forgetChild(pid)

	// Every writer in the group is dead, so all output is in the pipes:
	// EOF within drainGrace is usual, but a sibling fork that has not yet
	// exec'd may hold a copy of the write ends, so do not wait for it long.
	deadline := time.Now().Add(drainGrace)
	c.stdout.SetReadDeadline(deadline)
	c.errp.SetReadDeadline(deadline)
	out := <-outc
	wg.Wait()

	r.Stdout, r.Stderr = out.buf, errOut.buf
	r.Truncated = out.truncated || errOut.truncated
	outcome(ctx, r, ws, werr)
}

// nonNil keeps empty output present in the Result (an exec Result always
// reports both streams).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// outcome sets r's status from the reaped wait status.
func outcome(ctx context.Context, r *job.Result, ws syscall.WaitStatus, werr error) {
	switch {
	case werr != nil:
		r.Status, r.Class, r.Error = job.Error, job.ClassLocal, "wait: "+werr.Error()
	case ws.Exited() && ws.ExitStatus() == 0:
		r.Status = job.Up
		code := 0
		r.ExitCode = &code
	case ws.Exited():
		code := ws.ExitStatus()
		r.Status, r.Class, r.ExitCode = job.Down, job.ClassExit, &code
		r.Error = "exit status " + strconv.Itoa(code)
	default: // killed by a signal
		if s, c, done := job.CtxOutcome(ctx); done {
			r.Status, r.Class = s, c
			if c == job.ClassTimeout {
				r.Error = job.TimedOut(ctx, "command") + ": killed"
			} else {
				r.Error = "killed: " + ctx.Err().Error()
			}
			return
		}
		code := 128 + int(ws.Signal())
		r.Status, r.Class, r.ExitCode = job.Down, job.ClassExit, &code
		r.Error = "signal: " + ws.Signal().String()
	}
}

// waitExit blocks until c's process has exited, without reaping it: on its
// pidfd in the runtime's poller (no OS thread blocked per command), else in
// waitid.
func waitExit(c *child) {
	if c.pidfd != nil && pidfdWait(c.pidfd) {
		return
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// pidfdWait parks until the pidfd's process has exited; false when the
// poller cannot wait on it.
func pidfdWait(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return true // not waitable here: let the caller fall back
			}
			break
		}
		exited = info.Signo == int32(unix.SIGCHLD) // zero while the child runs
		return exited
	})
	return err == nil && exited
}

type capture struct {
	buf       []byte
	truncated bool
}

// keep stores p within the bound and reports what it had to drop.
func (c *capture) keep(p []byte, max int) {
	n := min(len(p), max-len(c.buf))
	c.buf = append(c.buf, p[:n]...)
	if n < len(p) {
		c.truncated = true
	}
}

var scratch = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// readBounded reads f to EOF, keeping at most max bytes and discarding the
// rest, so that the child never blocks on a full pipe. When f's read deadline
// passes (the writers are dead, but a sibling fork may still hold the write
// end until it execs) what is already in the pipe is drained and kept.
func readBounded(f *os.File, limit int) capture {
	var c capture
	for {
		if len(c.buf) < limit {
			if len(c.buf) == cap(c.buf) {
				n := min(max(2*cap(c.buf), 512), limit)
				nb := make([]byte, len(c.buf), n)
				copy(nb, c.buf)
				c.buf = nb
			}
			n, err := f.Read(c.buf[len(c.buf):cap(c.buf)])
			c.buf = c.buf[:len(c.buf)+n]
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					drain(f, &c, limit)
				}
				return c
			}
			continue
		}
		s := scratch.Get().(*[16 << 10]byte)
		n, err := f.Read(s[:])
		scratch.Put(s)
		if n > 0 {
			c.truncated = true
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				drain(f, &c, limit)
			}
			return c
		}
	}
}

// drain reads what the (non-blocking) pipe holds now, past f's deadline.
func drain(f *os.File, c *capture, max int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	s := scratch.Get().(*[16 << 10]byte)
	defer scratch.Put(s)
	_ = rc.Control(func(fd uintptr) {
		for {
			n, err := unix.Read(int(fd), s[:])
			if n > 0 {
				c.keep(s[:n], max)
			}
			if err == unix.EINTR {
				continue
			}
			if n <= 0 || err != nil {
				return
			}
		}
	})
}
