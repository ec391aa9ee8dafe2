package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/internal/testwait"
)

// TestLeaderGet: a record read from the stream's leader, by revision or as
// the last of its key; another key's revision, a revision not stored, a
// deleted key and a key never put are jetstream.ErrKeyNotFound.
func TestLeaderGet(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Credentials{})
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	nc, err := Connect(ctx, s.URL, Credentials{}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := ensure(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	const stream, subj = "KV_" + SweepsBucket, kvPre + SweepsBucket + "."
	revA, err := st.sweeps.Put(ctx, "a", []byte("record a"))
	if err != nil {
		t.Fatal(err)
	}
	revB, err := st.sweeps.Put(ctx, "b/stdin", []byte("stdin b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		seq       uint64
		want      string
	}{
		{"a by revision", "a", revA, "record a"},
		{"a, last", "a", 0, "record a"},
		{"b by revision", "b/stdin", revB, "stdin b"},
		{"b, last", "b/stdin", 0, "stdin b"},
		{"a at b's revision", "a", revB, ""},
		{"a revision not stored", "a", revB + 100, ""},
		{"a key never put", "c", 0, ""},
	} {
		got, err := leaderGet(ctx, nc, stream, subj+tc.key, tc.seq)
		switch {
		case tc.want == "" && !errors.Is(err, jetstream.ErrKeyNotFound):
			t.Errorf("%s: %q, %v; want ErrKeyNotFound", tc.name, got, err)
		case tc.want != "" && (err != nil || string(got) != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if err := st.sweeps.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, err := leaderGet(ctx, nc, stream, subj+"a", 0); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a deleted, last: %q, %v; want ErrKeyNotFound", got, err)
	}
	if _, err := leaderGet(ctx, nc, "NO_SUCH_STREAM", subj+"a", 0); err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a stream that does not exist: %v, want an error other than not found (the task is kept)", err)
	}
}
