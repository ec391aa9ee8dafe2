package job

import (
	"context"
	"time"
)

type attemptTimeoutKey struct{}

// WithAttemptTimeout is ctx carrying d, the per-attempt timeout whose
// deadline ctx has (the engine sets it), so that a job that sees the
// deadline pass can say which timeout fired.
func WithAttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, attemptTimeoutKey{}, d)
}

// AttemptTimeout is the per-attempt timeout ctx carries, 0 when none.
func AttemptTimeout(ctx context.Context) time.Duration {
	d, _ := ctx.Value(attemptTimeoutKey{}).(time.Duration)
	return d
}

// TimedOut is the message of what that did not finish before ctx's
// deadline: "connect timed out after 2s", naming the timeout that fired;
// "connect timed out" when ctx does not say which (a deadline the caller set
// on the whole sweep). Never "after 0s".
func TimedOut(ctx context.Context, what string) string {
	if d := AttemptTimeout(ctx); d > 0 {
		return what + " timed out after " + d.String()
	}
	return what + " timed out (the sweep's deadline passed)"
}
