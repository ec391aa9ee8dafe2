package store

import (
	"database/sql"
	"errors"
	"fmt"
)

// Notes are short texts kept about a sweep beside it, for the program that
// ran it (fanout: which cluster sweep, with which digest, a sweep recorded
// by a submitter was). They live in fanout_meta under "sweep.<id>.<key>",
// so no schema change is needed, and go away with the file.
func noteKey(id int64, key string) string { return fmt.Sprintf("sweep.%d.%s", id, key) }

// SetNote keeps value under key for sweep id, replacing an earlier one.
func (s *Store) SetNote(id int64, key, value string) error {
	if _, err := s.Sweep(id); err != nil {
		return err
	}
	if _, err := s.db.Exec(`INSERT INTO fanout_meta(key, value) VALUES(?, ?)
		ON CONFLICT(key) DO UPDATE SET value=excluded.value`, noteKey(id, key), value); err != nil {
		return s.describe("write note in", err)
	}
	return nil
}

// Note is the value kept under key for sweep id, "" when there is none.
func (s *Store) Note(id int64, key string) (string, error) {
	var v string
	err := s.db.QueryRow(`SELECT value FROM fanout_meta WHERE key=?`, noteKey(id, key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", s.describe("read note in", err)
	}
	return v, nil
}
