package store

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
)

// List reads back, part by part, the k-th list of sweep id: the lines of
// the k-th "-" or @FILE entry of its Spec (Targets, then Excludes), as
// CreateSweep stored them (see Meta.Lists).
func (s *Store) List(id int64, k int) (io.ReadCloser, error) {
	var n int64
	err := s.db.QueryRow(`SELECT length(data) FROM lists WHERE sweep=? AND list=? AND part=0`, id, k).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sweep %d in %s: list %d of its targets is not in the file", id, s.path, k)
	}
	if err != nil {
		return nil, s.describe("read list of", err)
	}
	return &listReader{s: s, id: id, k: k}, nil
}

// listReader reads a list one part at a time: a list of millions of names
// is never in memory whole.
type listReader struct {
	s    *Store
	id   int64
	k    int
	part int
	buf  []byte // what is left of the part read
	mem  []byte // the part read, reused: one copy of it, not two
	eof  bool
}

func (r *listReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		found, err := r.next()
		if err != nil {
			return 0, r.s.describe("read list of", err)
		}
		if !found {
			r.eof = true
			continue
		}
		r.part++
		if len(r.buf) < listPart {
			r.eof = true // the last part: no query for one more
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// next reads part r.part into r.buf.
func (r *listReader) next() (bool, error) {
	rows, err := r.s.db.Query(`SELECT data FROM lists WHERE sweep=? AND list=? AND part=?`, r.id, r.k, r.part)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	var raw sql.RawBytes
	if err := rows.Scan(&raw); err != nil {
		return false, err
	}
	if len(raw) > listPart {
		return false, fmt.Errorf("list %d part %d of sweep %d holds %d bytes, more than %d (damaged?)", r.k, r.part, r.id, len(raw), listPart)
	}
	r.mem = append(r.mem[:0], raw...)
	r.buf = r.mem
	return true, rows.Close()
}

func (r *listReader) Close() error { return nil }
