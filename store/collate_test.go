package store

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job"
)

// natural is hosts in the order CompareHosts must give them.
var natural = []string{
	"0.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.10", "10.0.0.100", "10.0.1.0", "192.168.0.1", "255.255.255.255",
	"::1", "fd00::2", "fd00::10", "fe80::1%eth0",
	"a", "db2.dc1", "db10.dc1", "db10.dc2", "node01", "node1", "node2", "node9", "node010", "node10", "node11", // equal numbers: bytewise

	"node100", "web", "web1.example", "web02.example", "web10.example",
}

func TestCompareHosts(t *testing.T) {
	t.Parallel()
	for i := range natural {
		for j := range natural {
			want := cmpInt(i, j)
			if got := CompareHosts(natural[i], natural[j]); got != want {
				t.Errorf("CompareHosts(%q, %q) = %d, want %d", natural[i], natural[j], got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	shuffled := slices.Clone(natural)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	slices.SortFunc(shuffled, CompareHosts)
	if !slices.Equal(shuffled, natural) {
		t.Errorf("sorted: %q", shuffled)
	}
}

// TestResultsByTargetNaturalOrder: the store hands diff a sweep's results
// in CompareHosts order, not as text.
func TestResultsByTargetNaturalOrder(t *testing.T) {
	t.Parallel()
	st, err := Open(filepath.Join(t.TempDir(), "order.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, err := st.CreateSweep(fanout.Spec{Job: "exec", Targets: []string{"x"}}, Meta{Total: uint64(len(natural))})
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range rand.New(rand.NewPCG(3, 4)).Perm(len(natural)) {
		if err := w.Write(job.Result{Index: uint64(i), Host: natural[k], Status: job.Up}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := st.ResultsByTarget(context.Background(), id, func(r job.Result) error {
		got = append(got, r.Host)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, natural) {
		t.Errorf("ResultsByTarget order:\n%q\nwant\n%q", got, natural)
	}
}
