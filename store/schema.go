package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"

	"github.com/fanout/fanout/job"
)

// applicationID marks a SQLite file as fanout's ("fnou"), so that a file
// from another program is told apart from an empty one.
const applicationID = 0x666e6f75

// migrations[i] brings a database from schema version i to i+1. Append only:
// a released step is never edited, a change is a new step (a field added to
// job.Fields with a Column adds its column here). The test build
// (-tags fanout_testfield) adds its extra field's column after them.
var migrations = append([]string{
	// 1: sweeps and their results.
	`CREATE TABLE fanout_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
	CREATE TABLE sweeps(
		id         INTEGER PRIMARY KEY,
		job        TEXT NOT NULL,
		spec       TEXT NOT NULL,           -- fanout.Spec as JSON: what resume rebuilds the sweep from
		total      INTEGER NOT NULL,        -- targets the sweep visits
		state      TEXT NOT NULL,           -- running | finished | interrupted
		reason     TEXT NOT NULL DEFAULT '',
		created_ns INTEGER NOT NULL
	);
	-- One B-tree, keyed by sweep<<40 | idx: no second index to maintain per
	-- insert, a duplicate (sweep, idx) is ignored, and a sweep's results are
	-- one contiguous range in index order. The view result_rows spells the key out.
	CREATE TABLE results(
		sweep_idx  INTEGER PRIMARY KEY,
		host       TEXT NOT NULL,
		addr       TEXT,                    -- NULL: same as host (binding NULL is cheaper than a string)
		port       INTEGER NOT NULL DEFAULT 0,
		status     TEXT NOT NULL,
		class      TEXT,                    -- NULL when up
		error      TEXT,
		rtt_ns     INTEGER NOT NULL DEFAULT 0,
		sent       INTEGER NOT NULL DEFAULT 0,
		recv       INTEGER NOT NULL DEFAULT 0,
		rtt_min_ns INTEGER NOT NULL DEFAULT 0,
		rtt_avg_ns INTEGER NOT NULL DEFAULT 0,
		rtt_max_ns INTEGER NOT NULL DEFAULT 0,
		exit_code  INTEGER,
		stdout     BLOB,
		stderr     BLOB,
		truncated  INTEGER NOT NULL DEFAULT 0,
		attempts   INTEGER NOT NULL DEFAULT 0,
		start_ns   INTEGER NOT NULL DEFAULT 0,
		end_ns     INTEGER NOT NULL DEFAULT 0,
		worker     TEXT                     -- NULL locally
	);`,

	// 2: runs (a sweep resumed n times has n+1), for durations and history;
	// a view for people who query the file with sqlite3.
	`CREATE TABLE runs(
		sweep    INTEGER NOT NULL,
		run      INTEGER NOT NULL,
		version  TEXT NOT NULL DEFAULT '',
		start_ns INTEGER NOT NULL,
		last_ns  INTEGER NOT NULL,          -- last commit: the end of a run that was killed
		end_ns   INTEGER,
		state    TEXT NOT NULL,
		reason   TEXT NOT NULL DEFAULT '',
		PRIMARY KEY(sweep, run)
	);
	INSERT INTO runs(sweep, run, start_ns, last_ns, end_ns, state, reason)
		SELECT id, 1, created_ns,
			COALESCE((SELECT MAX(end_ns) FROM results r WHERE r.sweep_idx BETWEEN sweeps.id<<40 AND (sweeps.id<<40)+1099511627775), created_ns),
			CASE WHEN state='running' THEN NULL ELSE COALESCE((SELECT MAX(end_ns) FROM results r
				WHERE r.sweep_idx BETWEEN sweeps.id<<40 AND (sweeps.id<<40)+1099511627775), created_ns) END,
			state, reason FROM sweeps;
	CREATE VIEW result_rows AS SELECT sweep_idx>>40 AS sweep, sweep_idx&1099511627775 AS idx, * FROM results;`,

	// 3: the lists of a sweep's "-" and @FILE targets, stored once beside
	// its spec (not inlined into its JSON), as read, 1 MiB a part.
	`CREATE TABLE lists(
		sweep INTEGER NOT NULL,
		list  INTEGER NOT NULL,             -- k-th "-" or @FILE entry of the spec (targets, then excludes)
		part  INTEGER NOT NULL,
		data  BLOB NOT NULL,
		PRIMARY KEY(sweep, list, part)
	);`,
}, testMigrations...)

// SchemaVersion is the schema this fanout writes.
const SchemaVersion = 3

func currentVersion() int { return len(migrations) }

// ResultColumn is a column of the results table and the field of
// job.Result it holds.
type ResultColumn struct {
	Name  string     // column of results
	Field *job.Field // the field of job.Fields it holds
	read  string     // what reads it back (select list expressions)
}

// ResultColumns are the columns of the results table that hold Result
// fields: one per field of job.Fields with a Column, in the table's order.
// A writer binds them, Results reads them back (TestResultFieldsStore
// checks both). The job kind is not among them: it is the sweep's.
func ResultColumns() []ResultColumn { return resultColumns }

var resultColumns = func() []ResultColumn {
	var cs []ResultColumn
	fs := job.Fields()
	for i := range fs {
		f := &fs[i]
		if f.Column == "" {
			continue
		}
		c := ResultColumn{Name: f.Column, Field: f}
		switch {
		case f.Column == "sweep_idx": // the key: sweep<<idxBits | index
			c.read = fmt.Sprintf("sweep_idx & %d", uint64(maxIdx))
		case f.Column == "addr": // NULL: the same as host
			c.read = "COALESCE(addr, host)"
		case f.Kind == job.KindString:
			c.read = "COALESCE(" + f.Column + ", '')"
		case f.Kind == job.KindOptInt:
			c.read = f.Column
		case f.Kind == job.KindBytes: // NULL (absent) told from empty, which scans as nil
			c.read = f.Column + ", " + f.Column + " IS NOT NULL"
		default: // integers, NOT NULL DEFAULT 0: numbers, durations (ns), bools, times (Unix ns, 0 when zero)
			c.read = f.Column
		}
		cs = append(cs, c)
	}
	return cs
}()

// idxBits is the width of a target index in a results key (sweep<<40 | idx):
// a trillion targets per sweep, 2^23 sweeps per file.
const idxBits = 40

const maxIdx = 1<<idxBits - 1

// inSweep is the SQL condition selecting sweep id's results, in index order.
func inSweep(id int64) string {
	return fmt.Sprintf("sweep_idx BETWEEN %d AND %d", id<<idxBits, id<<idxBits|maxIdx)
}

// fanoutTables are the tables that every fanout schema has: how a file made
// before fanout stamped its application_id is recognised.
var fanoutTables = []string{"fanout_meta", "sweeps", "results"}

// ident is what identify found.
type ident struct {
	version int  // schema version; 0 for a new, empty file
	stamped bool // application_id and user_version say so too
}

// needsWrite: the file is to be migrated or stamped.
func (id ident) needsWrite(target int) bool { return id.version < target || !id.stamped }

// setup brings the file to schema version target and stamps it as
// fanout's, writing only when there is something to write; a writer also
// switches it to WAL.
func (s *Store) setup(target int, writer bool) error {
	id, err := s.identify(s.db)
	if err != nil {
		return err
	}
	if !writer && !id.needsWrite(target) {
		return nil
	}
	if err := s.walMode(); err != nil {
		return err
	}
	if !id.needsWrite(target) {
		return nil
	}
	return s.migrate(target)
}

// migrate brings the file's schema to version target and stamps it, in one
// immediate transaction: two processes opening a new file at once do not
// both create it.
func (s *Store) migrate(target int) error {
	ctx := ctxBG()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.describe("open", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil) // BEGIN IMMEDIATE (the DSN's _txlock)
	if err != nil {
		return s.describe("migrate", err)
	}
	defer tx.Rollback()
	// Again under the write lock: another process may have migrated meanwhile.
	id, err := s.identify(tx)
	if err != nil || !id.needsWrite(target) {
		return err
	}
	version := id.version
	for ; version < target; version++ {
		if _, err := tx.Exec(migrations[version]); err != nil {
			return s.describe(fmt.Sprintf("migrate to schema version %d:", version+1), err)
		}
	}
	if err := setVersion(tx, version); err != nil {
		return s.describe("migrate", err)
	}
	if err := tx.Commit(); err != nil {
		return s.describe("migrate", err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// identify returns the file's schema version (0 for a new, empty file) or
// an error for a file that is not fanout's or is newer than this fanout. It
// only reads.
func (s *Store) identify(q queryer) (ident, error) {
	ctx := ctxBG()
	// One statement, one snapshot: a migration committing in between cannot
	// show us its tables without its application id.
	var appID, userVersion int64
	var tables, ours int
	if err := q.QueryRowContext(ctx, `SELECT (SELECT application_id FROM pragma_application_id()),
		(SELECT user_version FROM pragma_user_version()),
		(SELECT COUNT(*) FROM sqlite_schema WHERE type='table'),
		(SELECT COUNT(*) FROM sqlite_schema WHERE type='table' AND name IN (?, ?, ?))`,
		fanoutTables[0], fanoutTables[1], fanoutTables[2]).Scan(&appID, &userVersion, &tables, &ours); err != nil {
		return ident{}, s.describe("open", err)
	}
	switch {
	case appID == 0 && tables == 0:
		return ident{}, nil // a new or empty file: ours to initialize
	case appID == applicationID:
	case appID == 0 && ours == len(fanoutTables):
		// Made by a fanout that did not stamp its files yet: recognised
		// by its tables and schema version, stamped by the next writer.
	default:
		return ident{}, identityErrorf("%s is not a fanout database (an SQLite file of another program, application_id %#x, %d tables)", s.path, appID, tables)
	}
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM fanout_meta WHERE key='schema_version'`).Scan(&v)
	if err != nil {
		if appID == 0 {
			return ident{}, identityErrorf("%s is not a fanout database (an SQLite file of another program, with tables named like fanout's but no schema version: %v)", s.path, err)
		}
		return ident{}, identityErrorf("%s: fanout database without a schema version (damaged?): %v", s.path, err)
	}
	version, err := strconv.Atoi(v)
	if err != nil || version < 1 {
		return ident{}, identityErrorf("%s: fanout database with schema version %q (damaged?)", s.path, v)
	}
	if int64(version) < userVersion {
		version = int(min(userVersion, math.MaxInt32))
	}
	if version > len(migrations) {
		return ident{}, identityErrorf("%s has schema version %d, newer than this fanout understands (%d): use a newer fanout to read it", s.path, version, len(migrations))
	}
	return ident{version: version, stamped: appID == applicationID && userVersion == int64(version)}, nil
}

// identityError says what a file is when it is not a fanout database this
// fanout can use, as opposed to an error reading it.
type identityError struct{ msg string }

func (e *identityError) Error() string { return e.msg }

func identityErrorf(format string, a ...any) error {
	return &identityError{fmt.Sprintf(format, a...)}
}

// setVersion records schema version v: in fanout_meta (what older fanouts
// read), and in SQLite's header as application_id and user_version.
func setVersion(tx *sql.Tx, v int) error {
	if _, err := tx.Exec(fmt.Sprintf(`PRAGMA application_id = %d`, applicationID)); err != nil {
		return err
	}
	if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, v)); err != nil {
		return err
	}
	_, err := tx.Exec(`INSERT INTO fanout_meta(key, value) VALUES('schema_version', ?)
		ON CONFLICT(key) DO UPDATE SET value=excluded.value`, strconv.Itoa(v))
	return err
}

// Schema reports the file's schema version.
func (s *Store) Schema() (int, error) {
	var v string
	if err := s.db.QueryRow(`SELECT value FROM fanout_meta WHERE key='schema_version'`).Scan(&v); err != nil {
		return 0, s.describe("read schema version of", err)
	}
	return strconv.Atoi(v)
}
