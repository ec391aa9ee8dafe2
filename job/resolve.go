package job

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/fanout/fanout/target"
)

// Resolve returns the address to probe for t: t.Addr when the spec gave one,
// else the first address t.Host resolves to (IPv4 preferred, since a sweep
// of names is usually a sweep of IPv4 fleets), honouring ctx's deadline.
func Resolve(ctx context.Context, t target.Target) (netip.Addr, error) {
	if t.Addr.IsValid() {
		return t.Addr, nil
	}
	if t.Host == "" {
		return netip.Addr{}, errors.New("resolve: target has neither a name nor an address")
	}
	if a, err := netip.ParseAddr(t.Host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %q: %w", t.Host, err)
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %q: no addresses", t.Host)
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return addrs[0].Unmap(), nil
}

// ResolveFailed is the Result of a target whose name did not resolve: status
// error, class resolve. When the failure was ctx ending (deadline or cancel)
// the class says so instead, so that retries and summaries see the real cause.
func ResolveFailed(ctx context.Context, t target.Target, kind string, start time.Time, err error) Result {
	r := For(t, kind)
	r.Start, r.End = start, time.Now()
	r.Error = err.Error()
	if st, c, done := CtxOutcome(ctx); done {
		r.Status, r.Class = st, c
		if c == ClassTimeout {
			r.Error = TimedOut(ctx, "resolve "+t.Host) + ": " + r.Error
		}
		return r
	}
	r.Status, r.Class = Error, ClassResolve
	return r
}

// CtxOutcome says how an attempt ended by its context: a passed deadline is
// a timeout (status down, retryable), a cancel is status error, class
// canceled. done is false while ctx is still live.
func CtxOutcome(ctx context.Context) (s Status, c Class, done bool) {
	switch err := ctx.Err(); {
	case err == nil:
		return "", ClassNone, false
	case errors.Is(err, context.DeadlineExceeded):
		return Down, ClassTimeout, true
	default:
		return Error, ClassCanceled, true
	}
}
