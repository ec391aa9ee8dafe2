package cluster

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/target"
)

// gateProbe counts the targets of clustertest-gate in flight in this
// process; each holds its slot until the worker's -c is reached (or every
// target has started), so that the bound is approached because targets
// wait for it.
var gateProbe struct {
	limit, total     int64
	cur, max, starts atomic.Int64
}

type gateJob struct{}

func (gateJob) Kind() string { return "clustertest-gate" }
func (gateJob) Run(ctx context.Context, t target.Target) job.Result {
	r := job.For(t, "clustertest-gate")
	n := gateProbe.cur.Add(1)
	for m := gateProbe.max.Load(); n > m && !gateProbe.max.CompareAndSwap(m, n); m = gateProbe.max.Load() {
	}
	last := gateProbe.starts.Add(1) >= gateProbe.total
	if !last {
		testwait.Until(testwait.Hang, func() bool {
			return gateProbe.cur.Load() >= gateProbe.limit || gateProbe.starts.Load() >= gateProbe.total
		})
	}
	gateProbe.cur.Add(-1)
	r.Status = job.Up
	return r
}

func init() {
	job.Register("clustertest-gate", job.Traits{TaskSize: [2]uint64{1, 1}}, func(json.RawMessage) (job.Job, error) { return gateJob{}, nil })
}

// A worker's -c bounds its targets in flight across every task it runs at
// once (one engine Gate passed to each task's engine run; that the timeout
// starts with the slot is engine's TestGateTimeoutStartsWithSlot).
func TestWorkerGateAcrossTasks(t *testing.T) {
	t.Parallel()
	const c, n = 3, 12
	gateProbe.limit, gateProbe.total = c, n
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	s := startTestServer(t, Credentials{})
	nc, err := Connect(ctx, s.URL, Credentials{}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w, err := NewWorker(ctx, nc, WorkerOptions{Name: "w", Concurrency: c, Allow: []string{"clustertest-gate"}, AckWait: 5 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	defer func() { stop(); <-done }()

	cl, err := NewClient(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	sp := spec.Spec{Job: "clustertest-gate", Targets: []string{"127.0.0.1-12"}}
	rec, err := submit(ctx, cl, sp, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Tasks != n {
		t.Fatalf("%d tasks, want one per target (the kind's TaskSize)", rec.Tasks)
	}
	up := 0
	if err := cl.Collect(ctx, rec.ID, CollectOptions{Emit: func(r job.Result) {
		if r.Status == job.Up {
			up++
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if up != n {
		t.Errorf("%d of %d targets up", up, n)
	}
	if mx := gateProbe.max.Load(); mx != c {
		t.Errorf("%d targets in flight at most across the worker's tasks, -c %d", mx, c)
	}
}
