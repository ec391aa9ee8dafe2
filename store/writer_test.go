package store

import (
	"path/filepath"
	"testing"
	"time"
)

// TestInsertPreparedOnce: a sweep of alike Results prepares its insert once
// per shape (columns and rows), not once per batch: preparing a 1,024-row
// insert costs about 1 ms of CPU, as much as inserting 500 Results.
func TestInsertPreparedOnce(t *testing.T) {
	t.Parallel()
	s, err := Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows := pingSweep(8*defaultBatch + 3)
	id, err := s.CreateSweep(testSpec(), Meta{Total: uint64(len(rows))})
	if err != nil {
		t.Fatal(err)
	}
	// An hour's interval: batches are cut by size only, 8 full ones and
	// the 3 Results Close commits (2 + 1 rows: two more shapes).
	w, err := s.NewWriter(id, WriterOptions{Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.Written(); got != uint64(len(rows)) {
		t.Fatalf("written %d, want %d", got, len(rows))
	}
	if w.commits.Load() != 9 {
		t.Errorf("%d commits, want 9 (8 full batches and the rest)", w.commits.Load())
	}
	if w.prepares != 3 {
		t.Errorf("%d inserts prepared for 9 batches of one column set, want 3 (1,024, 2 and 1 rows)", w.prepares)
	}
}
