package testwait

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	n := 0
	if !Until(Hang, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Until returned before cond held (n=%d)", n)
	}
	if Until(10*time.Millisecond, func() bool { return false }) {
		t.Error("Until reported a cond that never held")
	}
}

func TestRecvAndReturns(t *testing.T) {
	t.Parallel()
	ch := make(chan int, 1)
	ch <- 7
	if v, ok := Recv(t, "a value", ch); v != 7 || !ok {
		t.Errorf("Recv = %d, %v", v, ok)
	}
	close(ch)
	if _, ok := Recv(t, "the close", ch); ok {
		t.Error("Recv on a closed channel: ok")
	}
	ran := false
	Returns(t, "f", func() { ran = true })
	if !ran {
		t.Error("Returns came back before f ran")
	}
}

func TestExpireOn(t *testing.T) {
	t.Parallel()
	flag := filepath.Join(t.TempDir(), "flag")
	ctx := ExpireOn(FileAppears(flag))
	if ctx.Err() != nil {
		t.Fatalf("expired before the file: %v", ctx.Err())
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	Recv(t, "the context to expire", ctx.Done())
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("Err = %v, want a deadline", ctx.Err())
	}
	// What a job derives from it expires with it, as from a timeout.
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	<-child.Done()
	if !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("child Err = %v, want a deadline", child.Err())
	}
}
