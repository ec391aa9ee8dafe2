package store

import (
	"errors"
	"testing"
)

// A note is kept per sweep and key, replaced when set again, survives a
// reopen, and needs the sweep to exist.
func TestNotes(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.CreateSweep(testSpec(), Meta{Total: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Note(id, "cluster"); err != nil || v != "" {
		t.Fatalf("no note yet: %q, %v", v, err)
	}
	for _, v := range []string{"first", "second"} {
		if err := s.SetNote(id, "cluster", v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetNote(id+1, "cluster", "x"); !errors.Is(err, ErrNoSweep) {
		t.Errorf("note on a sweep that is not there: %v, want ErrNoSweep", err)
	}
	s.Close()
	if s, err = OpenExisting(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Note(id, "cluster"); err != nil || v != "second" {
		t.Errorf("note after reopen: %q, %v; want second", v, err)
	}
	if v, _ := s.Note(id, "other"); v != "" {
		t.Errorf("another key: %q, want none", v)
	}
}
