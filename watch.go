package fanout

import (
	"context"

	"github.com/fanout/fanout/watch"
)

type (
	// Change is one change event of a Watch; see watch.Change.
	Change = watch.Change
	// Round is one round of a Watch; see watch.Round.
	Round = watch.Round
)

// WatchOptions of a Watch: the round loop's (interval, rounds, spread, the
// engine's bounds, the confirm and flap rules; see watch.Options) and three
// callbacks, called from one goroutine, after opts.Observers.
type WatchOptions struct {
	watch.Options
	// OnChange is called with every change event: a target that went
	// down, came up, changed class, output or loss, flapped, settled or
	// left a reloaded list.
	OnChange func(Change)
	// OnResult is called with every Result of every round.
	OnResult func(round uint64, r Result)
	// OnRound is called at the end of every round.
	OnRound func(Round)
}

// Watch runs j against targets every opts.Every, a round at a time (rounds
// never overlap: one due while the previous runs starts when it ends, and
// is Late), until ctx is done, opts.Stop is closed or opts.Rounds have run,
// and reports what changed between rounds through opts.OnChange. j is built
// once and used for every round; when it is an io.Closer, Watch closes it.
// It returns nil when the rounds ran or Stop ended them, else ctx.Err() or
// the error that ended a round.
func Watch(ctx context.Context, targets Set, j Job, opts WatchOptions) error {
	o := opts.Options
	o.Observers = append(append([]watch.Observer(nil), o.Observers...), callbacks{opts})
	_, err := watch.Run(ctx, targets, j, o)
	return err
}

// callbacks is WatchOptions' functions as an Observer.
type callbacks struct{ o WatchOptions }

func (callbacks) RoundStart(Round) {}
func (c callbacks) Result(round uint64, r Result) {
	if c.o.OnResult != nil {
		c.o.OnResult(round, r)
	}
}
func (c callbacks) Change(ch Change) {
	if c.o.OnChange != nil {
		c.o.OnChange(ch)
	}
}
func (c callbacks) RoundEnd(r Round) {
	if c.o.OnRound != nil {
		c.o.OnRound(r)
	}
}
