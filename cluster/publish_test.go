package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
)

// Two runs of the same task (a redelivery while the first run was still
// publishing, or after it died) that split their results into batches at
// different places: every index must end up stored exactly once.
func TestPublishTwoRunsDifferentBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startTestServer(t, Credentials{})
	nc, err := Connect(ctx, s.URL, Credentials{}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w, err := NewWorker(ctx, nc, WorkerOptions{Name: "w", Allow: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	sr := testSweepRun(t, "s1", sleepSpec(4*n, 0), n)
	mk := func(lo, hi int, pad int) []job.Result {
		var rs []job.Result
		for i := lo; i < hi; i++ {
			// Task 3 of 100: indexes 300-399.
			ip := fmt.Sprintf("127.0.%d.%d", (3*n+i)>>8, (3*n+i)&255)
			rs = append(rs, job.Result{Index: uint64(3*n + i), Host: ip, Addr: ip,
				Job: "clustertest-sleep", Status: job.Up, Error: string(make([]byte, pad))})
		}
		return rs
	}
	tk := task{Sweep: "s1", Chunk: 3, Lo: 3 * n, Hi: 4 * n}
	one, _, _ := encodeBatch(mk(0, 1, 40), 1<<20)
	w.maxBatch = 30 * len(one) // ~30 results per message
	// First run: died after publishing its first 60 results (two batches),
	// in two calls as a running task does.
	first := &chunkPublisher{w: w, t: tk, sr: sr}
	if err := first.publish(ctx, mk(30, 60, 40)); err != nil {
		t.Fatal(err)
	}
	if err := first.publish(ctx, mk(0, 30, 40)); err != nil {
		t.Fatal(err)
	}
	// Second run: all 100, bigger results, so its batches split elsewhere;
	// and in another order.
	rs := mk(0, n, 70)
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i]
	}
	second := &chunkPublisher{w: w, t: tk, sr: sr}
	if err := second.publish(ctx, rs[:50]); err != nil {
		t.Fatal(err)
	}
	// A third run racing in, its calls interleaved with the second's.
	third := &chunkPublisher{w: w, t: tk, sr: sr}
	if err := third.publish(ctx, mk(50, n, 10)); err != nil {
		t.Fatal(err)
	}
	if err := second.publish(ctx, rs[50:]); err != nil {
		t.Fatal(err)
	}
	if err := third.publish(ctx, mk(0, 50, 10)); err != nil {
		t.Fatal(err)
	}
	counts := storedCounts(t, ctx, c, "s1")
	shifted := map[uint64]int{}
	for i, v := range counts {
		shifted[i-3*n] = v
	}
	exactlyOnce(t, "stored", shifted, n)
}

// testSweepRun is what a worker holds for a sweep of spec in tasks of size,
// without a server: its record, targets and checker.
func testSweepRun(t *testing.T, id string, spec spec.Spec, size uint64) *sweepRun {
	t.Helper()
	_, order, err := spec.Visit()
	if err != nil {
		t.Fatal(err)
	}
	n := order.Len()
	rec := Record{ID: id, Spec: spec, Total: n, TaskSize: size, Tasks: n/size + min(n%size, 1), Retention: time.Hour}
	set, order, err := rec.visit(n)
	if err != nil {
		t.Fatal(err)
	}
	return &sweepRun{rec: rec, set: set, order: order, chk: &checker{rec: rec, set: set, order: order}}
}
