package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// follower reads a stream through an ordered consumer, and replaces the
// consumer when it stalls. nats.go's ordered consumer recreates itself
// after a server restart, but one that lived on a server of a cluster that
// died (kill -9) can wait on it for good: the reader then never sees
// another message while the cluster goes on. A replacement resumes after
// the last message returned, so none is skipped or returned twice.
type follower struct {
	js     jetstream.JetStream
	stream string
	cfg    jetstream.OrderedConsumerConfig
	pull   []jetstream.PullMessagesOpt
	quiet  time.Duration // without a message for this long, check the consumer

	cons jetstream.Consumer
	it   jetstream.MessagesContext
	last uint64 // stream sequence of the last message returned
}

// followQuiet is how long a follower waits for a message before it checks
// that its consumer still delivers.
const followQuiet = 5 * time.Second

func newFollower(js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, pull ...jetstream.PullMessagesOpt) *follower {
	return &follower{js: js, stream: stream, cfg: cfg, pull: pull, quiet: followQuiet}
}

// Next returns the next message, waiting until ctx is done. Errors other
// than ctx's and nats.ErrConnectionClosed (final) are those of creating the
// consumer or of the iterator; the caller may call Next again (after a
// pause).
func (f *follower) Next(ctx context.Context) (jetstream.Msg, error) {
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
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				f.Stop() // a new iterator next time
			}
			return nil, err
		}
		if meta, err := m.Metadata(); err == nil {
			f.last = meta.Sequence.Stream
		}
		return m, nil
	}
}

func (f *follower) open(ctx context.Context) error {
	cfg := f.cfg
	if f.last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, f.last+1, nil
	}
	cons, err := f.js.OrderedConsumer(ctx, f.stream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(f.pull...)
	if err != nil {
		return err
	}
	f.cons, f.it = cons, it
	return nil
}

// stalled reports whether the consumer no longer delivers: gone from the
// server, or holding messages it has not delivered for f.quiet. Quiet with
// nothing pending is not stalled: nothing was stored.
func (f *follower) stalled(ctx context.Context) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := f.cons.Info(ictx)
	if err != nil {
		return ctx.Err() == nil
	}
	return info.NumPending > 0
}

// Stop ends the current consumer; a later Next starts another one where
// this one was.
func (f *follower) Stop() {
	if f.it != nil {
		f.it.Stop()
		f.it, f.cons = nil, nil
	}
}
