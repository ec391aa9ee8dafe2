package testwait

import (
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
