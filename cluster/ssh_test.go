package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	sshjob "github.com/fanout/fanout/job/ssh"
)

// An ssh sweep spread over two worker processes: each rebuilds the job from
// the sweep's stored options (port, command) and its own settings (config
// file, key file, known_hosts), every
// host of the in-process fleet is reached exactly once, and each result
// carries that host's own output back through the results stream.
func TestSSHSweepThroughCluster(t *testing.T) {
	t.Parallel()
	const n = 300
	l := newSSHLabOn(t, "", "127.4.*")
	local := l.local("", "")
	sp := l.spec(sshjob.Config{Command: "hostname", NoDefaultIdentities: true})
	sp.Targets = []string{fmt.Sprintf("127.4.0.0-127.4.%d.%d", (n-1)>>8, (n-1)&255)}

	tc := newTestCluster(t)
	tc.worker("w1", 64, "ssh", local)
	tc.worker("w2", 64, "ssh", local)
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, sp, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	var mu sync.Mutex
	var bad []string
	emit := func(r job.Result) {
		k.emit(r)
		want := netip.AddrFrom4([4]byte{127, 4, byte(r.Index >> 8), byte(r.Index)}).String()
		if r.Status != job.Up || string(r.Stdout) != want+"\n" || r.Job != sshjob.Kind {
			mu.Lock()
			defer mu.Unlock()
			if len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("index %d (%s): job %q, %s/%s %q, stdout %q", r.Index, want, r.Job, r.Status, r.Class, r.Error, r.Stdout))
			}
		}
	}
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Emit: emit}); err != nil {
		t.Fatalf("collect: %v", err)
	}
	exactlyOnce(t, "submitter", k.counts, n)
	for _, b := range bad {
		t.Error(b)
	}
	if len(k.workers) < 2 {
		t.Errorf("results came from %v, want both workers", k.workers)
	}
	t.Logf("results per worker: %v", k.workers)
}

// A watch ssh on the cluster: each worker keeps its job (and so its hosts'
// connections) round after round, while membership holds: after round 2, no
// new connection reaches the fleet, and every round reaches every host.
func TestSSHWatchKeepsConnections(t *testing.T) {
	t.Parallel()
	const n = 60
	l := newSSHLabOn(t, "", "127.4.*")
	fleet, local := l.fleet, l.local("", "")
	sp := l.spec(sshjob.Config{Command: "hostname", NoDefaultIdentities: true, KeepConnections: true})
	sp.Targets = []string{fmt.Sprintf("127.4.0.0-127.4.0.%d", n-1)}

	tc := newTestCluster(t)
	tc.worker("w1", 64, "ssh", local)
	tc.worker("w2", 64, "ssh", local)
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := tc.client(ctx)
	rec, err := c.SubmitWatch(ctx, sp, n, WatchOptions{Every: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := newWatchLog()
	fctx, fcancel := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- c.Follow(fctx, rec.ID, log.opts()) }()
	r2 := log.waitRound(t, 2)
	accepted := fleet.Accepted.Load()
	r5 := log.waitRound(t, r2+3)
	if got := fleet.Accepted.Load(); got != accepted {
		t.Errorf("rounds %d to %d opened %d new connections, want none (kept)", r2+1, r5, got-accepted)
	}
	if err := c.StopWatch(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	fcancel()
	<-followed
	log.mu.Lock()
	defer log.mu.Unlock()
	for r := uint64(1); r <= r5; r++ {
		if len(log.owner[r]) != n {
			t.Errorf("round %d: %d hosts reached, want %d", r, len(log.owner[r]), n)
		}
	}
	t.Logf("%d connections accepted by round %d, none after", accepted, r2)
}
