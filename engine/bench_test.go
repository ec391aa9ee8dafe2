package engine

import (
	"context"
	"testing"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Per-target overhead of the engine with a job that does nothing: b.N targets
// in one sweep, so ns/op is the engine's cost per target.
func BenchmarkOverhead(b *testing.B) {
	noop := funcJob(func(ctx context.Context, t target.Target) job.Result { return up(t) })
	cases := []struct {
		name string
		j    job.Job
		opts Options
	}{
		{"run", noop, Options{}},
		{"run-timeout", noop, Options{Timeout: 1e9}},
		{"batch", &stampBatch{}, Options{}},
		{"batch-rate-1e9", &stampBatch{}, Options{Rate: 1e9}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := uint64(b.N)
			done := 0
			err := Run(context.Background(), addrs(n), target.Identity(n), bc.j, bc.opts, nil, func(job.Result) { done++ })
			if err != nil || done != b.N {
				b.Fatalf("%d of %d, err %v", done, b.N, err)
			}
		})
	}
}
