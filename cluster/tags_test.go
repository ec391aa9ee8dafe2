package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
)

func TestParseTags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // FormatTags, or the error's words
		ok   bool
	}{
		{"", "-", true},
		{"dc=paris", "dc=paris", true},
		{" rack=3 , dc=paris", "dc=paris,rack=3", true},
		{"dc", `"dc": want KEY=VALUE`, false},
		{"dc=", `"dc=": want KEY=VALUE`, false},
		{"=paris", `want KEY=VALUE`, false},
		{"dc=par is", `want KEY=VALUE`, false},
		{"dc=paris,dc=lyon", `key "dc" given twice`, false},
		{"a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,i=1,j=1,k=1,l=1,m=1,n=1,o=1,p=1,q=1", "17 tags, at most 16", false},
		{"k=" + strings.Repeat("x", 65), "want KEY=VALUE", false},
	} {
		got, err := ParseTags(tc.in)
		switch {
		case tc.ok && err != nil:
			t.Errorf("ParseTags(%q): %v", tc.in, err)
		case tc.ok && FormatTags(got) != tc.want:
			t.Errorf("ParseTags(%q) = %s, want %s", tc.in, FormatTags(got), tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseTags(%q): error %v, want one saying %q", tc.in, err, tc.want)
		}
	}
	have := map[string]string{"dc": "paris", "rack": "3"}
	if !TagsMatch(have, nil) || !TagsMatch(have, map[string]string{"dc": "paris"}) || TagsMatch(have, map[string]string{"dc": "lyon"}) ||
		TagsMatch(nil, map[string]string{"dc": "paris"}) || TagsMatch(have, map[string]string{"dc": "paris", "gpu": "1"}) {
		t.Error("TagsMatch: want a match only when every pinned pair is the worker's")
	}
}

// TestPinnedToTags: two worker processes tagged dc=paris and dc=lyon, a
// watch pinned to each and a sweep pinned to one: every result comes from a
// worker whose tags match, and each watch is polled by its worker alone
// (rendezvous over the matching live workers only). A watch pinned to tags
// no worker has is polled by nobody.
func TestPinnedToTags(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t)
	tc.worker("wparis", 50, "clustertest-sleep", "FANOUT_CLUSTER_TAGS=dc=paris,rack=3")
	tc.worker("wlyon", 50, "clustertest-sleep", "FANOUT_CLUSTER_TAGS=dc=lyon")
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := tc.client(ctx)
	testwait.For(t, "two live workers with their tags", func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 2 && len(ws[0].Tags) > 0 && len(ws[1].Tags) > 0
	})

	const n = 64
	sp := sleepSpec(n, 1)
	sp.Timeout = time.Second
	want := map[string]string{"paris": "wparis", "lyon": "wlyon"}
	logs := map[string]*watchLog{}
	ids := map[string]string{}
	for _, dc := range []string{"paris", "lyon", "nowhere"} {
		rec, err := c.SubmitWatch(ctx, sp, n, WatchOptions{Every: time.Second, ChunkSize: 4, On: map[string]string{"dc": dc}})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.LookupWatch(ctx, rec.ID); err != nil || got.On["dc"] != dc {
			t.Fatalf("watch %s: on %v (%v), want dc=%s", rec.ID, got.On, err, dc)
		}
		ids[dc] = rec.ID
		logs[dc] = newWatchLog()
		go func() { _ = c.Follow(ctx, rec.ID, logs[dc].opts()) }()
	}
	for _, dc := range []string{"paris", "lyon"} {
		last := logs[dc].waitRound(t, 3)
		for r := uint64(1); r <= last; r++ {
			got := logs[dc].workersOf(r)
			if len(got) == 0 {
				continue // a round ticked before the workers saw the watch
			}
			if len(got) != 1 || got[want[dc]] != n {
				t.Errorf("watch on dc=%s round %d: polled by %v, want all %d by %s", dc, r, got, n, want[dc])
			}
		}
	}
	for _, dc := range []string{"paris", "lyon", "nowhere"} {
		if err := c.StopWatch(ctx, ids[dc]); err != nil {
			t.Fatal(err)
		}
	}
	l := logs["nowhere"]
	l.mu.Lock()
	if len(l.owner) != 0 || len(l.ended) != 0 {
		t.Errorf("watch on dc=nowhere: results %v, rounds ended %v; want none: no worker has that tag", l.owner, l.ended)
	}
	l.mu.Unlock()

	// A sweep pinned to dc=lyon: every task to wlyon (wparis leaves them).
	rec, err := submit(ctx, c, sp, SubmitOptions{TaskSize: 8, On: map[string]string{"dc": "lyon"}})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	if err := c.Collect(ctx, rec.ID, k.opts()); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, "submitter", k.counts, n)
	if k.workers["wlyon"] != n {
		t.Errorf("sweep on dc=lyon: results per worker %v, want all %d from wlyon", k.workers, n)
	}
}
