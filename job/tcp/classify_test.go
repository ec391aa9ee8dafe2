package tcp

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// dialErr is the error net.Dialer returns when connect(2) fails with errno.
func dialErr(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
}

// TestClassifyErrnoBeforeDeadline: the kernel's answer wins over the
// context's state. A refusal that comes back just as the deadline passes
// (seen with -c 19936 on loopback) is refused, not timeout; an error with no
// errno is explained by the context.
func TestClassifyErrnoBeforeDeadline(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	live := context.Background()

	cases := []struct {
		name   string
		ctx    context.Context
		err    error
		status job.Status
		class  job.Class
	}{
		{"refused at the deadline", expired, dialErr(syscall.ECONNREFUSED), job.Down, job.ClassRefused},
		{"reset at the deadline", expired, dialErr(syscall.ECONNRESET), job.Down, job.ClassRefused},
		{"unreachable at the deadline", expired, dialErr(syscall.EHOSTUNREACH), job.Down, job.ClassUnreachable},
		{"out of files at the deadline", expired, dialErr(syscall.EMFILE), job.Error, job.ClassLocal},
		{"refused while cancelled", cancelled, dialErr(syscall.ECONNREFUSED), job.Down, job.ClassRefused},
		{"refused", live, dialErr(syscall.ECONNREFUSED), job.Down, job.ClassRefused},
		{"deadline without errno", expired, &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, job.Down, job.ClassTimeout},
		{"cancel without errno", cancelled, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("operation was canceled")}, job.Error, job.ClassCanceled},
		{"other errno at the deadline", expired, dialErr(syscall.EPROTO), job.Down, job.ClassTimeout},
		{"unknown", live, errors.New("something else"), job.Error, job.ClassLocal},
	}
	for _, c := range cases {
		s, cl := classify(c.ctx, c.err)
		if s != c.status || cl != c.class {
			t.Errorf("%s: classify(%v) = %s/%s, want %s/%s", c.name, c.err, s, cl, c.status, c.class)
		}
	}
}
