package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamReader reads a stream in order through a consumer of its own (an
// ephemeral pull consumer, in memory, one replica, no acks: what nats.go's
// ordered consumer makes), and replaces the consumer whenever it fails or
// stalls, resuming after the last message returned, so none is skipped or
// returned twice. nats.go's ordered consumer does its own replacing, but
// after a kill -9 of a server of the cluster it was seen to wait for good:
// on a consumer that lived on the dead server, or in its own retry loop,
// which no context interrupts. The reader then never saw another message
// while the cluster went on.
//
// A consumer without acks counts a message delivered once sent: one in
// flight when the connection died (the server the reader was connected to
// was killed, with the message in its buffers) is lost to it, and its
// iterator, reconnected, goes on with the next ones. The reader notices by
// the consumer's sequence (a gap, or a consumer that delivered more than
// the reader got) and starts another consumer after the last message
// returned, as nats.go's ordered consumer does on a gap.
type streamReader struct {
	js     jetstream.JetStream
	stream string
	cfg    jetstream.OrderedConsumerConfig
	pull   []jetstream.PullMessagesOpt
	quiet  time.Duration // without a message for this long, check the consumer
	opened func()        // when set, called each time a consumer is made

	cons jetstream.Consumer
	it   jetstream.MessagesContext
	last uint64 // stream sequence of the last message returned
	got  uint64 // consumer sequence of the last message cons delivered here
}

// readerQuiet is how long a streamReader waits for a message before it checks
// that its consumer still delivers.
const readerQuiet = 5 * time.Second

func newStreamReader(js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, pull ...jetstream.PullMessagesOpt) *streamReader {
	return &streamReader{js: js, stream: stream, cfg: cfg, pull: pull, quiet: readerQuiet}
}

// Next returns the next message, waiting until ctx is done. Errors other
// than ctx's and nats.ErrConnectionClosed (final) are those of creating the
// consumer or of the iterator; the caller may call Next again (after a
// pause), which starts another consumer.
func (f *streamReader) Next(ctx context.Context) (jetstream.Msg, error) {
	for {
		if f.js.Conn().IsClosed() {
			f.Stop()
			return nil, nats.ErrConnectionClosed // for good: the caller stops
		}
		if f.it == nil {
			if err := f.open(ctx); err != nil {
				return nil, err
			}
		}
		nctx, cancel := context.WithTimeout(ctx, f.quiet)
		m, err := f.it.Next(jetstream.NextContext(nctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			if f.stalled(ctx) {
				f.Stop()
			}
			continue
		case err != nil:
			f.Stop() // missed heartbeats, a reconnect, a deleted consumer
			return nil, err
		}
		meta, err := m.Metadata()
		if err != nil {
			continue // not a stream message
		}
		if meta.Sequence.Consumer != f.got+1 {
			// Deliveries lost on the way (a connection that died): m may
			// come after messages never returned. Read again from the last
			// one returned.
			f.Stop()
			continue
		}
		f.got = meta.Sequence.Consumer
		if meta.Sequence.Stream <= f.last {
			continue // already returned
		}
		f.last = meta.Sequence.Stream
		return m, nil
	}
}

func (f *streamReader) open(ctx context.Context) error {
	name := make([]byte, 8)
	_, _ = rand.Read(name)
	cfg := jetstream.ConsumerConfig{
		Name: "fanout_" + hex.EncodeToString(name), FilterSubjects: f.cfg.FilterSubjects,
		DeliverPolicy: f.cfg.DeliverPolicy, OptStartSeq: f.cfg.OptStartSeq, OptStartTime: f.cfg.OptStartTime,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1,
		// One left behind (its reader gone, or replaced while its server
		// was unreachable) is deleted by the server.
		InactiveThreshold: 2 * time.Minute,
	}
	if f.last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, f.last+1, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := f.js.CreateConsumer(cctx, f.stream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(f.pull...)
	if err != nil {
		return err
	}
	if f.last == 0 && cfg.DeliverPolicy == jetstream.DeliverNewPolicy {
		// New from now: a replacement resumes from here, not from what is
		// new then (deliveries of this one may be lost).
		f.last = cons.CachedInfo().Delivered.Stream
	}
	f.cons, f.it, f.got = cons, it, 0
	if f.opened != nil {
		f.opened()
	}
	return nil
}

// stalled reports whether the consumer no longer delivers: gone from the
// server, holding messages it has not delivered for f.quiet, or having
// delivered messages that never arrived here (lost in flight: nothing comes
// after them to show a gap). Quiet with nothing pending is not stalled:
// nothing was stored.
func (f *streamReader) stalled(ctx context.Context) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := f.cons.Info(ictx)
	if err != nil {
		return ctx.Err() == nil
	}
	return info.NumPending > 0 || info.Delivered.Consumer > f.got
}

// Stop ends the current consumer (deleted in the background, or by the
// server once inactive); a later Next starts another one where this one
// was.
func (f *streamReader) Stop() {
	if f.it == nil {
		return
	}
	f.it.Stop()
	js, stream, name := f.js, f.stream, f.cons.CachedInfo().Name
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(ctx, stream, name)
	}()
	f.it, f.cons = nil, nil
}
