package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/internal/testwait"
)

// TestFollowerReplacesStalledConsumer: a consumer that holds messages and
// delivers none (here paused on the server; after a kill -9 in a cluster,
// one whose server died) is replaced by one resuming after the last message
// returned: every message comes once, in order. A plain ordered consumer
// waits for the pause to end (an hour).
func TestFollowerReplacesStalledConsumer(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	nc, err := Connect(ctx, s.URL, Credentials{}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FOLLOWTEST", Subjects: []string{"followtest.>"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := js.Publish(ctx, "followtest.x", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := func(f *streamReader, want int) {
		t.Helper()
		m, err := f.Next(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", want, err)
		}
		if got := string(m.Data()); got != fmt.Sprint(want) {
			t.Fatalf("message %s, want %d", got, want)
		}
	}
	publish(1, 3)
	f := newStreamReader(js, "FOLLOWTEST", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"followtest.>"}})
	f.quiet = 200 * time.Millisecond
	defer f.Stop()
	for i := 1; i <= 3; i++ {
		next(f, i)
	}
	// Quiet with nothing stored is not a stall: the same consumer goes on.
	first := f.cons.CachedInfo().Name
	qctx, qcancel := context.WithTimeout(ctx, 3*f.quiet)
	if _, err := f.Next(qctx); err != context.DeadlineExceeded {
		t.Fatalf("nothing stored: %v, want the caller's deadline", err)
	}
	qcancel()
	if f.cons == nil || f.cons.CachedInfo().Name != first {
		t.Fatalf("quiet, nothing pending: the consumer was replaced")
	}
	if _, err := js.PauseConsumer(ctx, "FOLLOWTEST", first, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	publish(4, 6)
	for i := 4; i <= 6; i++ {
		next(f, i)
	}
	if f.cons.CachedInfo().Name == first {
		t.Errorf("the paused consumer %s delivered: nothing was replaced", first)
	}
}

// lossyProxy forwards loopback TCP connections to a server. While dropping,
// what the server sends is read and thrown away, as a server killed with
// those bytes in its buffers loses them; cut closes every connection.
type lossyProxy struct {
	l        net.Listener
	to       string
	dropping atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
}

func newLossyProxy(t *testing.T, to string) *lossyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{l: l, to: to}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !p.dropping.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

func (p *lossyProxy) url() string { return "nats://" + p.l.Addr().String() }

func (p *lossyProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestStreamReaderRereadsLostDeliveries: messages the reader's consumer
// delivered that never reached the reader (its connection died with them in
// flight, as when the server it was connected to is killed) are read again:
// the last ones (the consumer then holds nothing pending, and a Collect
// waited for them for good), and those before a later message (which was
// returned, the lost ones skipped). Every message comes once, in order.
func TestStreamReaderRereadsLostDeliveries(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	for _, deliver := range []jetstream.DeliverPolicy{jetstream.DeliverAllPolicy, jetstream.DeliverNewPolicy} {
		t.Run(deliver.String(), func(t *testing.T) { testLostDeliveries(t, s, deliver) })
	}
}

// testLostDeliveries: with deliver, a reader that lost deliveries returns
// each message once, in order (messages 1-3 are stored before it starts).
func testLostDeliveries(t *testing.T, s *Server, deliver jetstream.DeliverPolicy) {
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	pnc, err := Connect(ctx, s.URL, Credentials{}, "publisher", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer pnc.Close()
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	stream := "LOSS" + strings.ToUpper(deliver.String())
	subject := strings.ToLower(stream) + ".x"
	if _, err := pjs.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
	proxy := newLossyProxy(t, strings.TrimPrefix(s.URL, "nats://"))
	rnc, err := Connect(ctx, proxy.url(), Credentials{}, "reader", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	rjs, err := jetstream.New(rnc)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if _, err := pjs.Publish(ctx, subject, fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 3)
	f := newStreamReader(rjs, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: deliver})
	f.quiet = 200 * time.Millisecond
	defer f.Stop()
	if err := f.open(ctx); err != nil {
		t.Fatal(err)
	}
	next := func(want int) {
		t.Helper()
		for {
			m, err := f.Next(ctx)
			if err != nil && ctx.Err() == nil {
				continue // as Collect does: the reader starts another consumer
			}
			if err != nil {
				t.Fatalf("message %d: %v", want, err)
			}
			if got := string(m.Data()); got != fmt.Sprint(want) {
				t.Fatalf("message %s, want %d", got, want)
			}
			return
		}
	}
	// lose delivers messages from..to into a connection that then dies.
	lose := func(from, to int) {
		t.Helper()
		proxy.dropping.Store(true)
		name := f.cons.CachedInfo().Name
		publish(from, to)
		testwait.For(t, fmt.Sprintf("messages %d-%d delivered by %s", from, to, name), func() bool {
			ci, err := pjs.Consumer(ctx, stream, name)
			if err != nil {
				return false
			}
			info, err := ci.Info(ctx)
			return err == nil && info.Delivered.Stream >= uint64(to) && info.NumPending == 0
		})
		before := rnc.Stats().Reconnects
		proxy.cut()
		proxy.dropping.Store(false)
		testwait.For(t, "the reader connected again", func() bool { return rnc.Stats().Reconnects > before && rnc.IsConnected() })
	}
	if deliver == jetstream.DeliverAllPolicy {
		for i := 1; i <= 3; i++ {
			next(i)
		}
	}
	// The last messages lost (for DeliverNew, the first it would return):
	// nothing pending on the consumer. (A Next that returns nothing first:
	// the iterator pulls once asked for a message.)
	qctx, qcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := f.Next(qctx); err != context.DeadlineExceeded {
		t.Fatalf("nothing new stored: %v, want the caller's deadline", err)
	}
	qcancel()
	lose(4, 5)
	next(4)
	next(5)
	// Lost, then a later message delivered on the same consumer.
	lose(6, 7)
	publish(8, 8)
	for i := 6; i <= 8; i++ {
		next(i)
	}
}
