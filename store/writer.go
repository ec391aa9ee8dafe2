package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/job"
)

const (
	// defaultBatch is the Results per transaction, and per insert statement:
	// 1,024 rows of 21 columns bind 21,504 values at most, under SQLite's 32,766.
	// 2,048 and 4,096 cost no less CPU per Result in BenchmarkWriter/ordered
	// (a commit's fixed work is small beside its rows') and hold more heap.
	defaultBatch = 1024
	queued       = 6 // full batches waiting for the writer at most
)

// WriterHeap is about the most Go heap a Writer with the default batch
// holds: its batches of Results (queued, filling and committing) and the
// values of the batch it binds, plus room for the garbage it makes (each
// bound value boxed, the driver's bindings: ~250 bytes a Result); the bytes
// Results point to are extra. A caller that sets a soft memory limit adds
// it, or the GC runs to keep the queue under the limit: without the room
// for garbage, a /14 ping sweep spent a fifth of its CPU marking.
var WriterHeap = (queued+2)*defaultBatch*int(reflect.TypeFor[job.Result]().Size()) +
	defaultBatch*len(columns)*int(reflect.TypeFor[driver.NamedValue]().Size()+16) +
	writerGarbage

// writerGarbage is the heap a Writer leaves the GC between collections.
const writerGarbage = 6 << 20

// WriterOptions tune how Results are batched into transactions.
type WriterOptions struct {
	Batch     int           // Results per transaction at most; 0 means 1024 (defaultBatch)
	Interval  time.Duration // commit at least this often; 0 means 100ms
	MaxOutput int           // bytes of stdout and of stderr kept per Result; 0 means 1 MiB
	// OnError is called once, from the writer's goroutine, when a commit
	// fails (disk full, read-only): the caller stops the sweep. The failed
	// batch is not in the database and resume redoes it.
	OnError func(error)
}

// Writer streams one sweep's Results into the store from a goroutine of its
// own, committing in big transactions, so that a sweep never waits on the
// disk unless the disk falls behind by several batches. It is the store's
// output sink (it satisfies output.Writer). Write and Close are called from
// one goroutine.
//
// A transaction inserts its batch with one multi-row INSERT (batches cut
// short by the commit interval use a few statements of power-of-two sizes),
// and adds the batch to the sweep's stored counts. The INSERT names the
// columns that some Result of the batch (or of the one before) fills: a
// column at its default in every row (a ping has no output, a tcp connect no
// RTT statistics, an up Result no status code) is left to the default, as
// SQLite's and the driver's cost is per bound value (see columns).
type Writer struct {
	s     *Store
	sweep int64
	run   int64
	o     WriterOptions
	bind  bindOpts

	mu  sync.Mutex
	cur []job.Result

	// Full batches to commit; its capacity is the backpressure. Small
	// batches, few of them: queued Results are live heap, and a sweep may run
	// under a soft memory limit (ping sets one), where a big queue means GC.
	batches chan []job.Result
	free    chan []job.Result // committed batches' slices, reused
	done    chan struct{}

	ckptStop, ckptDone chan struct{} // the checkpointer goroutine
	err                atomic.Pointer[error]

	conn *sql.Conn
	tx   txStmts
	// The inserts by columns and rows, prepared on first use: the driver's
	// own statements, run through conn.Raw, since database/sql's checks
	// of each of a statement's 21,504 arguments cost more than the insert.
	inserts map[insertKey]driver.Stmt
	args    []driver.NamedValue // the statement's values, reused
	cols    colSet              // the columns the last insert named
	// prepares counts the inserts prepared: once per shape, not per
	// batch (TestInsertPreparedOnce).
	prepares int
	tally    tally // the batch's counts, reused

	closing atomic.Bool   // Close is waiting: commit at normal priority
	written atomic.Uint64 // rows inserted (duplicates excluded)
	commits atomic.Uint64
}

// txStmts are the statements of every transaction but the inserts.
type txStmts struct {
	begin, commit, rollback, lastRun, count driver.Stmt
}

// colSet is a set of columns: bit i is columns[i].
type colSet uint32

// insertKey names an insert statement: its columns and rows.
type insertKey struct {
	cols colSet
	rows int
}

// maxInserts bounds the prepared inserts (a sweep uses one or two column
// sets, in up to 11 sizes); past it they are all closed and prepared anew.
const maxInserts = 48

// insertSQL inserts rows Results into columns cols, ignoring one whose
// (sweep, idx) is already stored: a redelivered cluster task or a race
// between runs adds nothing.
func insertSQL(cols colSet, rows int) string {
	var names []string
	for i, c := range columns {
		if cols&(1<<i) != 0 {
			names = append(names, c.name)
		}
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(names)), ",") + ")"
	return "INSERT OR IGNORE INTO results(" + strings.Join(names, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
}

// NewWriter starts a Writer appending Results to sweep id's current run.
func (s *Store) NewWriter(id int64, o WriterOptions) (*Writer, error) {
	if o.Batch <= 0 {
		o.Batch = defaultBatch
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = 1 << 20
	}
	if _, err := s.Sweep(id); err != nil {
		return nil, err
	}
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, s.describe("write results to", err)
	}
	w := &Writer{s: s, sweep: id, o: o, conn: conn,
		bind:    bindOpts{sweep: id, maxOutput: o.MaxOutput, codes: &codes{of: map[statusKey]int64{}}},
		batches: make(chan []job.Result, queued), free: make(chan []job.Result, queued+2), done: make(chan struct{}),
		ckptStop: make(chan struct{}), ckptDone: make(chan struct{})}
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(run),0) FROM runs WHERE sweep=?`, id).Scan(&w.run); err != nil {
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	// The page cache holds the B-tree's inner pages for shuffled sweeps of
	// millions of targets (inserts land anywhere in the key range: a /8's
	// inner pages are well under 1 MiB, its leaves a GiB that no cache
	// holds). 8 MiB, not more: it is resident memory, and --db is to cost
	// a sweep at most twice the RSS it has without (37 MB for a /8 ping).
	// Checkpoints (copying the WAL into the database, with an fsync) run
	// beside the writer on another connection, not inside its commits: a
	// slow disk then never holds a commit, and so never the sweep.
	_, err = conn.ExecContext(ctx, `PRAGMA cache_size=-8192`)
	if err == nil {
		_, err = conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint=0`)
	}
	if err == nil {
		err = w.loadCodes(ctx)
	}
	if err == nil {
		err = conn.Raw(func(dc any) error { return w.prepare(dc) })
	}
	if err != nil {
		w.closeStmts()
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	w.inserts = map[insertKey]driver.Stmt{}
	go w.loop()
	go w.checkpoints()
	return w, nil
}

// prepare prepares the statements of a transaction but its inserts.
func (w *Writer) prepare(dc any) error {
	p, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return fmt.Errorf("sqlite driver without PrepareContext")
	}
	ctx := context.Background()
	for _, s := range []struct {
		st *driver.Stmt
		q  string
	}{
		{&w.tx.begin, "BEGIN IMMEDIATE"},
		{&w.tx.commit, "COMMIT"},
		{&w.tx.rollback, "ROLLBACK"},
		{&w.tx.lastRun, "UPDATE runs SET last_ns=? WHERE sweep=? AND run=?"},
		{&w.tx.count, `INSERT INTO result_counts(sweep, status, class, n) VALUES(?, ?, ?, ?)
			ON CONFLICT(sweep, status, class) DO UPDATE SET n = n + excluded.n`},
		{&w.bind.codes.add, `INSERT OR IGNORE INTO statuses(status, class) VALUES(?, ?)`},
		{&w.bind.codes.get, `SELECT code FROM statuses WHERE status=? AND class=?`},
	} {
		var err error
		if *s.st, err = p.PrepareContext(ctx, s.q); err != nil {
			return err
		}
	}
	return nil
}

// loadCodes reads the statuses table into the writer's codes.
func (w *Writer) loadCodes(ctx context.Context) error {
	rows, err := w.conn.QueryContext(ctx, `SELECT code, status, class FROM statuses`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var code int64
		var st, cl string
		if err := rows.Scan(&code, &st, &cl); err != nil {
			return err
		}
		w.bind.codes.of[statusKey{job.Status(st), job.Class(cl)}] = code
	}
	return rows.Err()
}

// checkpointEvery is how often the WAL is copied into the database while a
// sweep writes (PASSIVE: it never blocks the writer). Often: what is left
// is copied when the store closes, after the sweep, where it adds to the
// sweep's time (a 65,536-target ping: 9-21 ms at 500ms, 4-11 ms at 100ms).
const checkpointEvery = 100 * time.Millisecond

func (w *Writer) checkpoints() {
	defer close(w.ckptDone)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.ckptStop:
			return
		case <-tick.C:
			// A failure (busy, disk full) is left to the next tick and to
			// the commits, which report it.
			w.s.db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// Write queues r for the next commit. It returns the error that stopped the
// writer, if any (the Result is then dropped: resume redoes it).
func (w *Writer) Write(r job.Result) error {
	if e := w.err.Load(); e != nil {
		return *e
	}
	w.mu.Lock()
	if w.cur == nil {
		w.cur = w.slice()
	}
	w.cur = append(w.cur, r)
	var full []job.Result
	if len(w.cur) >= w.o.Batch {
		full, w.cur = w.cur, nil
	}
	w.mu.Unlock()
	if full != nil {
		w.batches <- full
	}
	return nil
}

func (w *Writer) slice() []job.Result {
	select {
	case b := <-w.free:
		return b[:0]
	default:
		return make([]job.Result, 0, w.o.Batch)
	}
}

// Close commits what is queued and stops the writer. It returns the error
// that stopped the writer early, if any.
func (w *Writer) Close() error {
	w.closing.Store(true)
	w.mu.Lock()
	last := w.cur
	w.cur = nil
	w.mu.Unlock()
	if len(last) > 0 {
		w.batches <- last
	}
	close(w.batches)
	<-w.done
	close(w.ckptStop)
	<-w.ckptDone
	w.closeStmts()
	w.conn.Close()
	return w.Err()
}

func (w *Writer) closeStmts() {
	w.conn.Raw(func(any) error {
		for _, st := range []driver.Stmt{w.tx.begin, w.tx.commit, w.tx.rollback, w.tx.lastRun, w.tx.count,
			w.bind.codes.add, w.bind.codes.get} {
			if st != nil {
				st.Close()
			}
		}
		w.closeInserts()
		return nil
	})
}

// Err is the error that stopped the writer, or nil.
func (w *Writer) Err() error {
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Written is the number of Results inserted so far (duplicates not counted).
func (w *Writer) Written() uint64 { return w.written.Load() }

func (w *Writer) loop() {
	defer close(w.done)
	idle := startIdle(w.commit, starved)
	defer idle.stop()
	tick := time.NewTicker(w.o.Interval)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-w.batches:
			if !ok {
				return
			}
			// Keeping up: the commit waits for idle CPU. Falling behind
			// (half the queue full), or the sweep is over and Close
			// waits: it runs now, at the sweep's priority.
			if len(w.batches) < queued/2 && !w.closing.Load() && idle.run(b) {
				break
			}
			w.commit(b)
		case <-tick.C:
			w.mu.Lock()
			b := w.cur
			w.cur = nil
			w.mu.Unlock()
			if len(b) > 0 && !idle.run(b) {
				w.commit(b)
			}
		}
	}
}

// commit writes b in one transaction. After a failure it drops batches (they
// stay undone, and resume redoes them) so that Write never blocks.
func (w *Writer) commit(b []job.Result) {
	defer func() {
		select {
		case w.free <- b:
		default:
		}
	}()
	if w.err.Load() != nil {
		return
	}
	var n uint64
	err := w.conn.Raw(func(dc any) error {
		var err error
		n, err = w.insert(dc, b)
		return err
	})
	if err != nil {
		err = w.s.describe("write results to", err)
		w.err.Store(&err)
		if w.o.OnError != nil {
			w.o.OnError(err)
		}
		return
	}
	w.written.Add(n)
	w.commits.Add(1)
}

// insert writes b, its counts and the run's last commit time in one
// transaction, and returns the rows it inserted. A batch that holds
// Results already stored (a redelivered cluster task) is rolled back and
// inserted a row at a time, so that only new rows are counted: rare, and
// the common batch pays nothing for it.
func (w *Writer) insert(dc any, b []job.Result) (uint64, error) {
	for i := range b {
		if b[i].Index > maxIdx {
			return 0, fmt.Errorf("index %d: beyond the store's limit of %d targets per sweep", b[i].Index, uint64(maxIdx)+1)
		}
	}
	n, err := w.transaction(dc, b, false)
	if err == errDuplicates {
		n, err = w.transaction(dc, b, true)
	}
	return n, err
}

var errDuplicates = errors.New("batch holds stored results")

// transaction is one try of insert: rowByRow inserts and counts each
// Result alone; otherwise a batch with duplicates returns errDuplicates,
// rolled back.
func (w *Writer) transaction(dc any, b []job.Result, rowByRow bool) (n uint64, err error) {
	if err := w.exec(w.tx.begin); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			w.exec(w.tx.rollback) // fails harmlessly when SQLite rolled back already
			w.bind.codes.rollback()
		}
	}()
	if err := w.bind.codes.intern(b); err != nil {
		return 0, err
	}
	w.tally.reset()
	if rowByRow {
		for i := range b {
			k, err := w.insertRows(dc, b[i:i+1])
			if err != nil {
				return 0, err
			}
			if k == 1 {
				w.tally.add(&b[i])
			}
			n += k
		}
	} else {
		// Power-of-two pieces: a full batch of the default size is one.
		for lo := 0; lo < len(b); {
			size := 1
			for size*2 <= len(b)-lo && size*2 <= w.o.Batch {
				size *= 2
			}
			k, err := w.insertRows(dc, b[lo:lo+size])
			if err != nil {
				return 0, err
			}
			n += k
			lo += size
		}
		if n != uint64(len(b)) {
			return 0, errDuplicates
		}
		for i := range b {
			w.tally.add(&b[i])
		}
	}
	for _, c := range w.tally {
		if err := w.exec(w.tx.count, w.sweep, c.status, c.class, int64(c.n)); err != nil {
			return 0, err
		}
	}
	if err := w.exec(w.tx.lastRun, time.Now().UnixNano(), w.sweep, w.run); err != nil {
		return 0, err
	}
	crashHook(w.commits.Load() + 1) // a debug build may die here, rows inserted and not committed
	if err := w.exec(w.tx.commit); err != nil {
		return 0, err
	}
	w.bind.codes.commit()
	return n, nil
}

// insertRows runs the insert of rows (a power of two of them) and returns
// the rows inserted. It names the columns the last insert named, binding
// each row's values as it goes; a column this batch fills that the last did
// not makes it bind them again (rarely: a sweep's Results are alike). A
// column named but at its default in every row is bound all the same, and
// left out of the next insert.
func (w *Writer) insertRows(dc any, rows []job.Result) (uint64, error) {
	cols := w.cols
	used := w.bindRows(rows, cols)
	if used&^cols != 0 {
		cols |= used
		w.bindRows(rows, cols)
	}
	w.cols = used
	st, err := w.insertStmt(dc, insertKey{cols, len(rows)})
	if err != nil {
		return 0, err
	}
	res, err := st.(driver.StmtExecContext).ExecContext(context.Background(), w.args)
	w.unbind()
	if err != nil {
		return 0, fmt.Errorf("index %d: %w", rows[0].Index, err)
	}
	n, err := res.RowsAffected()
	return uint64(n), err
}

// bindRows sets w.args to the values of rows in columns cols, and returns
// the columns that some row fills (a value other than the default).
func (w *Writer) bindRows(rows []job.Result, cols colSet) (used colSet) {
	n := len(rows) * bits.OnesCount32(uint32(cols))
	if cap(w.args) < n {
		w.args = make([]driver.NamedValue, n)
	}
	w.args = w.args[:n]
	k := 0
	for i := range rows {
		for c := range columns {
			col := &columns[c]
			v := col.value(&rows[i], &w.bind)
			if col.keep || !isDefault(v, col.dflt) {
				used |= 1 << c
			}
			if cols&(1<<c) != 0 {
				// Field by field: a NamedValue copied whole is a bulk
				// write barrier while the GC marks.
				a := &w.args[k]
				a.Ordinal, a.Value = k+1, v
				k++
			}
		}
	}
	return used
}

// unbind drops the values of w.args (the Results' strings and outputs).
func (w *Writer) unbind() {
	for i := range w.args {
		w.args[i].Value = nil
	}
}

// isDefault is v == d (a column's default: nil or an int64), without the
// runtime's generic comparison for the common case, integers: it is called
// for every column of every Result.
func isDefault(v, d any) bool {
	switch x := v.(type) {
	case nil:
		return d == nil
	case int64:
		y, ok := d.(int64)
		return ok && x == y
	}
	return false
}

// insertStmt returns the insert k, preparing it on first use.
func (w *Writer) insertStmt(dc any, k insertKey) (driver.Stmt, error) {
	if st, ok := w.inserts[k]; ok {
		return st, nil
	}
	if len(w.inserts) >= maxInserts {
		w.closeInserts()
	}
	p := dc.(driver.ConnPrepareContext) // prepare checked it
	st, err := p.PrepareContext(context.Background(), insertSQL(k.cols, k.rows))
	if err != nil {
		return nil, err
	}
	w.inserts[k] = st
	w.prepares++
	return st, nil
}

func (w *Writer) closeInserts() {
	for k, st := range w.inserts {
		st.Close()
		delete(w.inserts, k)
	}
}

// exec runs a statement of the transaction with args.
func (w *Writer) exec(st driver.Stmt, args ...any) error {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	_, err := st.(driver.StmtExecContext).ExecContext(context.Background(), nv)
	return err
}

// tally is a batch's Results by status and class (a handful of entries).
type tally []countKey

type countKey struct {
	status, class string
	n             uint64
}

func (t *tally) reset() { *t = (*t)[:0] }

func (t *tally) add(r *job.Result) {
	for i := range *t {
		if c := &(*t)[i]; c.status == string(r.Status) && c.class == string(r.Class) {
			c.n++
			return
		}
	}
	*t = append(*t, countKey{string(r.Status), string(r.Class), 1})
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// IsDiskFull reports whether err was caused by a full disk or file size limit.
func IsDiskFull(err error) bool { return errors.Is(err, ErrDiskFull) }
