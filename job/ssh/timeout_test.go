package ssh

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// TestTimeoutErrorNamesTheTimeout: a phase stopped by the engine's deadline
// says the per-attempt timeout; one stopped by a deadline that is not the
// engine's never says "after 0s".
func TestTimeoutErrorNamesTheTimeout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if got := ctxErr(ctx, "connect").Error(); strings.Contains(got, "after 0s") || !strings.HasPrefix(got, "connect timed out") {
		t.Errorf("without an attempt timeout: %q", got)
	}
	if got := ctxErr(job.WithAttemptTimeout(ctx, 2*time.Second), "command").Error(); got != "command timed out after 2s" {
		t.Errorf("with one: %q", got)
	}
	if c := classify(ctxErr(ctx, "connect")); c != job.ClassTimeout {
		t.Errorf("class %s", c)
	}
}
