package cluster

import (
	"context"
	"fmt"
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
