package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/tcp"
	"github.com/fanout/fanout/target"
)

func TestSpecJSON(t *testing.T) {
	t.Parallel()
	s := fanout.Spec{
		Job: "tcp", JobOptions: json.RawMessage(`{"ports":[22,80]}`),
		Targets: []string{"127.0.0.0/24", "web[01-03]"}, Excludes: []string{"127.0.0.1"},
		MaxTargets: 1000, Shuffle: true, Seed: 42, ShardI: 2, ShardN: 3,
		Concurrency: 50, Rate: 100, Timeout: 1500 * time.Millisecond, Retries: 2, Backoff: time.Second,
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back fanout.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, back) {
		t.Fatalf("round trip changed the Spec:\n%+v\n%+v", s, back)
	}
	if e := back.EngineOptions(); e.Concurrency != 50 || e.Rate != 100 || e.Timeout != 1500*time.Millisecond || e.Retries != 2 || e.Backoff != time.Second {
		t.Fatalf("EngineOptions = %+v", e)
	}
}

func TestSpecOrder(t *testing.T) {
	t.Parallel()
	const n = 100
	tests := []struct {
		name    string
		spec    fanout.Spec
		wantLen uint64
		wantErr string
	}{
		{"identity", fanout.Spec{}, n, ""},
		{"shuffle", fanout.Spec{Shuffle: true, Seed: 7}, n, ""},
		{"shard 1/3", fanout.Spec{ShardI: 1, ShardN: 3}, 33, ""},
		{"shard 3/3 shuffled", fanout.Spec{Shuffle: true, Seed: 7, ShardI: 3, ShardN: 3}, 34, ""},
		{"shard 0/3", fanout.Spec{ShardI: 0, ShardN: 3}, 0, "shard 0/3"},
		{"shard 4/3", fanout.Spec{ShardI: 4, ShardN: 3}, 0, "shard 4/3"},
		{"shard 1/0", fanout.Spec{ShardI: 1}, 0, "shard 1/0"},
	}
	for _, tc := range tests {
		o, err := tc.spec.Order(n)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || o.Len() != tc.wantLen {
			t.Errorf("%s: len %v, err %v; want %d", tc.name, o, err, tc.wantLen)
		}
	}
	// Shards of one shuffled order are disjoint and cover every index.
	seen := make([]int, n)
	for i := uint64(1); i <= 3; i++ {
		o, err := fanout.Spec{Shuffle: true, Seed: 9, ShardI: i, ShardN: 3}.Order(n)
		if err != nil {
			t.Fatal(err)
		}
		for k := range o.Len() {
			seen[o.At(k)]++
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("index %d visited %d times across shards", i, c)
		}
	}
}

func TestSpecInline(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(file, []byte("# lab\n127.0.0.1\n\n127.0.0.2-3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := fanout.Spec{Targets: []string{"@" + file, "-"}, Excludes: []string{"127.0.0.3"}}.
		Inline(strings.NewReader("127.0.0.9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1", "127.0.0.2-3", "127.0.0.9"}; !reflect.DeepEqual(s.Targets, want) {
		t.Fatalf("Targets = %q, want %q", s.Targets, want)
	}
	set, err := s.Set(nil)
	if err != nil || set.Len() != 3 {
		t.Fatalf("Set: %v targets, err %v; want 3", set, err)
	}
	if _, err := (fanout.Spec{Targets: []string{"-"}, Excludes: []string{"-"}}).Inline(strings.NewReader("")); err == nil {
		t.Fatal(`"-" twice: no error`)
	}
	if _, err := (fanout.Spec{Targets: []string{"@" + file + ".missing"}}).Inline(nil); err == nil || !strings.Contains(err.Error(), ".missing") {
		t.Fatalf("missing file: err %v, want one naming the file", err)
	}
	if _, err := (fanout.Spec{Job: "no-such-kind"}).NewJob(); err == nil || !strings.Contains(err.Error(), "no-such-kind") {
		t.Fatalf("unknown job: err %v, want one naming it", err)
	}
}

// countJob dials a loopback listener and counts its calls.
type countJob struct {
	addr  string
	calls atomic.Int64
}

func (*countJob) Kind() string { return "count" }
func (j *countJob) Run(ctx context.Context, t fanout.Target) fanout.Result {
	j.calls.Add(1)
	r := job.For(t, "count")
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", j.addr)
	if err != nil {
		r.Status, r.Class, r.Error = job.Down, job.ClassRefused, err.Error()
		return r
	}
	c.Close()
	r.Status = job.Up
	return r
}

func TestSweep(t *testing.T) {
	t.Parallel()
	ln := lab.ClosingListener(t, "127.0.0.1:0")
	set, err := target.Parse([]string{"127.0.0.0/25"}, target.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j := &countJob{addr: ln.Addr().String()}
	var c engine.Counters
	seen := map[uint64]bool{}
	order, _ := fanout.Spec{Shuffle: true, Seed: 1}.Order(set.Len())
	err = fanout.Sweep(context.Background(), set, j, fanout.Options{
		Options: engine.Options{Concurrency: 16}, Order: order, Counters: &c,
		OnResult: func(r fanout.Result) {
			if seen[r.Index] || r.Status != job.Up || r.Addr != set.At(r.Index).Addr.String() {
				t.Errorf("bad or repeated Result %+v", r)
			}
			seen[r.Index] = true
		},
	})
	if err != nil || len(seen) != 128 || j.calls.Load() != 128 || c.Up.Load() != 128 {
		t.Fatalf("err %v, %d Results, %d calls, %d up; want 128", err, len(seen), j.calls.Load(), c.Up.Load())
	}

	// No OnResult, cancelled before it starts: nothing runs, ctx's error comes back.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j.calls.Store(0)
	if err := fanout.Sweep(ctx, set, j, fanout.Options{}); !errors.Is(err, context.Canceled) || j.calls.Load() != 0 {
		t.Fatalf("cancelled sweep: err %v, %d calls", err, j.calls.Load())
	}
}

// Build expands a tcp Spec to host x port targets and holds the product to
// MaxTargets, the same for the CLI and a cluster worker.
func TestSpecBuildExpands(t *testing.T) {
	t.Parallel()
	spec := fanout.Spec{Job: "tcp", JobOptions: json.RawMessage(`{"ports":[22,80]}`), Targets: []string{"127.0.0.1-3"}}
	set, order, j, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	if j.Kind() != "tcp" || set.Len() != 6 || order.Len() != 6 {
		t.Fatalf("kind %s, %d targets, order %d; want tcp, 6, 6", j.Kind(), set.Len(), order.Len())
	}
	if tg := set.At(1); tg.Addr.String() != "127.0.0.1" || tg.Port != 80 {
		t.Fatalf("target 1 = %v:%d, want 127.0.0.1:80", tg.Addr, tg.Port)
	}
	spec.MaxTargets = 5
	if _, _, _, err := spec.Build(); !errors.Is(err, target.ErrTooMany) || !strings.Contains(err.Error(), "--max-targets") {
		t.Fatalf("6 targets over a limit of 5: %v", err)
	}
}
