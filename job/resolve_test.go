package job

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/fanout/fanout/target"
)

// "nosuch..invalid" (an empty label) fails inside the resolver without a
// DNS query: no lookup leaves the machine.
func TestResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		t       target.Target
		want    []string // any of
		wantErr bool
	}{
		{target.Target{Addr: netip.MustParseAddr("127.0.0.9"), Host: "ignored.invalid"}, []string{"127.0.0.9"}, false},
		{target.Target{Host: "127.0.0.7"}, []string{"127.0.0.7"}, false},
		{target.Target{Host: "::ffff:127.0.0.8"}, []string{"127.0.0.8"}, false},
		{target.Target{Host: "localhost"}, []string{"127.0.0.1", "::1"}, false},
		{target.Target{Host: "nosuch..invalid"}, nil, true},
		{target.Target{}, nil, true},
	}
	for _, tt := range tests {
		a, err := Resolve(context.Background(), tt.t)
		if tt.wantErr {
			if err == nil {
				t.Errorf("Resolve(%+v) = %v, want an error", tt.t, a)
			}
			continue
		}
		ok := false
		for _, w := range tt.want {
			ok = ok || a.String() == w
		}
		if err != nil || !ok {
			t.Errorf("Resolve(%+v) = %v, %v; want one of %v", tt.t, a, err, tt.want)
		}
	}
}

func TestResolveFailed(t *testing.T) {
	t.Parallel()
	tg := target.Target{Index: 4, Host: "nosuch..invalid", Port: 22}
	start := time.Now()
	live := context.Background()
	expired, cancel := context.WithDeadline(live, start.Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(live)
	cancel2()
	tests := []struct {
		ctx    context.Context
		status Status
		class  Class
	}{
		{live, Error, ClassResolve},
		{expired, Down, ClassTimeout},
		{canceled, Error, ClassCanceled},
	}
	for _, tt := range tests {
		r := ResolveFailed(tt.ctx, tg, "tcp", start, errors.New("boom"))
		want := "boom"
		if tt.class == ClassTimeout { // says it timed out, then why
			want = "resolve nosuch..invalid timed out (the sweep's deadline passed): boom"
		}
		if r.Status != tt.status || r.Class != tt.class || r.Error != want || r.Index != 4 || r.Host != "nosuch..invalid" ||
			r.Port != 22 || r.Job != "tcp" || r.Start != start || r.End.Before(start) {
			t.Errorf("ResolveFailed(ctx %v) = %+v, want %s/%s", tt.ctx.Err(), r, tt.status, tt.class)
		}
	}
}
