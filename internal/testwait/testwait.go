// Package testwait is how tests wait for an event: they poll for it, or
// receive it, with a deadline long enough that only a hang reaches it. A test
// must hold on a loaded machine (a CI runner shared with other work, -race,
// two cores), so nothing here measures speed: the deadline only turns a hang
// into a failure that says what never happened, instead of the whole test
// binary's -timeout.
package testwait

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Hang is how long a wait lasts before the test calls it a hang. Minutes: a
// loaded machine never takes that long for what a test waits on.
const Hang = 3 * time.Minute

// poll is how often For looks: often enough to be prompt, rare enough not
// to load the machine the test runs on.
const poll = 5 * time.Millisecond

// For polls cond until it holds. After Hang it fails the test, naming what
// it waited for. Call it from the test's goroutine.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Until(Hang, cond) {
		t.Fatalf("still waiting after %v for %s", Hang, what)
	}
}

// Until polls cond until it holds or d has passed, and reports whether it
// held: for a goroutine that must not call t.Fatal, or a wait whose failure
// the caller reports itself.
func Until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(poll)
	}
	return true
}

// Recv receives from ch. After Hang it fails the test, naming what it
// waited for. ok is false when ch was closed.
func Recv[T any](t testing.TB, what string, ch <-chan T) (v T, ok bool) {
	t.Helper()
	timer := time.NewTimer(Hang)
	defer timer.Stop()
	select {
	case v, ok = <-ch:
		return v, ok
	case <-timer.C:
		t.Fatalf("still waiting after %v for %s", Hang, what)
		return v, false
	}
}

// Returns calls f and waits for it to return. f runs on the caller's
// goroutine, so it may call t.Fatal. After Hang the test binary panics with
// a message naming the test and what, as -timeout would, only sooner: a
// goroutine stuck in f cannot be made to fail its test any other way.
func Returns(t testing.TB, what string, f func()) {
	t.Helper()
	name := t.Name()
	watchdog := time.AfterFunc(Hang, func() {
		panic(fmt.Sprintf("%s: still waiting after %v for %s to return", name, Hang, what))
	})
	defer watchdog.Stop()
	f()
}

// FileAppears returns a channel closed once path exists: a command under
// test says "I am running" by creating it. The channel stays open if it
// never comes; the wait on it is what reports the hang.
func FileAppears(path string) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		if Until(2*Hang, func() bool { _, err := os.Stat(path); return err == nil }) {
			close(c)
		}
	}()
	return c
}

// ExpireOn is a context whose deadline passes when ready is closed: its
// Err is then context.DeadlineExceeded, as a timeout's. A test that checks
// what a deadline does to a running command expires it once the command
// runs, instead of at a moment a loaded machine may reach before the
// command has even started.
func ExpireOn(ready <-chan struct{}) context.Context {
	return expiring{context.Background(), ready}
}

type expiring struct {
	context.Context
	ready <-chan struct{}
}

func (e expiring) Done() <-chan struct{} { return e.ready }

func (e expiring) Err() error {
	select {
	case <-e.ready:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
