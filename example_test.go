package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// portOpen is a custom job: is a TCP port open on the target?
type portOpen struct{ port uint16 }

func (portOpen) Kind() string { return "port-open" }

func (p portOpen) Run(ctx context.Context, t fanout.Target) fanout.Result {
	r := job.For(t, p.Kind())
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(t.Addr, p.port).String())
	switch {
	case err == nil:
		c.Close()
		r.Status = job.Up
	case errors.Is(err, syscall.ECONNREFUSED):
		r.Status, r.Class, r.Error = job.Down, job.ClassRefused, err.Error()
	default:
		r.Status, r.Class, r.Error = job.Down, job.ClassTimeout, err.Error()
	}
	return r
}

// A custom job in a few lines, swept over two loopback addresses: the
// listener answers on 127.0.0.1 only, so 127.0.0.2 refuses.
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	targets, err := target.Parse([]string{"127.0.0.1-2"}, target.ParseOptions{})
	if err != nil {
		panic(err)
	}
	results := make([]fanout.Result, targets.Len())
	err = fanout.Sweep(context.Background(), targets, portOpen{port}, fanout.Options{
		Options:  engine.Options{Concurrency: 100, Timeout: 2 * time.Second},
		OnResult: func(r fanout.Result) { results[r.Index] = r }, // completion order varies
	})
	if err != nil {
		panic(err)
	}
	for _, r := range results {
		fmt.Println(r.Addr, r.Status, r.Class, r.Attempts)
	}
	// Output:
	// 127.0.0.1 up  1
	// 127.0.0.2 down refused 1
}
