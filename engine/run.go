package engine

import (
	"context"
	"sync"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// run is a first, plain implementation (no rate, no batch, no retries) so
// that everything builds; the engine owner replaces it.
func run(ctx context.Context, set target.Set, order target.Order, j job.Job, opts Options, c *Counters, emit func(job.Result)) error {
	if c == nil {
		c = new(Counters)
	}
	n := opts.Concurrency
	if n <= 0 {
		n = 1000
	}
	c.Total.Store(int64(order.Len()))
	c.Began.Store(time.Now().UnixNano())
	results := make(chan job.Result, n)
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	go func() {
		defer close(results)
		for k := uint64(0); k < order.Len(); k++ {
			if ctx.Err() != nil {
				break
			}
			t := set.At(order.At(k))
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				actx, cancel := ctx, context.CancelFunc(func() {})
				if opts.Timeout > 0 {
					actx, cancel = context.WithTimeout(ctx, opts.Timeout)
				}
				r := j.Run(actx, t)
				cancel()
				r.Attempts = 1
				results <- r
			}()
		}
		wg.Wait()
	}()
	for r := range results {
		c.Done.Add(1)
		emit(r)
	}
	return ctx.Err()
}
