package engine

import (
	"context"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// TestTimeoutMessageNamesTheTimeout: a timed-out attempt's message says the
// per-attempt timeout that fired, whether the engine writes it (the job said
// nothing) or the job does from its ctx (job.TimedOut); never "after 0s".
func TestTimeoutMessageNamesTheTimeout(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		report func(ctx context.Context, r *job.Result)
		want   string
	}{
		"engine": {func(ctx context.Context, r *job.Result) {}, "timed out after 60ms"},
		"job from ctx": {func(ctx context.Context, r *job.Result) {
			r.Class, r.Error = job.ClassTimeout, job.TimedOut(ctx, "probe")
		}, "probe timed out after 60ms"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			j := funcJob(func(ctx context.Context, tg target.Target) job.Result {
				r := job.For(tg, "test")
				select {
				case <-ctx.Done():
					r.Status = job.Down
					tc.report(ctx, &r)
				case <-time.After(2 * testwait.Hang):
				}
				return r
			})
			var got map[uint64]job.Result
			testwait.Returns(t, "a sweep with a 60ms timeout", func() {
				got, _ = collect(t, context.Background(), 2, j, Options{Timeout: 60 * time.Millisecond}, nil)
			})
			for _, r := range got {
				if r.Class != job.ClassTimeout || r.Error != tc.want {
					t.Errorf("%s: %q, want timeout: %q", r.Class, r.Error, tc.want)
				}
			}
		})
	}
}
