package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
)

// TestResultFieldsStore: every field of job.Fields with a store column is
// a column of the results table, the Writer writes it and Results reads it
// back as it was (the job kind, not stored per row, is the sweep's). With
// -tags fanout_testfield the table has an extra field, whose column the
// test build's migration adds: the read path picks it up from the table;
// a writer that binds a list of its own misses it, and this test says so.
func TestResultFieldsStore(t *testing.T) {
	// Not parallel: the test build keeps its extra field beside the
	// Result, by index, and these tests share indexes.
	s := mustOpen(t, tmpDB(t))
	spec := testSpec()
	id, err := s.CreateSweep(spec, Meta{Total: 1 << 21})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The schema has every column.
	have := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM pragma_table_info('results')`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		have[n] = true
	}
	rows.Close()
	fs := job.Fields()
	stored := 0
	for k := range fs {
		if fs[k].Column != "" {
			stored++
		}
	}
	for _, c := range ResultColumns() {
		if !have[c.Name] {
			t.Errorf("store schema: no column %s for field %s: add a migration (schema.go)", c.Name, c.Field.Name)
		}
	}
	if len(ResultColumns()) != stored {
		t.Errorf("ResultColumns has %d columns, job.Fields %d stored fields", len(ResultColumns()), stored)
	}
	if t.Failed() {
		return
	}

	// The read path: a row inserted column by column from ResultColumns.
	// What each Result was, by index, before it was stored: the job kind is
	// the sweep's.
	want := map[uint64][]string{}
	path := map[uint64]string{}
	keep := func(r *job.Result, how string) {
		r.Job = spec.Job
		want[r.Index], path[r.Index] = jobtest.FieldValues(r), how
	}
	byHand := jobtest.FullResult(31)
	keep(&byHand, "read path")
	var names, marks []string
	var args []any
	for _, c := range ResultColumns() {
		if c.Name == "code" {
			if c.dec == asStatus { // status and class: one code, once
				names, marks = append(names, c.Name), append(marks, "?")
				args = append(args, statusCode(t, s, byHand.Status, byHand.Class))
			}
			continue
		}
		names, marks = append(names, c.Name), append(marks, "?")
		args = append(args, columnValue(c, &byHand, id))
	}
	if _, err := s.db.Exec(`INSERT INTO results(`+strings.Join(names, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`, args...); err != nil {
		t.Fatal(err)
	}
	jobtest.ZeroFields(&byHand)

	// The write path: the Writer.
	written := []job.Result{jobtest.FullResult(32), jobtest.FullResult(33)}
	written[1].Stdout, written[1].ExitCode, written[1].Addr = []byte{}, nil, written[1].Host // empty, absent, the host's
	for i := range written {
		keep(&written[i], "writer")
	}
	w, err := s.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range written {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range ResultColumns() {
		var null bool
		if err := s.db.QueryRow(`SELECT `+c.Name+` IS NULL FROM results WHERE sweep_idx=?`, id<<idxBits|int64(written[0].Index)).Scan(&null); err != nil {
			t.Fatal(err)
		}
		if null {
			t.Errorf("store writer (writer.go): column %s of field %s not written: bind every column of ResultColumns", c.Name, c.Field.Name)
		}
	}

	for i := range written {
		jobtest.ZeroFields(&written[i])
	}
	n := 0
	err = s.Results(ctx, id, Query{}, func(got job.Result) error {
		n++
		w, ok := want[got.Index]
		if !ok {
			t.Fatalf("read back a result of index %d", got.Index)
		}
		for _, d := range jobtest.SameFields(w, &got) {
			t.Errorf("store (%s): result %d: %s", path[got.Index], got.Index, d)
		}
		return nil
	})
	if err != nil || n != len(want) {
		t.Fatalf("read %d results, want %d: %v", n, len(want), err)
	}
}

// statusCode is the code of status st and class cl in s's statuses table,
// added if it is not there.
func statusCode(t *testing.T, s *Store, st job.Status, cl job.Class) int64 {
	t.Helper()
	if _, err := s.db.Exec(`INSERT OR IGNORE INTO statuses(status, class) VALUES(?, ?)`, string(st), string(cl)); err != nil {
		t.Fatal(err)
	}
	var code int64
	if err := s.db.QueryRow(`SELECT code FROM statuses WHERE status=? AND class=?`, string(st), string(cl)).Scan(&code); err != nil {
		t.Fatal(err)
	}
	return code
}

// columnValue is what column c holds for r: the store's encoding of each
// Kind (integers, nanoseconds, Unix nanoseconds, NULL for absent).
func columnValue(c ResultColumn, r *job.Result, sweep int64) any {
	if c.Name == "sweep_idx" {
		return sweep<<idxBits | int64(r.Index)
	}
	switch p := c.Field.Ptr(r).(type) {
	case *uint64:
		return int64(*p)
	case *int:
		return int64(*p)
	case *string:
		return *p
	case *time.Duration:
		return int64(*p)
	case **int:
		if *p == nil {
			return nil
		}
		return int64(**p)
	case *[]byte:
		return *p
	case *bool:
		if *p {
			return 1
		}
		return 0
	case *time.Time:
		return p.UnixNano()
	}
	panic("columnValue: field " + c.Field.Name)
}
