package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
)

// scanCounts tallies sweep id's rows themselves, as the old Counts did.
func scanCounts(t *testing.T, s *Store, id int64) map[string]uint64 {
	t.Helper()
	rows, err := s.db.Query(`SELECT status || '/' || COALESCE(class, ''), COUNT(*) FROM result_rows WHERE ` + inSweep(id) + ` GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]uint64{}
	for rows.Next() {
		var k string
		var n uint64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		m[k] = n
	}
	return m
}

// storedCounts is sweep id's result_counts, keyed like scanCounts.
func storedCounts(t *testing.T, s *Store, id int64) map[string]uint64 {
	t.Helper()
	rows, err := s.db.Query(`SELECT status || '/' || class, n FROM result_counts WHERE sweep=? AND n>0`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]uint64{}
	for rows.Next() {
		var k string
		var n uint64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		m[k] = n
	}
	return m
}

// TestStoredCounts: the writer keeps each sweep's counts by status and
// class as it inserts, duplicates (a redelivered task, two writers of one
// sweep) not counted, and Counts answers from them without reading the
// Results. The old store had no stored counts: Counts scanned every row.
func TestStoredCounts(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 3000})
	other, _ := s.CreateSweep(testSpec(), Meta{Total: 10})
	kinds := []struct {
		st job.Status
		cl job.Class
	}{{job.Up, ""}, {job.Down, job.ClassTimeout}, {job.Down, job.ClassRefused}, {job.Error, job.ClassResolve}}
	write := func(sweep int64, batch int, from, to uint64) uint64 {
		w, err := s.NewWriter(sweep, WriterOptions{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			k := kinds[i%uint64(len(kinds))]
			if err := w.Write(result(i, k.st, k.cl)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return w.Written()
	}
	if n := write(id, 100, 0, 2000); n != 2000 {
		t.Fatalf("written %d, want 2000", n)
	}
	// Overlapping the first: 1000 of these are stored already.
	if n := write(id, 128, 1000, 3000); n != 1000 {
		t.Fatalf("written %d of an overlapping run, want the 1000 new", n)
	}
	write(other, 0, 0, 10)
	want := scanCounts(t, s, id)
	if got := storedCounts(t, s, id); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored counts %v, want %v (counted from the rows)", got, want)
	}
	c, err := s.Counts(id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Done != 3000 || c.Up != 750 || c.Down != 1500 || c.Errors != 750 || c.Classes["timeout"] != 750 || c.Classes["resolve"] != 750 {
		t.Errorf("Counts = %+v", c)
	}
	// Counts reads the stored counts, not the rows: rows removed behind
	// its back do not change it.
	if _, err := s.db.Exec(`DELETE FROM results WHERE ` + inSweep(id)); err != nil {
		t.Fatal(err)
	}
	if c2, _ := s.Counts(id); c2.Done != 3000 {
		t.Errorf("Counts after the rows were deleted by hand: %d, want the stored 3000", c2.Done)
	}
	if c3, _ := s.Counts(other); c3.Done != 10 {
		t.Errorf("the other sweep: %d, want 10", c3.Done)
	}
}

// TestMigrateToCounts: a schema-3 file (Results, no stored counts, addr
// NULL where it is the host) is migrated: its counts are filled from its
// rows, and result_rows shows the host as the address.
func TestMigrateToCounts(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	old, err := open(path, openOptions{create: true, schema: 3})
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(testSpec())
	for _, q := range []string{
		`INSERT INTO sweeps(id, job, spec, total, state, reason, created_ns) VALUES(1,'tcp',?,4,'finished','',1), (2,'tcp',?,1,'finished','',1)`,
		`INSERT INTO runs(sweep, run, start_ns, last_ns, end_ns, state) VALUES(1,1,1,2,2,'finished'), (2,1,1,2,2,'finished')`,
		`INSERT INTO results(sweep_idx, host, addr, status, class) VALUES
			(1<<40, 'a', NULL, 'up', NULL), ((1<<40)+1, 'b', '127.0.0.2', 'down', 'timeout'),
			((1<<40)+2, 'c', NULL, 'down', 'timeout'), ((1<<40)+3, 'd', NULL, 'error', 'resolve'), (2<<40, 'e', NULL, 'up', NULL)`,
	} {
		args := []any{}
		if strings.Contains(q, "INTO sweeps") {
			args = []any{string(spec), string(spec)}
		}
		if _, err := old.db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	s := mustOpen(t, path)
	if v, _ := s.Schema(); v != currentVersion() {
		t.Fatalf("schema %d after migration, want %d", v, currentVersion())
	}
	c, err := s.Counts(1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Done != 4 || c.Up != 1 || c.Down != 2 || c.Errors != 1 || c.Classes["timeout"] != 2 {
		t.Errorf("migrated counts: %+v", c)
	}
	if c, _ := s.Counts(2); c.Done != 1 {
		t.Errorf("sweep 2: %+v", c)
	}
	var addrs []string
	rows, err := s.db.Query(`SELECT addr FROM result_rows WHERE sweep=1 ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a sql.NullString
		rows.Scan(&a)
		addrs = append(addrs, fmt.Sprintf("%v/%s", a.Valid, a.String))
	}
	rows.Close()
	if got := strings.Join(addrs, " "); got != "true/a true/127.0.0.2 true/c true/d" {
		t.Errorf("result_rows addr: %s", got)
	}
	// New Results add to the migrated counts.
	w, _ := s.NewWriter(1, WriterOptions{})
	w.Write(result(9, job.Up, ""))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Counts(1); c.Done != 5 || c.Up != 2 {
		t.Errorf("after a write: %+v", c)
	}
}

// TestColumnsMatchTable: the writer's column list names every column of
// results, and its defaults are the table's: a column left out of an
// insert (at its default in the whole batch) reads back as written.
func TestColumnsMatchTable(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	rows, err := s.db.Query(`SELECT name, "notnull", COALESCE(dflt_value, 'NULL'), pk FROM pragma_table_info('results') ORDER BY cid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var name, dflt string
		var notNull, pk bool
		if err := rows.Scan(&name, &notNull, &dflt, &pk); err != nil {
			t.Fatal(err)
		}
		if i >= len(columns) || columns[i].name != name {
			t.Fatalf("table column %d is %s; the writer's list does not have it there", i, name)
		}
		c := columns[i]
		switch {
		case pk || (notNull && dflt == "NULL"):
			if !c.keep {
				t.Errorf("%s: no default in the table, want keep", name)
			}
		case c.keep:
			t.Errorf("%s: keep, but the table has a default (%s)", name, dflt)
		case dflt == "NULL" && c.dflt != nil, dflt != "NULL" && fmt.Sprint(c.dflt) != dflt:
			t.Errorf("%s: writer's default %v, table's %s", name, c.dflt, dflt)
		}
		i++
	}
	if i != len(columns) {
		t.Errorf("the writer lists %d columns, the table has %d", len(columns), i)
	}
}

// TestRecorder: Record, a run cut short (interrupted, and why), Resume
// (what is done, under the run lock, refused to a second Store), then
// the rest (finished).
func TestRecorder(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s := mustOpen(t, path)
	rec, err := s.Record(testSpec(), Meta{Total: 50, Version: "v1"}, WriterOptions{Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 20; i++ {
		if err := rec.Write(result(i, job.Up, "")); err != nil {
			t.Fatal(err)
		}
	}
	o, err := rec.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if o.State != Interrupted || o.Done != 20 || o.Total != 50 || o.Reason != "stopped with 20 of 50 targets done" {
		t.Errorf("outcome %+v", o)
	}
	if sw, _ := s.Sweep(rec.ID()); sw.State != Interrupted || sw.Reason != o.Reason {
		t.Errorf("sweep %+v", sw)
	}

	rec2, done, err := s.Resume(rec.ID(), 50, "v2", WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if done.Count() != 20 || !done.Has(19) || done.Has(20) {
		t.Errorf("done: %d", done.Count())
	}
	other := mustOpen(t, path)
	if _, _, err := other.Resume(rec.ID(), 50, "v3", WriterOptions{}); !errors.Is(err, ErrSweepRunning) {
		t.Errorf("a second Resume while the first runs: %v, want ErrSweepRunning", err)
	}
	for i := uint64(0); i < 50; i++ {
		if !done.Has(i) {
			rec2.Write(result(i, job.Down, job.ClassTimeout))
		}
	}
	rec2.Close()
	o, err = rec2.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if o.State != Finished || o.Done != 50 || o.Reason != "" {
		t.Errorf("outcome %+v", o)
	}
	sw, _ := s.Sweep(rec.ID())
	if sw.State != Finished || sw.Runs != 2 || sw.Version != "v2" {
		t.Errorf("sweep %+v", sw)
	}
	// The lock is released: another Store may resume (nothing to do).
	if r3, _, err := other.Resume(rec.ID(), 50, "v3", WriterOptions{}); err != nil {
		t.Errorf("Resume after Finish: %v", err)
	} else {
		r3.Finish()
	}
}
