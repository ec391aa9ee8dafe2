// Package store keeps sweeps and their Results in one SQLite file (pure Go,
// modernc.org/sqlite, so fanout stays cgo-free): the sweep's Spec, one row
// per target Result, and which runs wrote them. The database is the
// checkpoint of a sweep: a Result is either committed or will be redone by
// resume, never half there.
//
// Durability: WAL with synchronous=NORMAL. A committed batch survives a
// kill -9 of fanout; a power cut may roll back the last batches (never
// corrupt the file), and resume redoes what they held. A new file is made
// without fsync (see create): the first checkpoint of its first sweep
// syncs it, so a power cut before that may leave a file to delete.
//
// The file is plain SQLite, readable with sqlite3 (schema version 7):
//
//	sweeps(id, job, spec, total, state, reason, created_ns)  -- spec: spec.Spec as JSON
//	lists(sweep, list, part, data)  -- the lines of the spec's "-" and @FILE targets
//	runs(sweep, run, version, start_ns, last_ns, end_ns, state, reason)
//	results(sweep_idx, host, addr, port, code, error, rtt_ns, sent, recv,
//	        rtt_min_ns, rtt_avg_ns, rtt_max_ns, exit_code, stdout, stderr, truncated,
//	        attempts, start_ns, end_ns, worker, rtt_stddev_ns)  -- compact: see compactSchema
//	statuses(code, status, class)  -- results.code
//	result_counts(sweep, status, class, n)  -- kept as Results are written
//	result_rows(sweep, idx, sweep_idx, host, addr, port, status, class, error,
//	        rtt_ns, sent, recv, rtt_min_ns, rtt_avg_ns, rtt_max_ns, exit_code,
//	        stdout, stderr, truncated, attempts, start_ns, end_ns, worker,
//	        rtt_stddev_ns)  -- results spelled out: what to query
//	watches(id, key, spec, every_ns, keep_ns, keep_rounds, created_ns)
//	rounds(watch, round, sweep, due_ns, start_ns, end_ns, late, targets, up, down, error, changes)
//	  -- round n of a watch is a sweep (see watch.go)
//
// for example: sqlite3 scan.db "SELECT host, rtt_ns/1e6 FROM result_rows
// WHERE sweep=1 AND status='up' ORDER BY rtt_ns DESC LIMIT 10". In
// result_rows NULL class, error and worker mean empty. The header
// says whose the file is: application_id 0x666e6f75 ("fnou"), user_version
// the schema version (also in fanout_meta, where older fanouts read it).
//
// Beside it: SQLite's FILE-wal and FILE-shm, and FILE-lock, the run locks
// that keep one process per sweep (see LockSweep). All are mode 0600.
//
// Secrets: a Spec holds no credential by design (ssh takes them from the
// agent, key files or the environment at run time), and option values under
// names like password, passphrase, secret or token are blanked before a Spec
// is written. What the user typed as a command (exec's argv) is stored as is.
package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fanout/fanout/spec"
)

// ErrNoSweep is returned (wrapped) for a sweep id that is not in the file.
var ErrNoSweep = errors.New("no such sweep")

// State is where a sweep stands.
type State string

const (
	// Running: a run is writing, or was killed before it could say otherwise.
	Running State = "running"
	// Finished: every target of the sweep has a Result.
	Finished State = "finished"
	// Interrupted: stopped by the user (Ctrl-C) or a failure; resumable.
	Interrupted State = "interrupted"
)

// Store is one open fanout database.
type Store struct {
	db   *sql.DB
	path string
	lock runLock // run locks of the sweeps this Store runs
}

// Meta is what CreateSweep records beside the Spec.
type Meta struct {
	Total   uint64    // targets the sweep visits (its Order's length)
	Version string    // fanout version that runs it
	Start   time.Time // zero means now
	// Lists are the contents of the Spec's "-" and @FILE entries, one
	// reader per entry in the order they appear (Targets, then Excludes),
	// as the sweep read them. They are stored once, part by part, and read
	// back with List: resume needs neither the files nor a copy of the
	// list in the Spec.
	Lists []io.Reader
}

// listPart is the size of the parts a list is stored in.
const listPart = 1 << 20

// Sweep is a recorded sweep.
type Sweep struct {
	ID      int64
	Spec    spec.Spec
	Total   uint64 // targets the sweep visits
	State   State
	Reason  string // why it stopped, when Interrupted
	Version string // fanout version of the last run
	Start   time.Time
	End     time.Time     // end (or last commit) of the last run
	Elapsed time.Duration // summed over runs: time spent sweeping
	Runs    int           // 1 + times resumed
}

// Counts are a sweep's stored Results by status and error class.
type Counts struct {
	Done    uint64
	Up      uint64
	Down    uint64
	Errors  uint64
	Classes map[string]uint64 // class -> count, for non-up Results
}

// Open opens the fanout database at path, creating it (mode 0600, whatever
// the umask; its -wal and -shm files get the same) when it does not exist and
// migrating an older schema. It refuses, before writing anything to it or
// beside it, a file that is not a fanout database and one from a newer
// fanout. The path is a file name, never a URI: "a?mode=memory.db" is the
// file of that name.
func Open(path string) (*Store, error) {
	return open(path, openOptions{create: true, schema: currentVersion()})
}

// OpenExisting is Open for readers: a missing file is an error, not a new
// database, and a file this process may not write (on a read-only file
// system, or a read-only file of another user) is opened read-only, without
// writing to it or creating files beside it. Such a Store only reads.
func OpenExisting(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, unwrapPathError(err))
	}
	return open(path, openOptions{schema: currentVersion()})
}

// sqliteMagic starts every SQLite 3 database file.
var sqliteMagic = []byte("SQLite format 3\x00")

type openOptions struct {
	create   bool // create the file when missing; a writer
	readOnly bool // open read-only even when the file is writable (tests: root ignores file modes)
	schema   int  // migrate up to this version
}

func open(path string, o openOptions) (*Store, error) {
	h, err := checkFile(path, o.create)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path}
	var werr error // why this process may not write the file, if it may not
	if !o.readOnly {
		werr = canWrite(path)
	}
	ro := o.readOnly || !o.create && werr != nil
	if ro || werr != nil || h.size > 0 && h.appID == 0 {
		// A file that may be another program's (or that we may not write)
		// is identified by a connection that writes nothing, in the file
		// or beside it, before any write: refused, it is left as it was.
		id, err := s.probe()
		var ie *identityError
		switch {
		case err != nil && !ro && werr == nil && !errors.As(err, &ie):
			// Could not look without writing (a -wal without its -shm,
			// say): the connection below identifies it before it writes.
		case err != nil:
			return nil, err
		case !ro && werr != nil:
			s.db.Close()
			return nil, fmt.Errorf("open %s: database is read-only (%w): a sweep writes it and files beside it (-wal, -shm, -lock); fanout sweeps, results, report and diff read it as it is", path, werr)
		case ro && id.version < o.schema:
			s.db.Close()
			return nil, s.cannotUpgrade(id.version, o.schema)
		case ro:
			return s, nil
		default:
			s.db.Close()
		}
	}
	// One connection per *sql.DB would serialize readers behind the writer;
	// WAL lets them run side by side, and busy_timeout waits out the writer lock.
	// 16 KiB pages cost the writer less per Result than 4 KiB (fewer pages
	// to allocate, split and log) and than 64 KiB (a commit logs each page
	// it touches whole: its last leaf, the runs and counts pages;
	// BenchmarkWriter/ordered, 14% more CPU per Result at 64 KiB, 4 and
	// 8 KiB within noise); SQLite applies page_size to a new file
	// only, an existing one keeps its own. mode=rw: the file exists (made
	// above with its mode), SQLite is not to create another.
	if err := s.connect(s.dsn("mode=rw&_busy_timeout=10000&_synchronous=NORMAL&_txlock=immediate&_pragma=page_size(16384)")); err != nil {
		return nil, err
	}
	if err := s.setup(o.schema, o.create); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// probe opens s.db read-only (readOnlyDSN) and identifies the file; s.db
// is closed when it fails.
func (s *Store) probe() (ident, error) {
	if err := s.connect(s.readOnlyDSN()); err != nil {
		return ident{}, err
	}
	id, err := s.identify(s.db)
	if err != nil {
		s.db.Close()
	}
	return id, err
}

// connect opens s.db with dsn and checks that SQLite can open the file.
func (s *Store) connect(dsn string) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return s.describe("open", err)
	}
	s.db = db
	return nil
}

// dsn is the SQLite URI of s.path with query: the path escaped, so that a
// '?', '#' or '%' in a file name is part of the name.
func (s *Store) dsn(query string) string {
	p := s.path
	if filepath.IsAbs(p) {
		p = filepath.Clean(p) // "//x" would read as a URI authority
	}
	return "file:" + uriEscaper.Replace(p) + "?" + query
}

var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// readOnlyDSN reads the file without writing to it or beside it. SQLite
// reads a WAL-mode file read-only only with its -shm file, which it cannot
// create on a read-only file system or in another user's directory: with no
// -wal file no one has the database open to write, and the file is read as
// immutable (no -shm needed); with one, its -wal and -shm are used as they are.
func (s *Store) readOnlyDSN() string {
	q := "mode=ro&_busy_timeout=10000"
	if _, err := os.Lstat(s.path + "-wal"); errors.Is(err, os.ErrNotExist) {
		q += "&immutable=1"
	}
	return s.dsn(q)
}

// canWrite is nil when this process may write path and create files
// beside it (SQLite's -wal and -shm), else why not.
func canWrite(path string) error {
	// As the effective user, who opens it. AT_EACCESS only when it differs
	// from the real one: where the kernel lacks faccessat2, x/sys emulates
	// it from the file's mode, which misses read-only mounts and immutable
	// files.
	flags := 0
	if os.Geteuid() != os.Getuid() || os.Getegid() != os.Getgid() {
		flags = unix.AT_EACCESS
	}
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.W_OK, flags); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, flags); err != nil {
		return fmt.Errorf("its directory %s: %w", dir, err)
	}
	return nil
}

func (s *Store) cannotUpgrade(version, target int) error {
	if version == 0 {
		return fmt.Errorf("open %s: read-only, and holds no fanout data yet", s.path)
	}
	return fmt.Errorf("open %s: schema version %d, older than this fanout reads (%d), and read-only here: open it once where it can be written to upgrade it", s.path, version, target)
}

// walMode switches the file to WAL (persistent: once per file). The switch
// does not wait on SQLite's busy handler, so a concurrent opener retries.
func (s *Store) walMode(q queryer) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mode string
		err := q.QueryRowContext(ctxBG(), `PRAGMA journal_mode=WAL`).Scan(&mode)
		if err == nil {
			return nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return s.describe("open", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// header is what checkFile read of a database file's first page.
type header struct {
	size  int64  // 0: a new file
	appID uint32 // PRAGMA application_id as of the last checkpoint
}

// checkFile creates path with mode 0600 when asked to, and refuses, before
// SQLite can touch it, a file that is not SQLite or is another program's
// SQLite file (an application_id not fanout's).
func checkFile(path string, create bool) (header, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && create {
		// SQLite gives its -wal and -shm files the main file's mode.
		nf, cerr := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if cerr == nil {
			cerr = nf.Chmod(0o600) // the umask may have taken bits away
			if err := nf.Close(); cerr == nil {
				cerr = err
			}
			if cerr != nil {
				return header{}, fmt.Errorf("create %s: %w", path, unwrapPathError(cerr))
			}
			return header{}, nil
		}
		if !errors.Is(cerr, os.ErrExist) { // else: another process created it just now
			return header{}, fmt.Errorf("create %s: %w", path, unwrapPathError(cerr))
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return header{}, fmt.Errorf("open %s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return header{}, fmt.Errorf("open %s: %w", path, unwrapPathError(err))
	}
	if st.IsDir() {
		return header{}, fmt.Errorf("open %s: is a directory, want a fanout database file", path)
	}
	if !st.Mode().IsRegular() {
		return header{}, fmt.Errorf("open %s: not a regular file (%s), want a fanout database file", path, st.Mode().Type())
	}
	head := make([]byte, 100)
	n, _ := io.ReadFull(f, head)
	h := header{size: st.Size()}
	if n == 0 {
		return h, nil // empty: a database not yet written
	}
	if n < len(sqliteMagic) || !bytes.Equal(head[:len(sqliteMagic)], sqliteMagic) {
		return h, fmt.Errorf("%s is not a fanout database (not an SQLite file)", path)
	}
	if n == len(head) {
		h.appID = binary.BigEndian.Uint32(head[68:])
	}
	if h.appID != 0 && h.appID != applicationID {
		return h, foreign(path, h.appID)
	}
	return h, nil
}

func foreign(path string, appID uint32) error {
	return fmt.Errorf("%s is not a fanout database (an SQLite file of another program, application_id %#x)", path, appID)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// describe turns SQLite's result codes into messages that say what to do.
func (s *Store) describe(op string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return s.diskFull(op)
		case sqlite3.SQLITE_READONLY:
			return fmt.Errorf("%s %s: database is read-only (check the file's and its directory's permissions)", op, s.path)
		case sqlite3.SQLITE_NOTADB:
			return fmt.Errorf("%s is not a fanout database (not an SQLite file)", s.path)
		case sqlite3.SQLITE_CANTOPEN:
			return fmt.Errorf("%s %s: cannot open the database file (check its directory exists and is writable)", op, s.path)
		case sqlite3.SQLITE_IOERR:
			if isENOSPC(err) {
				return s.diskFull(op)
			}
		case sqlite3.SQLITE_BUSY:
			return fmt.Errorf("%s %s: database is locked by another process: %w", op, s.path, err)
		}
	}
	return fmt.Errorf("%s %s: %w", op, s.path, err)
}

// ErrDiskFull is matched (errors.Is) by errors caused by a full disk or a
// file size limit.
var ErrDiskFull = errors.New("disk full")

type diskFullError struct{ msg string }

func (e diskFullError) Error() string        { return e.msg }
func (e diskFullError) Is(target error) bool { return target == ErrDiskFull }

func (s *Store) diskFull(op string) error {
	return diskFullError{fmt.Sprintf("%s %s: disk full: free some space, then `fanout resume %s` continues", op, s.path, s.path)}
}

func isENOSPC(err error) bool {
	m := err.Error()
	return strings.Contains(m, "no space left") || strings.Contains(m, "file too large") ||
		strings.Contains(m, "SQLITE_FULL")
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the database and releases the Store's run locks.
func (s *Store) Close() error {
	err := s.db.Close()
	if lerr := s.closeLock(); err == nil {
		err = lerr
	}
	return err
}

// secretKeys are option names whose values are never written to a database.
var secretKeys = []string{"password", "passphrase", "secret", "token", "credential", "private_key"}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redact blanks every value under a secret-looking key, at any depth. Job
// configs carry no secrets by design (ssh takes them from the agent, a key
// file or the environment at run time); this guards against one slipping in.
func redact(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("job options: %w", err)
	}
	changed := false
	var walk func(any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				if isSecretKey(k) {
					if e != nil && e != "" {
						t[k] = nil
						changed = true
					}
					continue
				}
				t[k] = walk(e)
			}
		case []any:
			for i, e := range t {
				t[i] = walk(e)
			}
		}
		return x
	}
	v = walk(v)
	if !changed {
		return raw, nil
	}
	return json.Marshal(v)
}

// CreateSweep records a new sweep and its first run, and returns its id.
// Every "-" or "@FILE" entry of the Spec needs its list in meta.Lists (or
// is inlined first).
func (s *Store) CreateSweep(spec spec.Spec, meta Meta) (int64, error) {
	if n := spec.Listed(); n != len(meta.Lists) {
		for _, t := range append(append([]string(nil), spec.Targets...), spec.Excludes...) {
			if t == "-" || strings.HasPrefix(t, "@") {
				return 0, fmt.Errorf("record sweep: target %q must be inlined before it is stored, or its list given (%d lists for %d entries)", t, len(meta.Lists), n)
			}
		}
		return 0, fmt.Errorf("record sweep: %d lists given for a spec without - or @FILE", len(meta.Lists))
	}
	opts, err := redact(spec.JobOptions)
	if err != nil {
		return 0, err
	}
	spec.JobOptions = opts
	js, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("record sweep: %w", err)
	}
	start := meta.Start
	if start.IsZero() {
		start = time.Now()
	}
	tx, err := s.db.Begin()
	if err != nil {
		return 0, s.describe("record sweep in", err)
	}
	defer tx.Rollback()
	res, err := tx.Exec(`INSERT INTO sweeps(job, spec, total, state, reason, created_ns) VALUES(?,?,?,?,?,?)`,
		spec.Job, string(js), int64(meta.Total), string(Running), "", start.UnixNano())
	if err != nil {
		return 0, s.describe("record sweep in", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, s.describe("record sweep in", err)
	}
	if id >= 1<<(63-idxBits) {
		return 0, fmt.Errorf("record sweep in %s: the file holds %d sweeps, its limit: start a new file", s.path, id-1)
	}
	if _, err := tx.Exec(`INSERT INTO runs(sweep, run, version, start_ns, last_ns, state) VALUES(?,1,?,?,?,?)`,
		id, meta.Version, start.UnixNano(), start.UnixNano(), string(Running)); err != nil {
		return 0, s.describe("record sweep in", err)
	}
	if len(meta.Lists) > 0 {
		buf := make([]byte, listPart)
		for k, r := range meta.Lists {
			// Part 0 always: an empty list is there, not missing.
			for part := 0; ; part++ {
				n, err := io.ReadFull(r, buf)
				if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
					return 0, fmt.Errorf("record sweep in %s: read list %d: %w", s.path, k, err)
				}
				if n > 0 || part == 0 {
					if _, err := tx.Exec(`INSERT INTO lists(sweep, list, part, data) VALUES(?,?,?,?)`, id, k, part, buf[:n]); err != nil {
						return 0, s.describe("record sweep in", err)
					}
				}
				if n < len(buf) {
					break
				}
			}
		}
	}
	// Locked before anyone can see it: a resume of the new sweep, started
	// just after the commit, finds it running.
	if err := s.LockSweep(id); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		s.unlockSweep(id)
		return 0, s.describe("record sweep in", err)
	}
	return id, nil
}

// ResumeSweep starts a new run of sweep id (resume appends to the same
// sweep), under its run lock: an error wrapping ErrSweepRunning when another
// process runs it.
func (s *Store) ResumeSweep(id int64, version string) error {
	if _, err := s.Sweep(id); err != nil {
		return err
	}
	if rd, ok, err := s.RoundOf(id); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("sweep %d in %s is round %d of watch %d: a watch's round is not resumed (start the watch again: it goes on with round %d's successors)", id, s.path, rd.N, rd.Watch, rd.N)
	}
	if err := s.LockSweep(id); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	tx, err := s.db.Begin()
	if err != nil {
		return s.describe("resume sweep in", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO runs(sweep, run, version, start_ns, last_ns, state)
		VALUES(?, (SELECT COALESCE(MAX(run),0)+1 FROM runs WHERE sweep=?), ?, ?, ?, ?)`,
		id, id, version, now, now, string(Running)); err != nil {
		return s.describe("resume sweep in", err)
	}
	if _, err := tx.Exec(`UPDATE sweeps SET state=?, reason='' WHERE id=?`, string(Running), id); err != nil {
		return s.describe("resume sweep in", err)
	}
	if err := tx.Commit(); err != nil {
		return s.describe("resume sweep in", err)
	}
	return nil
}

// FinishSweep ends the current run of sweep id with state and reason, and
// releases its run lock.
func (s *Store) FinishSweep(id int64, state State, reason string) error {
	now := time.Now().UnixNano()
	tx, err := s.db.Begin()
	if err != nil {
		return s.describe("finish sweep in", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE runs SET end_ns=?, last_ns=?, state=?, reason=?
		WHERE sweep=? AND run=(SELECT MAX(run) FROM runs WHERE sweep=?)`,
		now, now, string(state), reason, id, id); err != nil {
		return s.describe("finish sweep in", err)
	}
	if _, err := tx.Exec(`UPDATE sweeps SET state=?, reason=? WHERE id=?`, string(state), reason, id); err != nil {
		return s.describe("finish sweep in", err)
	}
	if err := tx.Commit(); err != nil {
		return s.describe("finish sweep in", err)
	}
	s.unlockSweep(id)
	return nil
}

// Sweep returns the sweep with id, or an error wrapping ErrNoSweep.
func (s *Store) Sweep(id int64) (Sweep, error) {
	sw, err := s.sweeps(`WHERE s.id=?`, id)
	if err != nil {
		return Sweep{}, err
	}
	if len(sw) == 0 {
		return Sweep{}, s.noSweep(id)
	}
	return sw[0], nil
}

func (s *Store) noSweep(id int64) error {
	ids, _ := s.ids()
	known := "the file has no sweep yet"
	if len(ids) > 0 {
		known = "known: " + joinIDs(ids) + "; see `fanout sweeps " + s.path + "`"
	}
	return fmt.Errorf("sweep %d in %s: %w (%s)", id, s.path, ErrNoSweep, known)
}

func joinIDs(ids []int64) string {
	if len(ids) > 12 {
		return joinIDs(ids[:5]) + ", ..., " + joinIDs(ids[len(ids)-5:])
	}
	p := make([]string, len(ids))
	for i, id := range ids {
		p[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(p, ", ")
}

func (s *Store) ids() ([]int64, error) {
	rows, err := s.db.Query(`SELECT id FROM sweeps ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Sweeps lists every sweep in the file, oldest first.
func (s *Store) Sweeps() ([]Sweep, error) { return s.sweeps("") }

// Last is the newest sweep.
func (s *Store) Last() (Sweep, error) {
	sw, err := s.sweeps(`ORDER BY s.id DESC LIMIT 1`)
	if err != nil {
		return Sweep{}, err
	}
	if len(sw) == 0 {
		return Sweep{}, fmt.Errorf("%s: %w (the file has no sweep yet)", s.path, ErrNoSweep)
	}
	return sw[0], nil
}

// LastUnfinished is the newest sweep that is not finished: the one resume
// continues by default.
func (s *Store) LastUnfinished() (Sweep, error) {
	where := `WHERE s.state<>?`
	if ok, err := s.hasWatches(); err != nil {
		return Sweep{}, err
	} else if ok { // a watch's rounds are not resumed: the watch polls again
		where += ` AND s.id NOT IN (SELECT sweep FROM rounds WHERE sweep IS NOT NULL)`
	}
	sw, err := s.sweeps(where+` ORDER BY s.id DESC LIMIT 1`, string(Finished))
	if err != nil {
		return Sweep{}, err
	}
	if len(sw) == 0 {
		return Sweep{}, fmt.Errorf("%s: %w to resume: every sweep in it is finished (see `fanout sweeps %s`)", s.path, ErrNoSweep, s.path)
	}
	return sw[0], nil
}

func (s *Store) sweeps(where string, args ...any) ([]Sweep, error) {
	q := `SELECT s.id, s.spec, s.total, s.state, s.reason, s.created_ns,
		COALESCE((SELECT version FROM runs r WHERE r.sweep=s.id ORDER BY run DESC LIMIT 1), ''),
		COALESCE((SELECT MAX(COALESCE(end_ns, last_ns)) FROM runs r WHERE r.sweep=s.id), 0),
		COALESCE((SELECT SUM(COALESCE(end_ns, last_ns) - start_ns) FROM runs r WHERE r.sweep=s.id), 0),
		(SELECT COUNT(*) FROM runs r WHERE r.sweep=s.id)
		FROM sweeps s ` + where
	if !strings.Contains(where, "ORDER BY") {
		q += ` ORDER BY s.id`
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, s.describe("read sweeps from", err)
	}
	defer rows.Close()
	var out []Sweep
	for rows.Next() {
		var (
			sw                      Sweep
			spec, state             string
			total, created, end, el int64
		)
		if err := rows.Scan(&sw.ID, &spec, &total, &state, &sw.Reason, &created, &sw.Version, &end, &el, &sw.Runs); err != nil {
			return nil, s.describe("read sweeps from", err)
		}
		if err := json.Unmarshal([]byte(spec), &sw.Spec); err != nil {
			return nil, fmt.Errorf("sweep %d in %s: stored spec: %w", sw.ID, s.path, err)
		}
		sw.Total, sw.State = uint64(total), State(state)
		sw.Start = time.Unix(0, created)
		if end > 0 {
			sw.End = time.Unix(0, end)
		}
		sw.Elapsed = time.Duration(el)
		out = append(out, sw)
	}
	return out, rows.Err()
}

// Counts tallies sweep id's stored Results, from the counts the Writer keeps
// as it inserts them (no scan of the Results: instant at any size).
func (s *Store) Counts(id int64) (Counts, error) {
	c := Counts{Classes: map[string]uint64{}}
	rows, err := s.db.Query(`SELECT status, class, n FROM result_counts WHERE sweep=?`, id)
	if err != nil {
		return c, s.describe("count results in", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st, cl string
		var n int64
		if err := rows.Scan(&st, &cl, &n); err != nil {
			return c, s.describe("count results in", err)
		}
		c.Done += uint64(n)
		switch st {
		case "up":
			c.Up += uint64(n)
		case "down":
			c.Down += uint64(n)
		default:
			c.Errors += uint64(n)
		}
		if cl != "" {
			c.Classes[cl] += uint64(n)
		}
	}
	return c, rows.Err()
}

// Done returns the set of indexes of sweep id that already have a Result,
// as a bitmap over [0, n): a /8 costs 2 MB.
func (s *Store) Done(id int64, n uint64) (*Bitmap, error) {
	b := NewBitmap(n)
	rows, err := s.db.Query(`SELECT sweep_idx & 1099511627775 FROM results WHERE ` + inSweep(id))
	if err != nil {
		return nil, s.describe("read done targets from", err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int64
		if err := rows.Scan(&i); err != nil {
			return nil, s.describe("read done targets from", err)
		}
		if uint64(i) >= n {
			return nil, fmt.Errorf("sweep %d in %s: result index %d beyond the sweep's %d targets (did the target list change?)", id, s.path, i, n)
		}
		b.Set(uint64(i))
	}
	if err := rows.Err(); err != nil {
		return nil, s.describe("read done targets from", err)
	}
	return b, nil
}

// Bitmap is a fixed-size set of indexes.
type Bitmap struct {
	w []uint64
	n uint64
}

// NewBitmap holds indexes [0, n).
func NewBitmap(n uint64) *Bitmap { return &Bitmap{w: make([]uint64, (n+63)/64), n: n} }

// Set adds i.
func (b *Bitmap) Set(i uint64) { b.w[i/64] |= 1 << (i % 64) }

// Has reports whether i was added; false beyond the bitmap's size.
func (b *Bitmap) Has(i uint64) bool { return i < b.n && b.w[i/64]&(1<<(i%64)) != 0 }

// Count is how many indexes were added.
func (b *Bitmap) Count() uint64 {
	var c uint64
	for _, w := range b.w {
		for ; w != 0; w &= w - 1 {
			c++
		}
	}
	return c
}

func ctxBG() context.Context { return context.Background() }

// Count is the number of Results stored for sweep id, counted in the
// results themselves (a scan of the sweep's rows: ~3 ms per 65,536).
func (s *Store) Count(id int64) (uint64, error) {
	var n int64
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM results WHERE ` + inSweep(id)).Scan(&n); err != nil {
		return 0, s.describe("count results in", err)
	}
	return uint64(n), nil
}
