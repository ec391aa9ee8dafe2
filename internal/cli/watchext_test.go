package cli

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fanout/fanout/watch"
)

// The copies of a watch's lists: a list re-read is kept for the rounds from
// the one that polls it; one that could not be copied (its directory gone,
// a full disk) makes those rounds' lists an error naming the round, and the
// lists stale, so that the next reload reads them again for a copy.
func TestListCopies(t *testing.T) {
	t.Parallel()
	c := &listCopies{dir: filepath.Join(t.TempDir(), "gone")}
	c.gens = []*listGen{{}} // the first rounds': no list
	reload := func(content string) {
		t.Helper()
		read := func(string) (io.Reader, error) { return strings.NewReader(content), nil }
		lists, done := c.reading(read)
		r, err := lists("@hosts")
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(r); err != nil || string(b) != content {
			t.Fatalf("read through the copy: %q, %v", b, err)
		}
		done(true)
	}
	listOf := func(n uint64) (string, error) {
		t.Helper()
		rs, err := c.forRound(n)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, r := range rs {
			io.Copy(&b, r)
		}
		return b.String(), nil
	}

	reload("a\nb\n") // the copy cannot be written
	if !c.isStale() {
		t.Fatal("a list that could not be copied is not stale")
	}
	c.RoundStart(watch.Round{N: 2})
	if got, err := listOf(1); err != nil || got != "" {
		t.Fatalf("round 1: %q, %v; want the first lists", got, err)
	}
	if _, err := listOf(2); err == nil || !strings.Contains(err.Error(), "round 2") {
		t.Fatalf("round 2, not copied: %v", err)
	}

	c.dir = t.TempDir() // room again: the next reload copies
	reload("a\nc\n")
	if c.isStale() {
		t.Fatal("stale after a copy that held")
	}
	c.RoundStart(watch.Round{N: 4})
	if _, err := listOf(3); err == nil {
		t.Fatal("round 3 polled the list that was not copied")
	}
	for n := uint64(4); n <= 5; n++ {
		if got, err := listOf(n); err != nil || got != "a\nc\n" {
			t.Fatalf("round %d: %q, %v", n, got, err)
		}
	}
	if len(c.gens) != 1 {
		t.Fatalf("%d readings kept, want the one rounds to come poll", len(c.gens))
	}
	c.Close()
}
