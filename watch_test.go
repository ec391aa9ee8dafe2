package fanout_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

// flipJob is up everywhere but on 127.0.0.2 from its second call on; it
// counts its Close. Nothing is sent.
type flipJob struct{ calls, closed atomic.Int32 }

func (*flipJob) Kind() string { return "flip" }
func (j *flipJob) Run(ctx context.Context, t fanout.Target) fanout.Result {
	r := job.For(t, "flip")
	r.Status = job.Up
	if t.Addr.As4()[3] == 2 && j.calls.Add(1) > 1 {
		r.Status, r.Class = job.Down, job.ClassRefused
	}
	return r
}
func (j *flipJob) Close() error { j.closed.Add(1); return nil }

// fanout.Watch: the same job for every round (closed at the end), every
// Result through OnResult, and the one change through OnChange.
func TestWatch(t *testing.T) {
	targets, err := target.Parse([]string{"127.0.0.1-3"}, target.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j := &flipJob{}
	var changes []fanout.Change
	var results, rounds int
	err = fanout.Watch(context.Background(), targets, j, fanout.WatchOptions{
		Options:  watch.Options{Every: time.Nanosecond, Rounds: 3, Engine: engine.Options{Concurrency: 2}},
		OnChange: func(c fanout.Change) { changes = append(changes, c) },
		OnResult: func(round uint64, r fanout.Result) { results++ },
		OnRound:  func(fanout.Round) { rounds++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if results != 9 || rounds != 3 || j.closed.Load() != 1 {
		t.Fatalf("%d results, %d rounds, closed %d times; want 9, 3, 1", results, rounds, j.closed.Load())
	}
	if len(changes) != 1 || changes[0].Round != 2 || changes[0].Kind != watch.Down || changes[0].Result.Host != "127.0.0.2" ||
		changes[0].PrevStatus != job.Up || changes[0].Result.Class != job.ClassRefused {
		t.Fatalf("changes %+v, want 127.0.0.2 down (refused) in round 2", changes)
	}
}
