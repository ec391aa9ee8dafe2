package exec_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/exec"
	"github.com/fanout/fanout/job/jobtest"
	"github.com/fanout/fanout/target"
)

// script is one command that behaves according to the target's name.
const script = `case "$1" in
up) echo hello; exit 0;;
fail) echo oops >&2; exit 3;;
slow) sleep 1000 & sleep 1000;; # outlasts testwait.Hang: only a kill ends it
noisy) head -c 200000 /dev/zero; head -c 200000 /dev/zero >&2;;
segv) kill -SEGV $$;;
esac`

func named(name string, i uint64) target.Target { return target.Target{Index: i, Host: name} }

func mustNew(t *testing.T, cfg exec.Config) *exec.Job {
	t.Helper()
	j, err := exec.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestConformance(t *testing.T) {
	const bound = 1000
	j := mustNew(t, exec.Config{Argv: []string{"sh", "-c", script, "sh", "{}"}, MaxOutput: bound})
	jobtest.Run(t, jobtest.Suite{
		Job:  j,
		Up:   named("up", 7),
		Slow: named("slow", 8),
		Failures: []jobtest.Expect{
			{Name: "exit", Target: named("fail", 9), Status: job.Down, Class: job.ClassExit},
			{Name: "signal", Target: named("segv", 10), Status: job.Down, Class: job.ClassExit},
		},
		MaxOutput: bound,
		Noisy:     named("noisy", 11),
	})
}

func TestResult(t *testing.T) {
	t.Parallel()
	j := mustNew(t, exec.Config{Argv: []string{"sh", "-c", script, "sh", "{}"}})
	ctx := context.Background()
	tests := []struct {
		host           string
		status         job.Status
		class          job.Class
		exit           int
		stdout, stderr string
	}{
		{"up", job.Up, job.ClassNone, 0, "hello\n", ""},
		{"fail", job.Down, job.ClassExit, 3, "", "oops\n"},
		{"segv", job.Down, job.ClassExit, 128 + int(syscall.SIGSEGV), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			r := j.Run(ctx, named(tt.host, 1))
			if r.Status != tt.status || r.Class != tt.class {
				t.Errorf("status %s/%s (%s), want %s/%s", r.Status, r.Class, r.Error, tt.status, tt.class)
			}
			if r.ExitCode == nil || *r.ExitCode != tt.exit {
				t.Errorf("exit code %v, want %d", r.ExitCode, tt.exit)
			}
			if string(r.Stdout) != tt.stdout || string(r.Stderr) != tt.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", r.Stdout, r.Stderr, tt.stdout, tt.stderr)
			}
			if r.Truncated {
				t.Error("Truncated set on a short output")
			}
		})
	}
}

func TestPlaceholders(t *testing.T) {
	t.Parallel()
	j := mustNew(t, exec.Config{Argv: []string{"echo", "{}", "{host}", "x{addr}:{port}y", "#{index}", "{print $1}", "{", "{nope}"}})
	tests := []struct {
		t    target.Target
		want string
	}{
		{target.Target{Index: 5, Addr: netip.MustParseAddr("127.0.0.5")}, "127.0.0.5 127.0.0.5 x127.0.0.5:y #5 {print $1} { {nope}"},
		{target.Target{Index: 9, Host: "localhost", Addr: netip.MustParseAddr("::1"), Port: 22}, "localhost localhost x::1:22y #9 {print $1} { {nope}"},
	}
	for _, tt := range tests {
		r := j.Run(context.Background(), tt.t)
		if got := strings.TrimSuffix(string(r.Stdout), "\n"); got != tt.want || r.Status != job.Up {
			t.Errorf("Run(%+v) printed %q (%s), want %q", tt.t, got, r.Status, tt.want)
		}
		if got := strings.Join(j.Argv(tt.t)[1:], " "); got != tt.want {
			t.Errorf("Argv(%+v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

// "nosuch..invalid" (an empty label) fails inside the resolver without a
// DNS query: no lookup leaves the machine.
func TestAddrResolves(t *testing.T) {
	t.Parallel()
	j := mustNew(t, exec.Config{Argv: []string{"echo", "{addr}"}})
	r := j.Run(context.Background(), target.Target{Host: "localhost"})
	if got := strings.TrimSpace(string(r.Stdout)); got != "127.0.0.1" && got != "::1" {
		t.Errorf("{addr} of localhost = %q (%s %s)", got, r.Status, r.Error)
	}
	r = j.Run(context.Background(), target.Target{Host: "nosuch..invalid"})
	if r.Status != job.Error || r.Class != job.ClassResolve || r.Host != "nosuch..invalid" {
		t.Errorf("unresolvable {addr}: %s/%s %q (%s)", r.Status, r.Class, r.Host, r.Error)
	}
	// Without {addr} the name is never resolved.
	j = mustNew(t, exec.Config{Argv: []string{"echo", "{}"}})
	if r := j.Run(context.Background(), target.Target{Host: "nosuch..invalid"}); r.Status != job.Up {
		t.Errorf("echo {} of an unresolvable name: %s/%s (%s)", r.Status, r.Class, r.Error)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		argv    []string
		env     []string
		wantErr string
	}{
		{[]string{"nosuch-fanout-cmd"}, nil, `exec: command "nosuch-fanout-cmd" not found`},
		{[]string{"/nonexistent/x"}, nil, `exec: command "/nonexistent/x" not found`},
		{nil, nil, "exec: no command given"},
		{[]string{"{}"}, nil, "placeholders are substituted in arguments only"},
		{[]string{"true"}, []string{"NOEQUALS"}, `env "NOEQUALS": want KEY=VALUE`},
		{[]string{"true"}, []string{"A=1"}, ""},
	}
	for _, tt := range tests {
		_, err := exec.New(exec.Config{Argv: tt.argv, Env: tt.env})
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("New(%q, env %q) = %v, want %q", tt.argv, tt.env, err, tt.wantErr)
		}
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	j, err := job.New("exec", json.RawMessage(`{"argv":["sh","-c","echo $FANOUT_T"],"env":["FANOUT_T=yes"],"max_output":2}`))
	if err != nil {
		t.Fatal(err)
	}
	r := j.Run(context.Background(), named("x", 0))
	if string(r.Stdout) != "ye" || !r.Truncated || r.Job != "exec" {
		t.Errorf("registry-built job: stdout %q truncated %v job %q", r.Stdout, r.Truncated, r.Job)
	}
	if _, err := job.New("exec", json.RawMessage(`{"argv":["true"],"bogus":1}`)); err == nil {
		t.Error("unknown option accepted")
	}
	want := exec.Config{Argv: []string{"true"}, MaxOutput: 5}
	b, _ := json.Marshal(want)
	j, err = job.New("exec", b)
	if err != nil || !reflect.DeepEqual(j.(*exec.Job).Config(), want) {
		t.Errorf("round trip of %+v: %v %+v", want, err, j)
	}
}

// groupGone reports whether no live process is left in process group pgid.
// Zombies count as gone: killed orphans wait for init to reap them.
func groupGone(pgid int) bool {
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return true
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so cut at ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return false
		}
	}
	return true
}

// TestKillsWholeGroup: a deadline, a cancel, and a leader that leaves a
// child behind all end the whole process group. The commands would sleep
// longer than testwait.Hang: Run returning at all shows it did not wait for
// them. The deadline and the cancel come once the script has started its
// background child (it says so in a file), however slow the machine.
func TestKillsWholeGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		ctx    func(started <-chan struct{}) (context.Context, context.CancelFunc)
		status job.Status
		class  job.Class
	}{
		{"timeout", `sleep 1000 & echo $$; echo $$ >"$0.tmp"; mv "$0.tmp" "$0"; sleep 1000`, func(started <-chan struct{}) (context.Context, context.CancelFunc) {
			return testwait.ExpireOn(started), func() {}
		}, job.Down, job.ClassTimeout},
		{"cancel", `sleep 1000 & echo $$; echo $$ >"$0.tmp"; mv "$0.tmp" "$0"; sleep 1000`, func(started <-chan struct{}) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-started; cancel() }()
			return ctx, cancel
		}, job.Error, job.ClassCanceled},
		// The leader exits at once; its background child holds stdout open.
		{"leftover", `echo $$; sleep 1000 & exit 0`, func(<-chan struct{}) (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, job.Up, job.ClassNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			flag := filepath.Join(t.TempDir(), "started")
			j := mustNew(t, exec.Config{Argv: []string{"sh", "-c", tt.script, flag}})
			ctx, cancel := tt.ctx(testwait.FileAppears(flag))
			defer cancel()
			var r job.Result
			testwait.Returns(t, "Run of a command whose group sleeps", func() { r = j.Run(ctx, named("x", 0)) })
			if r.Status != tt.status || r.Class != tt.class {
				t.Errorf("status %s/%s (%s), want %s/%s", r.Status, r.Class, r.Error, tt.status, tt.class)
			}
			pgid, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
			if err != nil {
				t.Fatalf("script printed %q", r.Stdout)
			}
			// SIGKILL is delivered before Run returns, but let the kernel tear down.
			testwait.For(t, fmt.Sprintf("process group %d to be gone", pgid), func() bool { return groupGone(pgid) })
		})
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	j := mustNew(t, exec.Config{Argv: []string{p}})
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	// With no x bit at all, execve fails with EACCES even for root.
	r := j.Run(context.Background(), named("x", 3))
	if r.Status != job.Error || r.Class != job.ClassLocal || r.Error == "" {
		t.Errorf("start failure: %s/%s (%s), want error/local", r.Status, r.Class, r.Error)
	}
	jobtest.CheckEnvelope(t, "exec", named("x", 3), r)
}

// TestMany runs a few hundred short commands at once, as a sweep does: all
// must succeed and the bounded captures must not mix.
func TestMany(t *testing.T) {
	t.Parallel()
	j := mustNew(t, exec.Config{Argv: []string{"echo", "{index}"}})
	const n = 300
	var wg sync.WaitGroup
	rs := make([]job.Result, n)
	for i := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i] = j.Run(context.Background(), named("h", uint64(i)))
		}()
	}
	wg.Wait()
	for i, r := range rs {
		if r.Status != job.Up || string(r.Stdout) != strconv.Itoa(i)+"\n" {
			t.Errorf("target %d: %s/%s %q (%s)", i, r.Status, r.Class, r.Stdout, r.Error)
		}
	}
}

// BenchmarkRun measures the per-target overhead around fork/exec of `true`.
func BenchmarkRun(b *testing.B) {
	j, err := exec.New(exec.Config{Argv: []string{"true", "{}"}})
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := j.Run(context.Background(), named("h", 0)); r.Status != job.Up {
				b.Fatal(r.Error)
			}
		}
	})
}
