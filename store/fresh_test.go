package store

import (
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// schemaOf describes s's schema: every table, view and index with its
// columns (name, type, NOT NULL, default, key) and indexes, the views'
// SQL, the statuses rows, the schema version and the header's stamps.
// The tables' SQL text is left out: a table renamed by a migration reads
// CREATE TABLE "results" where a new one reads CREATE TABLE results.
func schemaOf(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	q := func(query string, args ...any) [][]string {
		rows, err := s.db.Query(query, args...)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var all [][]string
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := make([]string, len(cols))
			for i, v := range vals {
				row[i] = fmt.Sprintf("%v:%q", v.Valid, v.String)
			}
			all = append(all, row)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return all
	}
	for _, obj := range q(`SELECT type, name, tbl_name, CASE WHEN type='view' THEN sql END FROM sqlite_schema
		WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`) {
		out = append(out, "object "+strings.Join(obj, " "))
		name := strings.TrimSuffix(strings.TrimPrefix(obj[1], `true:"`), `"`)
		for _, c := range q(`SELECT * FROM pragma_table_xinfo(?)`, name) {
			out = append(out, "  column "+strings.Join(c, " "))
		}
		for _, ix := range q(`SELECT seq, name, "unique", origin, partial FROM pragma_index_list(?) ORDER BY name`, name) {
			ixName := strings.TrimSuffix(strings.TrimPrefix(ix[1], `true:"`), `"`)
			// Automatic indexes are named by creation order; their columns say what they are.
			out = append(out, "  index "+ix[2]+" "+ix[3]+" "+ix[4])
			for _, c := range q(`SELECT * FROM pragma_index_xinfo(?)`, ixName) {
				out = append(out, "    "+strings.Join(c, " "))
			}
		}
	}
	for _, r := range q(`SELECT * FROM statuses ORDER BY code`) {
		out = append(out, "statuses "+strings.Join(r, " "))
	}
	for _, r := range q(`SELECT key, value FROM fanout_meta ORDER BY key`) {
		out = append(out, "meta "+strings.Join(r, " "))
	}
	for _, r := range q(`SELECT (SELECT application_id FROM pragma_application_id()), (SELECT user_version FROM pragma_user_version())`) {
		out = append(out, "header "+strings.Join(r, " "))
	}
	return out
}

// TestFreshSchema: a new file, made at freshVersion in one step
// (freshSchema), has the schema that the migrations from version 1 give a
// file made by an older fanout: the same tables, columns, defaults, keys,
// indexes, views and statuses. A column or table added by a migration
// and not to freshSchema (or the reverse) fails here.
func TestFreshSchema(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	freshPath, oldPath := dir+"/fresh.db", dir+"/old.db"
	fresh := mustOpen(t, freshPath)
	defer fresh.Close()

	// An old file: schema 1 as the first fanout made it, then migrated.
	old, err := open(oldPath, openOptions{create: true, schema: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := old.Schema(); v != 1 {
		t.Fatalf("old file at schema %d, want 1", v)
	}
	old.Close()
	migrated := mustOpen(t, oldPath)
	defer migrated.Close()

	a, b := schemaOf(t, fresh), schemaOf(t, migrated)
	if !slices.Equal(a, b) {
		t.Errorf("fresh schema (-) differs from the migrated one (+):\n%s", diffLines(a, b))
	}
	if v, _ := fresh.Schema(); v != currentVersion() {
		t.Errorf("fresh file at schema %d, want %d", v, currentVersion())
	}
	if len(a) < 40 {
		t.Errorf("schema description has %d lines: the test reads too little\n%s", len(a), strings.Join(a, "\n"))
	}
}

func diffLines(a, b []string) string {
	var sb strings.Builder
	for _, l := range a {
		if !slices.Contains(b, l) {
			sb.WriteString("- " + l + "\n")
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			sb.WriteString("+ " + l + "\n")
		}
	}
	return sb.String()
}

// TestFreshFileReadableAfterClose: a new file, created without an fsync,
// holds its sweep once closed, for another opener and for sqlite3-style
// readers of result_rows.
func TestFreshFileReadableAfterClose(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	s := mustOpen(t, path)
	var sync string
	// Every connection of the pool writes at synchronous=NORMAL (1): the
	// one that made the file without fsync was set back.
	conns := make([]*sql.Conn, 4)
	for i := range conns {
		c, err := s.db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		if err := c.QueryRowContext(t.Context(), `PRAGMA synchronous`).Scan(&sync); err != nil || sync != "1" {
			t.Errorf("connection %d: synchronous %q, %v; want 1 (NORMAL)", i, sync, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	rec, err := s.Record(testSpec(), Meta{Total: 3}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(3) {
		if err := rec.Write(result(i, "up", "")); err != nil {
			t.Fatal(err)
		}
	}
	if o, err := rec.Finish(); err != nil || o.State != Finished {
		t.Fatalf("Finish = %+v, %v", o, err)
	}
	s.Close()
	if _, err := os.Stat(path + "-journal"); !os.IsNotExist(err) {
		t.Errorf("rollback journal left beside the file: %v", err)
	}
	r, err := OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var n int
	if err := r.db.QueryRow(`SELECT COUNT(*) FROM result_rows WHERE sweep=1 AND status='up'`).Scan(&n); err != nil || n != 3 {
		t.Errorf("result_rows: %d up, %v; want 3", n, err)
	}
}
