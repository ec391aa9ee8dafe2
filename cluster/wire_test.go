package cluster

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/icmp" // TestTaskSize: each kind's registered TaskSize
	"github.com/fanout/fanout/job/jobtest"
	_ "github.com/fanout/fanout/job/tcp"
)

// The wire form must give back every Result exactly as its JSON contract
// shows it, including the values gob alone would drop (exit code 0, empty
// output), and split batches under the size limit without losing one.
func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	zero, three := 0, 3
	start := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	in := []job.Result{
		{Index: 0, Host: "127.0.0.1", Addr: "127.0.0.1", Job: "exec", Status: job.Up, ExitCode: &zero, Stdout: []byte{}, Stderr: []byte{}, Attempts: 1, Start: start, End: start.Add(time.Millisecond), Worker: "w1"},
		{Index: 1, Host: "h1", Job: "exec", Status: job.Down, Class: job.ClassExit, Error: "exit 3", ExitCode: &three, Stdout: []byte("out\n"), Attempts: 2, Start: start, End: start},
		{Index: 2, Host: "127.0.0.2", Addr: "127.0.0.2", Port: 22, Job: "tcp", Status: job.Down, Class: job.ClassTimeout, Error: "timeout", RTT: 1500 * time.Microsecond, Attempts: 1, Start: start, End: start},
		{Index: 3, Host: "127.0.0.3", Job: "ping", Status: job.Up, Sent: 3, Recv: 2, RTTMin: time.Millisecond, RTTAvg: 2 * time.Millisecond, RTTMax: 3 * time.Millisecond, Start: start, End: start},
		{Index: 4, Host: "big", Job: "ssh", Status: job.Up, Stdout: []byte(strings.Repeat("x", 5000)), Start: start, End: start},
	}
	for _, max := range []int{1 << 20, 6000, 10} {
		var out []job.Result
		for rest := in; len(rest) > 0; {
			b, n, err := encodeBatch(rest, max)
			if err != nil {
				t.Fatal(err)
			}
			if n < 1 || (n > 1 && len(b) > max) {
				t.Fatalf("max %d: batch of %d results, %d bytes", max, n, len(b))
			}
			rs, err := decodeBatch(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != n {
				t.Fatalf("max %d: decoded %d results, encoded %d", max, len(rs), n)
			}
			out = append(out, rs...)
			rest = rest[n:]
		}
		if len(out) != len(in) {
			t.Fatalf("max %d: %d results back, want %d", max, len(out), len(in))
		}
		for i := range in {
			w := in[i]
			if max == 10 {
				// Alone over the limit: sent without its outputs, marked truncated.
				w.Stdout, w.Stderr, w.Truncated = nil, nil, true
			}
			want, _ := json.Marshal(w)
			got, _ := json.Marshal(out[i])
			if string(got) != string(want) {
				t.Errorf("max %d: result %d\n got %s\nwant %s", max, i, got, want)
			}
		}
	}
}

// TestResultFieldsWire: every field of job.Fields that travels comes back
// from the wire as it went, present or absent (with -tags fanout_testfield,
// the test build's extra field too); a derived one (loss) follows.
func TestResultFieldsWire(t *testing.T) {
	// Not parallel: the test build keeps its extra field beside the
	// Result, by index, and these tests share indexes.
	in := []job.Result{jobtest.FullResult(21), jobtest.FullResult(22), {Host: "h"}}
	in[1].Stdout, in[1].ExitCode = []byte{}, nil // empty is not absent
	var want [][]string
	for i := range in {
		want = append(want, jobtest.FieldValues(&in[i]))
	}
	b, n, err := encodeBatch(in, 1<<20)
	if err != nil || n != len(in) {
		t.Fatalf("encodeBatch: %d of %d, %v", n, len(in), err)
	}
	for i := range in {
		jobtest.ZeroFields(&in[i])
	}
	out, err := decodeBatch(b)
	if err != nil || len(out) != len(in) {
		t.Fatalf("decodeBatch: %d of %d, %v", len(out), len(in), err)
	}
	for i := range out {
		for _, d := range jobtest.SameFields(want[i], &out[i]) {
			t.Errorf("wire: result %d: %s", i, d)
		}
	}
	if fs := job.Fields(); len(wireFields) != len(fs)-1 {
		t.Errorf("%d fields travel, want all %d but loss", len(wireFields), len(fs))
	}
}

// TestWireVersion: a batch of another format version, a result with a
// field this fanout does not know or without one a result must carry, is
// refused with an error that says so.
func TestWireVersion(t *testing.T) {
	t.Parallel()
	b, _, _ := encodeBatch([]job.Result{jobtest.FullResult(1)}, 1<<20)
	v1 := append([]byte{0xff, 0x00, 1}, b[len(wireMagic):]...)
	if _, err := decodeBatch(v1); err == nil || !strings.Contains(err.Error(), "format version 1, this fanout reads version 2") {
		t.Errorf("version 1 batch: %v", err)
	}
	unknown := append(append([]byte{}, wireMagic...), binary.AppendUvarint(nil, 1<<len(wireFields))...)
	if _, err := decodeBatch(unknown); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown field: %v", err)
	}
	host := slices.IndexFunc(wireFields, func(f *job.Field) bool { return f.Name == "Host" })
	noHost := append(append([]byte{}, wireMagic...), binary.AppendUvarint(nil, wireAlways&^(1<<host))...)
	if _, err := decodeBatch(noHost); err == nil || !strings.Contains(err.Error(), "field host missing") {
		t.Errorf("result without host: %v", err)
	}
}

// TestWireTruncated: a cut binary message is an error, not a short batch,
// and a message that is not a batch is refused.
func TestWireTruncated(t *testing.T) {
	t.Parallel()
	zero := 0
	start := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	in := []job.Result{
		{Index: 7, Host: "127.0.0.7", Job: "exec", Status: job.Up, ExitCode: &zero, Stdout: []byte{}, Start: start, End: start, Worker: "w"},
		{Index: 8, Host: "127.0.0.8", Job: "ping", Status: job.Down, Class: job.ClassTimeout, Sent: 1, Start: start, End: start},
	}
	b, _, _ := encodeBatch(in, 1<<20)
	first, _, _ := encodeBatch(in[:1], 1<<20) // a cut here is a whole batch of one
	for cut := len(wireMagic) + 1; cut < len(b); cut++ {
		if cut == len(first) {
			continue
		}
		if rs, err := decodeBatch(b[:cut]); err == nil {
			t.Fatalf("binary batch cut at %d of %d bytes: %d results, no error", cut, len(b), len(rs))
		}
	}
	for _, junk := range [][]byte{nil, {}, []byte("{}"), b[1:], {0x0d, 0xff, 0x81, 0x03}} {
		if rs, err := decodeBatch(junk); err == nil {
			t.Errorf("decodeBatch(%q) = %d results, want an error", junk, len(rs))
		}
	}
}

func TestTaskSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind string
		n    uint64
		want uint64
	}{
		{"ping", 1 << 24, 4096}, // a /8: 4096 tasks
		{"ping", 65536, 4096},   // large ICMP tasks even if few
		{"ping", 100, 100},      // never more than the sweep
		{"tcp", 30000, 469},     // 64 tasks to share
		{"tcp", 1 << 20, 1024},
		{"tcp", 1000, 128},
		{"ssh", 20000, 16}, // few slow sessions per task
		{"ssh", 10, 1},
		{"exec", 100000, 64},
		{"custom", 1 << 20, 256},
		{"custom", 0, 1},
	} {
		if got := TaskSize(tc.kind, tc.n); got != tc.want {
			t.Errorf("TaskSize(%q, %d) = %d, want %d", tc.kind, tc.n, got, tc.want)
		}
	}
}
