package job

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/target"
)

func TestTimedOut(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second) // already past
	defer cancel()
	if got := TimedOut(ctx, "connect"); strings.Contains(got, "0s") || !strings.HasPrefix(got, "connect timed out") {
		t.Errorf("without an attempt timeout: %q", got)
	}
	actx := WithAttemptTimeout(ctx, 2*time.Second)
	if got := TimedOut(actx, "connect"); got != "connect timed out after 2s" {
		t.Errorf("with one: %q", got)
	}
	r := ResolveFailed(actx, target.Target{Host: "db1.example"}, "tcp", time.Now(), errors.New("lookup db1.example: i/o timeout"))
	if r.Class != ClassTimeout || r.Error != "resolve db1.example timed out after 2s: lookup db1.example: i/o timeout" {
		t.Errorf("resolve past the deadline: %s %q", r.Class, r.Error)
	}
}
