package store

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestSweepLists: the lists of a spec's "-" and @FILE entries are stored
// beside it, not in its JSON, and read back byte for byte, part by part.
func TestSweepLists(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	var big bytes.Buffer
	for i := 0; big.Len() < 2*listPart+100; i++ {
		fmt.Fprintf(&big, "h%07d.example.com\n", i)
	}
	exactly := bytes.Repeat([]byte("x\n"), listPart/2) // one full part, no more
	lists := [][]byte{big.Bytes(), {}, []byte("127.0.0.1\n"), exactly}
	spec := testSpec()
	spec.Targets = []string{"@hosts.txt", "10.0.0.1", "@empty.txt", "-"}
	spec.Excludes = []string{"@exactly.txt"}
	readers := make([]io.Reader, len(lists))
	for i, l := range lists {
		readers[i] = bytes.NewReader(l)
	}
	id, err := s.CreateSweep(spec, Meta{Total: 10, Lists: readers})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range lists {
		r, err := s.List(id, k)
		if err != nil {
			t.Fatalf("List(%d): %v", k, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("List(%d) = %d bytes (err %v), want %d", k, len(got), err, len(want))
		}
	}
	if _, err := s.List(id, len(lists)); err == nil || !strings.Contains(err.Error(), "is not in the file") {
		t.Errorf("a list that is not there: %v", err)
	}
	sw, err := s.Sweep(id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sw.Spec.Targets, " ") != strings.Join(spec.Targets, " ") || len(sw.Spec.Excludes) != 1 {
		t.Errorf("stored spec targets %q excludes %q", sw.Spec.Targets, sw.Spec.Excludes)
	}
	var js int
	if err := s.db.QueryRow(`SELECT length(spec) FROM sweeps WHERE id=?`, id).Scan(&js); err != nil || js > 1000 {
		t.Errorf("the spec's JSON is %d bytes (err %v): the lists went into it", js, err)
	}

	// One list missing or one too many: refused, nothing recorded.
	if _, err := s.CreateSweep(spec, Meta{Lists: readers[:2]}); err == nil || !strings.Contains(err.Error(), `"@hosts.txt"`) {
		t.Errorf("2 lists for 4 entries: %v", err)
	}
	if _, err := s.CreateSweep(testSpec(), Meta{Lists: readers[:1]}); err == nil {
		t.Error("a list for a spec without - or @FILE: no error")
	}
	if all, _ := s.Sweeps(); len(all) != 1 {
		t.Errorf("%d sweeps, want 1", len(all))
	}
}
