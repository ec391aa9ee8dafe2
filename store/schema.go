package store

import (
	"time"

	"context"
	"database/sql"
	"database/sql/driver"
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

	// 4: per-sweep counts by status and class, kept by the writer in the
	// transaction that inserts the Results (fanout sweeps reads them, not
	// the results); result_rows fills addr in where it is NULL (same as host).
	`CREATE TABLE result_counts(
		sweep  INTEGER NOT NULL,
		status TEXT NOT NULL,
		class  TEXT NOT NULL DEFAULT '',    -- '' when up
		n      INTEGER NOT NULL,
		PRIMARY KEY(sweep, status, class)
	) WITHOUT ROWID;
	INSERT INTO result_counts(sweep, status, class, n)
		SELECT sweep_idx>>40, status, COALESCE(class, ''), COUNT(*) FROM results GROUP BY 1, 2, 3;
	DROP VIEW result_rows;
	CREATE VIEW result_rows AS SELECT sweep_idx>>40 AS sweep, sweep_idx&1099511627775 AS idx, sweep_idx,
		host, COALESCE(addr, host) AS addr, port, status, class, error, rtt_ns, sent, recv,
		rtt_min_ns, rtt_avg_ns, rtt_max_ns, exit_code, stdout, stderr, truncated, attempts,
		start_ns, end_ns, worker FROM results;`,

	// 5: the history of watches (see watch.go).
	watchSchema,

	// 6: the RTT's standard deviation (ping --count), in the view too.
	`ALTER TABLE results ADD COLUMN rtt_stddev_ns INTEGER NOT NULL DEFAULT 0;
	DROP VIEW result_rows;
	CREATE VIEW result_rows AS SELECT sweep_idx>>40 AS sweep, sweep_idx&1099511627775 AS idx, sweep_idx,
		host, COALESCE(addr, host) AS addr, port, status, class, error, rtt_ns, sent, recv,
		rtt_min_ns, rtt_avg_ns, rtt_max_ns, exit_code, stdout, stderr, truncated, attempts,
		start_ns, end_ns, worker, rtt_stddev_ns FROM results;`,

	// 7: compact results (what --db costs a sweep is per row and per bound
	// value): see compactSchema.
	compactSchema,
}, testMigrations...)

// freshSchema makes a new file at schema version freshVersion in one step:
// the tables as migrations 1 to freshVersion leave them, without building
// and copying the older ones (TestFreshSchema checks both give the same
// schema). It is what a first --db sweep pays before its first Result.
var freshSchema = `CREATE TABLE fanout_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
	CREATE TABLE sweeps(
		id         INTEGER PRIMARY KEY,
		job        TEXT NOT NULL,
		spec       TEXT NOT NULL,           -- fanout.Spec as JSON: what resume rebuilds the sweep from
		total      INTEGER NOT NULL,        -- targets the sweep visits
		state      TEXT NOT NULL,           -- running | finished | interrupted
		reason     TEXT NOT NULL DEFAULT '',
		created_ns INTEGER NOT NULL
	);
	CREATE TABLE runs(
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
	CREATE TABLE lists(
		sweep INTEGER NOT NULL,
		list  INTEGER NOT NULL,             -- k-th "-" or @FILE entry of the spec (targets, then excludes)
		part  INTEGER NOT NULL,
		data  BLOB NOT NULL,
		PRIMARY KEY(sweep, list, part)
	);
	CREATE TABLE result_counts(
		sweep  INTEGER NOT NULL,
		status TEXT NOT NULL,
		class  TEXT NOT NULL DEFAULT '',    -- '' when up
		n      INTEGER NOT NULL,
		PRIMARY KEY(sweep, status, class)
	) WITHOUT ROWID;
	` + watchSchema + `
	` + statusesSchema + `CREATE TABLE results` + resultsColumns + `;
	` + resultRowsView

// freshVersion is the schema freshSchema makes; later migrations (the
// test build's) run after it.
const freshVersion = 7

// compactSchema is schema step 7: results rows hold what a view cannot
// derive. An IPv4 host or addr is an INTEGER (a.b.c.d is a<<24|b<<16|c<<8|d:
// an integer binds without the copy a string costs), status and class are
// one code (statuses), and a value equal to another column is NULL
// (rtt_min/avg/max equal to rtt_ns, recv equal to sent); attempts defaults
// to 1, code to up's. An up ping Result binds 6 values of 21. result_rows
// shows rows as schema 6 stored them. Old rows are copied over, their IPv4
// hosts made integers by fanout_ipv4 (a function of fanout's, registered
// with the driver: the view and the tables never name it, so sqlite3 reads
// the file without it).
var compactSchema = statusesSchema + `INSERT OR IGNORE INTO statuses(status, class) SELECT DISTINCT status, COALESCE(class, '') FROM results;
	CREATE TABLE results7` + resultsColumns + `;
	INSERT INTO results7 SELECT sweep_idx, fanout_ipv4(host), CASE WHEN addr IS NULL THEN NULL ELSE fanout_ipv4(addr) END, port,
		(SELECT code FROM statuses s WHERE s.status = r.status AND s.class = COALESCE(r.class, '')),
		error, rtt_ns, sent, NULLIF(recv, sent), NULLIF(rtt_min_ns, rtt_ns), NULLIF(rtt_avg_ns, rtt_ns),
		NULLIF(rtt_max_ns, rtt_ns), exit_code, stdout, stderr, truncated, attempts, start_ns, end_ns, worker,
		rtt_stddev_ns FROM results r;
	DROP VIEW result_rows;
	DROP TABLE results;
	ALTER TABLE results7 RENAME TO results;
	` + resultRowsView

// statusesSchema creates statuses with the codes every file has.
const statusesSchema = `CREATE TABLE statuses(
		code   INTEGER PRIMARY KEY,
		status TEXT NOT NULL,
		class  TEXT NOT NULL DEFAULT '',    -- '' when up
		UNIQUE(status, class)
	);
	INSERT INTO statuses(code, status, class) VALUES(1, 'up', ''), (2, 'down', ''), (3, 'down', 'timeout'), (4, 'error', '');
	`

// resultsColumns are the columns of results since schema 7 (compactSchema).
const resultsColumns = `(
		sweep_idx     INTEGER PRIMARY KEY,
		host          NOT NULL,             -- TEXT, or an IPv4 address as an INTEGER (no type: no conversion)
		addr,                               -- NULL: same as host; TEXT or INTEGER as host
		port          INTEGER NOT NULL DEFAULT 0,
		code          INTEGER NOT NULL DEFAULT 1, -- statuses.code: status and class (1: up)
		error         TEXT,
		rtt_ns        INTEGER NOT NULL DEFAULT 0,
		sent          INTEGER NOT NULL DEFAULT 0,
		recv          INTEGER,              -- NULL: same as sent
		rtt_min_ns    INTEGER,              -- NULL: same as rtt_ns
		rtt_avg_ns    INTEGER,              -- NULL: same as rtt_ns
		rtt_max_ns    INTEGER,              -- NULL: same as rtt_ns
		exit_code     INTEGER,
		stdout        BLOB,
		stderr        BLOB,
		truncated     INTEGER NOT NULL DEFAULT 0,
		attempts      INTEGER NOT NULL DEFAULT 1,
		start_ns      INTEGER NOT NULL DEFAULT 0,
		end_ns        INTEGER NOT NULL DEFAULT 0,
		worker        TEXT,                 -- NULL locally
		rtt_stddev_ns INTEGER NOT NULL DEFAULT 0
	)`

// resultRowsView is the view result_rows since schema 7.
var resultRowsView = `CREATE VIEW result_rows AS SELECT sweep_idx>>40 AS sweep, sweep_idx&1099511627775 AS idx, sweep_idx,
		` + hostText("host") + ` AS host, ` + hostText("COALESCE(addr, host)") + ` AS addr, port,
		s.status AS status, NULLIF(s.class, '') AS class, error, rtt_ns, sent, COALESCE(recv, sent) AS recv,
		COALESCE(rtt_min_ns, rtt_ns) AS rtt_min_ns, COALESCE(rtt_avg_ns, rtt_ns) AS rtt_avg_ns,
		COALESCE(rtt_max_ns, rtt_ns) AS rtt_max_ns, exit_code, stdout, stderr, truncated, attempts,
		start_ns, end_ns, worker, rtt_stddev_ns FROM results JOIN statuses s USING (code);`

// hostText is SQL for the text of a host or addr column x: an IPv4
// address stored as an integer in dotted form, text as it is.
func hostText(x string) string {
	return `CASE WHEN typeof(` + x + `)='integer' THEN ((` + x + `)>>24)||'.'||(((` + x + `)>>16)&255)||'.'||(((` + x +
		`)>>8)&255)||'.'||((` + x + `)&255) ELSE ` + x + ` END`
}

// watchSchema is schema step 5: a watch, and its rounds, each a sweep.
const watchSchema = `CREATE TABLE watches(
		id          INTEGER PRIMARY KEY,
		key         TEXT NOT NULL UNIQUE,   -- SHA-256 of the spec: the same command line is the same watch
		spec        TEXT NOT NULL,          -- fanout.Spec as JSON
		every_ns    INTEGER NOT NULL,
		keep_ns     INTEGER NOT NULL DEFAULT 0,  -- retention by age (0: none)
		keep_rounds INTEGER NOT NULL DEFAULT 0,  -- retention by count (0: none)
		created_ns  INTEGER NOT NULL
	);
	-- Round n of watch w is sweep s (NULL while it is being created, or
	-- when it could not be: a full disk). The row comes first: a round
	-- number once used is never used again, even after kill -9.
	CREATE TABLE rounds(
		watch    INTEGER NOT NULL,
		round    INTEGER NOT NULL,
		sweep    INTEGER UNIQUE,
		due_ns   INTEGER NOT NULL,
		start_ns INTEGER NOT NULL,
		end_ns   INTEGER,                   -- NULL: running, or killed
		late     INTEGER NOT NULL DEFAULT 0,
		targets  INTEGER NOT NULL DEFAULT 0,
		up       INTEGER NOT NULL DEFAULT 0,
		down     INTEGER NOT NULL DEFAULT 0,
		error    INTEGER NOT NULL DEFAULT 0,
		changes  INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY(watch, round)
	);`

// SchemaVersion is the schema this fanout writes.
const SchemaVersion = 7

// column is one column of results and how a Writer takes it from a Result.
type column struct {
	name  string
	value func(r *job.Result, o *bindOpts) any // nil is NULL
	// dflt is the column's default in the table (nil: NULL); keep, that
	// the column has none and is always written.
	dflt any
	keep bool
	// holds are the job.Fields columns it stores, when not just name
	// (code holds status and class).
	holds []string
}

// bindOpts are what a column's value needs beside the Result.
type bindOpts struct {
	sweep     int64  // the key is sweep<<idxBits | index
	maxOutput int    // bytes of stdout and of stderr kept
	codes     *codes // status and class -> code, the batch's pairs interned
}

// columns are results' columns as a Writer fills them, in the table's
// order. They are spelled out where the store keeps a field its own way
// (compactSchema): the key, an IPv4 host as an integer, addr NULL when it is
// the host, status and class as one code, recv and the RTT statistics NULL
// when equal to sent and rtt_ns, attempts defaulting to 1, bounded output.
// Every other column of ResultColumns is bound as its Kind says
// (fieldColumns), so a field added to job.Fields is stored once its
// migration adds the column. A row holds and binds only what a Result has:
// an up ping Result binds 6 values (TestCompactRows).
var columns = fieldColumns([]column{
	{name: "sweep_idx", value: func(r *job.Result, o *bindOpts) any { return o.sweep<<idxBits | int64(r.Index) }, keep: true},
	{name: "host", value: func(r *job.Result, _ *bindOpts) any { return hostValue(r.Host) }, keep: true},
	{name: "addr", value: func(r *job.Result, _ *bindOpts) any {
		if r.Addr == r.Host {
			return nil
		}
		return hostValue(r.Addr)
	}},
	{name: "port", value: func(r *job.Result, _ *bindOpts) any { return int64(r.Port) }, dflt: int64(0)},
	{name: "code", value: func(r *job.Result, o *bindOpts) any { return o.codes.code(r.Status, r.Class) },
		dflt: int64(upCode), holds: []string{"status", "class"}},
	{name: "error", value: func(r *job.Result, _ *bindOpts) any { return nullString(r.Error) }},
	{name: "rtt_ns", value: func(r *job.Result, _ *bindOpts) any { return int64(r.RTT) }, dflt: int64(0)},
	{name: "sent", value: func(r *job.Result, _ *bindOpts) any { return int64(r.Sent) }, dflt: int64(0)},
	{name: "recv", value: func(r *job.Result, _ *bindOpts) any { return unless(r.Recv == r.Sent, int64(r.Recv)) }},
	{name: "rtt_min_ns", value: func(r *job.Result, _ *bindOpts) any { return unless(r.RTTMin == r.RTT, int64(r.RTTMin)) }},
	{name: "rtt_avg_ns", value: func(r *job.Result, _ *bindOpts) any { return unless(r.RTTAvg == r.RTT, int64(r.RTTAvg)) }},
	{name: "rtt_max_ns", value: func(r *job.Result, _ *bindOpts) any { return unless(r.RTTMax == r.RTT, int64(r.RTTMax)) }},
	{name: "exit_code", value: func(r *job.Result, _ *bindOpts) any {
		if r.ExitCode == nil {
			return nil
		}
		return int64(*r.ExitCode)
	}},
	{name: "stdout", value: func(r *job.Result, o *bindOpts) any { return bounded(r.Stdout, o.maxOutput) }},
	{name: "stderr", value: func(r *job.Result, o *bindOpts) any { return bounded(r.Stderr, o.maxOutput) }},
	{name: "truncated", value: func(r *job.Result, o *bindOpts) any {
		if r.Truncated || len(r.Stdout) > o.maxOutput || len(r.Stderr) > o.maxOutput {
			return int64(1)
		}
		return int64(0)
	}, dflt: int64(0)},
	{name: "attempts", value: func(r *job.Result, _ *bindOpts) any { return int64(r.Attempts) }, dflt: int64(1)},
	{name: "start_ns", value: func(r *job.Result, _ *bindOpts) any { return unixNano(r.Start) }, dflt: int64(0)},
	{name: "end_ns", value: func(r *job.Result, _ *bindOpts) any { return unixNano(r.End) }, dflt: int64(0)},
	{name: "worker", value: func(r *job.Result, _ *bindOpts) any { return nullString(r.Worker) }},
})

// fieldColumns is cs and, after them, a column for every field of
// ResultColumns that cs does not hold, bound by the field's Kind: integers,
// durations (ns), bools and times (Unix ns) NOT NULL DEFAULT 0, strings and
// bytes NULL when empty.
func fieldColumns(cs []column) []column {
	held := map[string]bool{}
	for _, c := range cs {
		held[c.name] = true
		for _, h := range c.holds {
			held[h] = true
		}
	}
	for _, rc := range ResultColumns() {
		if held[rc.Field.Column] {
			continue
		}
		f := rc.Field
		c := column{name: rc.Name, dflt: int64(0)}
		switch f.Kind {
		case job.KindUint:
			c.value = func(r *job.Result, _ *bindOpts) any { return int64(*f.Ptr(r).(*uint64)) }
		case job.KindInt:
			c.value = func(r *job.Result, _ *bindOpts) any { return int64(*f.Ptr(r).(*int)) }
		case job.KindDuration:
			c.value = func(r *job.Result, _ *bindOpts) any { return int64(*f.Ptr(r).(*time.Duration)) }
		case job.KindBool:
			c.value = func(r *job.Result, _ *bindOpts) any {
				if *f.Ptr(r).(*bool) {
					return int64(1)
				}
				return int64(0)
			}
		case job.KindTime:
			c.value = func(r *job.Result, _ *bindOpts) any { return unixNano(*f.Ptr(r).(*time.Time)) }
		case job.KindString:
			c.dflt = nil
			c.value = func(r *job.Result, _ *bindOpts) any { return nullString(*f.Ptr(r).(*string)) }
		case job.KindOptInt:
			c.dflt = nil
			c.value = func(r *job.Result, _ *bindOpts) any {
				if p := *f.Ptr(r).(**int); p != nil {
					return int64(*p)
				}
				return nil
			}
		case job.KindBytes:
			c.dflt = nil
			c.value = func(r *job.Result, o *bindOpts) any { return bounded(*f.Ptr(r).(*[]byte), o.maxOutput) }
		default:
			panic("store: no column binding for field " + f.Name + " of kind " + f.Kind.String())
		}
		cs = append(cs, c)
	}
	return cs
}

// upCode is the code of status up (no class): the default, so that a batch
// of up Results binds no code.
const upCode = 1

// unless is v, or NULL when same (v equals the column NULL stands for).
func unless(same bool, v int64) any {
	if same {
		return nil
	}
	return v
}

// hostValue is how a host or addr is stored: a dotted-quad IPv4 address
// in its canonical form (what target sets produce) as an integer, anything
// else as text. hostOf reads either back.
func hostValue(h string) any {
	if v, ok := parseIPv4(h); ok {
		return v
	}
	return h
}

// parseIPv4 is h as an integer if h is a.b.c.d with each part in 0-255
// and no leading zero (so that formatting it gives h back).
func parseIPv4(h string) (int64, bool) {
	if len(h) < 7 || len(h) > 15 {
		return 0, false
	}
	var v, part int64
	digits, dots := 0, 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && part == 0 {
				return 0, false // a leading zero
			}
			part = part*10 + int64(c-'0')
			digits++
			if part > 255 {
				return 0, false
			}
		case c == '.' && digits > 0 && dots < 3:
			v, part, digits = v<<8|part, 0, 0
			dots++
		default:
			return 0, false
		}
	}
	if dots != 3 || digits == 0 {
		return 0, false
	}
	return v<<8 | part, true
}

// formatIPv4 is the dotted form of v, an address parseIPv4 made.
func formatIPv4(v int64) string {
	b := make([]byte, 0, 15)
	for shift := 24; shift >= 0; shift -= 8 {
		b = strconv.AppendInt(b, v>>shift&255, 10)
		if shift > 0 {
			b = append(b, '.')
		}
	}
	return string(b)
}

// nullString is s, or NULL when empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// bounded is b cut at max bytes, as a blob; nil (no output) is NULL, an
// empty output an empty blob.
func bounded(b []byte, max int) any {
	if b == nil {
		return nil
	}
	return b[:min(len(b), max)]
}

func currentVersion() int { return len(migrations) }

// ResultColumn is a column of the results table and the field of
// job.Result it holds.
type ResultColumn struct {
	Name  string     // column of results (status and class: code)
	Field *job.Field // the field of job.Fields it holds
	read  string     // what reads it back (select list expressions)
	dec   decoding   // how scan turns what it read into the field
}

// decoding is how scan turns a column it read into a field.
type decoding uint8

const (
	asKind   decoding = iota // as the field's Kind says
	asHost                   // text, or an IPv4 address as an integer (hostOf)
	asStatus                 // the status of a code (statuses)
	asClass                  // the class of a code
)

// storedAs is how the store keeps the fields that columns spells out, by
// their job.Fields column, where reading them back is more than reading
// their column: which column holds it, the SQL that reads it, how scan
// decodes it.
var storedAs = map[string]struct {
	col, read string
	dec       decoding
}{
	"sweep_idx":  {read: fmt.Sprintf("sweep_idx & %d", uint64(maxIdx))}, // the key: sweep<<idxBits | index
	"host":       {read: "host", dec: asHost},
	"addr":       {read: "COALESCE(addr, host)", dec: asHost}, // NULL: the same as host
	"status":     {col: "code", read: "code", dec: asStatus},
	"class":      {col: "code", read: "code", dec: asClass},
	"recv":       {read: "COALESCE(recv, sent)"},
	"rtt_min_ns": {read: "COALESCE(rtt_min_ns, rtt_ns)"},
	"rtt_avg_ns": {read: "COALESCE(rtt_avg_ns, rtt_ns)"},
	"rtt_max_ns": {read: "COALESCE(rtt_max_ns, rtt_ns)"},
}

// ResultColumns are the columns of the results table that hold Result
// fields: one per field of job.Fields with a Column, in the table's order
// (status and class are both in code). A writer binds them, Results reads
// them back (TestResultFieldsStore checks both). The job kind is not among
// them: it is the sweep's.
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
		if as, ok := storedAs[f.Column]; ok {
			if as.col != "" {
				c.Name = as.col
			}
			c.read, c.dec = as.read, as.dec
			cs = append(cs, c)
			continue
		}
		switch f.Kind {
		case job.KindString:
			c.read = "COALESCE(" + f.Column + ", '')"
		case job.KindBytes: // NULL (absent) told from empty, which scans as nil
			c.read = f.Column + ", " + f.Column + " IS NOT NULL"
		default: // integers, NOT NULL DEFAULT 0: numbers, durations (ns), bools, times (Unix ns, 0 when zero); an optional int
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
	if id.version == 0 && target >= freshVersion {
		return s.create(target)
	}
	if err := s.walMode(s.db); err != nil {
		return err
	}
	if !id.needsWrite(target) {
		return nil
	}
	conn, err := s.db.Conn(ctxBG())
	if err != nil {
		return s.describe("open", err)
	}
	defer conn.Close()
	return s.migrate(conn, target)
}

// create makes a new (empty) file a fanout database at schema version
// target, without an fsync: the file holds nothing yet, and the first
// checkpoint of the sweep that writes it (or its close) syncs it with its
// first Results. A kill -9 loses nothing the process wrote (the kernel
// has it); a power cut before that first checkpoint may leave a file
// that holds no sweep, or that SQLite refuses: the sweep it was to hold
// never had a committed Result on disk. Syncing here took three fsyncs
// (rollback journal, its directory, the file) and a fourth for the WAL's
// header, 20-40 ms before a sweep's first target on a shared disk.
func (s *Store) create(target int) error {
	ctx := ctxBG()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.describe("open", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous=OFF`); err != nil {
		return s.describe("open", err)
	}
	// Back to the DSN's NORMAL before the pool hands the connection out
	// again; if that fails, the connection is not reused.
	defer func() {
		if _, err := conn.ExecContext(ctx, `PRAGMA synchronous=NORMAL`); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if err := s.walMode(conn); err != nil {
		return err
	}
	return s.migrate(conn, target)
}

// migrate brings the file's schema to version target and stamps it, in one
// immediate transaction: two processes opening a new file at once do not
// both create it. A new file is made at freshVersion in one step.
func (s *Store) migrate(conn *sql.Conn, target int) error {
	tx, err := conn.BeginTx(ctxBG(), nil) // BEGIN IMMEDIATE (the DSN's _txlock)
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
	if version == 0 && target >= freshVersion {
		if _, err := tx.Exec(freshSchema); err != nil {
			return s.describe(fmt.Sprintf("create schema version %d in", freshVersion), err)
		}
		version = freshVersion
	}
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
