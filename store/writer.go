package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/job"
)

// WriterOptions tune how Results are batched into transactions.
type WriterOptions struct {
	Batch     int           // Results per transaction at most; 0 means 2048
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
type Writer struct {
	s     *Store
	sweep int64
	run   int64
	o     WriterOptions

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
	// The insert statements are the driver's own, used through conn.Raw:
	// database/sql's per-argument conversions cost a tenth of the writer's CPU.
	stmts  map[uint32]*shapeStmts
	vals   [][cols]any // the batch's column values, reused
	shapes []uint32
	groups map[uint32][]int // row numbers of the batch by shape, reused
	args   []driver.NamedValue

	written atomic.Uint64 // rows inserted (duplicates excluded)
	commits atomic.Uint64

	crashIn int64 // fault injection for the kill tests; see crashEnv
}

// crashEnv, when set to N in the environment, makes the process SIGKILL
// itself in the middle of its N-th transaction (rows inserted, not yet
// committed): the resume test's "killed during a commit", made certain.
const crashEnv = "FANOUT_TEST_CRASH_IN_COMMIT"

// columns of results a Writer fills, in order. Bit i of a shape says that
// column i is bound; an unbound column takes its default (0 or NULL).
var columns = [cols]string{"sweep_idx", "host", "addr", "port", "status", "class", "error",
	"rtt_ns", "sent", "recv", "rtt_min_ns", "rtt_avg_ns", "rtt_max_ns", "exit_code", "stdout", "stderr",
	"truncated", "attempts", "start_ns", "end_ns", "worker"}

const (
	cols = 21
	// multi is the rows per multi-row statement: the per-statement cost
	// dominates small rows (SQLite allows 32766 variables per statement).
	multi = 64
	// always: the key, host and status are bound in every shape.
	always    = 1<<0 | 1<<1 | 1<<4
	fullShape = 1<<cols - 1
	// maxShapes bounds the statement cache; rarer shapes bind every column.
	maxShapes = 32
)

// insertSQL inserts rows Results of one shape, ignoring one whose (sweep,
// idx) is already stored: a redelivered cluster task or a race between runs
// adds nothing. Binding only the columns a Result fills (a ping binds 12 of
// 21, a refused tcp 9) saves much of the writer's time: SQLite's cost is
// per bound value.
func insertSQL(shape uint32, rows int) string {
	var names []string
	for i, c := range columns {
		if shape&(1<<i) != 0 {
			names = append(names, c)
		}
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(names)), ",") + ")"
	return "INSERT OR IGNORE INTO results(" + strings.Join(names, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
}

// shapeStmts are the prepared inserts of one shape.
type shapeStmts struct {
	multi, one driver.Stmt
}

// NewWriter starts a Writer appending Results to sweep id's current run.
func (s *Store) NewWriter(id int64, o WriterOptions) (*Writer, error) {
	if o.Batch <= 0 {
		o.Batch = 2048
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
		batches: make(chan []job.Result, 6), free: make(chan []job.Result, 8), done: make(chan struct{}),
		ckptStop: make(chan struct{}), ckptDone: make(chan struct{})}
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(run),0) FROM runs WHERE sweep=?`, id).Scan(&w.run); err != nil {
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	// A big page cache keeps the B-tree's inner pages in memory for shuffled
	// sweeps of millions of targets (inserts land anywhere in the key range).
	// Checkpoints (copying the WAL into the database, with an fsync) run
	// beside the writer on another connection, not inside its commits: a
	// slow disk then never holds a commit, and so never the sweep.
	if _, err := conn.ExecContext(ctx, `PRAGMA cache_size=-65536`); err == nil {
		_, err = conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint=0`)
	}
	if err != nil {
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	w.stmts, w.groups = map[uint32]*shapeStmts{}, map[uint32][]int{}
	err = conn.Raw(func(dc any) error {
		_, err := w.prepared(dc, fullShape) // the driver can do what we need
		return err
	})
	if err != nil {
		w.closeStmts()
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	w.args = make([]driver.NamedValue, 0, cols*multi)
	if v, err := strconv.ParseInt(os.Getenv(crashEnv), 10, 64); err == nil {
		w.crashIn = v
	}
	go w.loop()
	go w.checkpoints()
	return w, nil
}

// checkpointEvery is how often the WAL is copied into the database while a
// sweep writes (PASSIVE: it never blocks the writer).
const checkpointEvery = 500 * time.Millisecond

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
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (w *Writer) closeStmts() {
	w.conn.Raw(func(any) error {
		for _, ss := range w.stmts {
			for _, st := range []driver.Stmt{ss.multi, ss.one} {
				if st != nil {
					st.Close()
				}
			}
		}
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
	tick := time.NewTicker(w.o.Interval)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-w.batches:
			if !ok {
				return
			}
			w.commit(b)
		case <-tick.C:
			w.mu.Lock()
			b := w.cur
			w.cur = nil
			w.mu.Unlock()
			if len(b) > 0 {
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
	n, err := w.insert(b)
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

func (w *Writer) insert(b []job.Result) (n uint64, err error) {
	ctx := context.Background()
	err = w.conn.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("sqlite driver without ExecContext")
		}
		if _, err := ex.ExecContext(ctx, "BEGIN IMMEDIATE", nil); err != nil {
			return err
		}
		n, err = w.insertRows(ctx, dc, b)
		if err == nil {
			_, err = ex.ExecContext(ctx, "UPDATE runs SET last_ns=? WHERE sweep=? AND run=?", []driver.NamedValue{
				{Ordinal: 1, Value: time.Now().UnixNano()}, {Ordinal: 2, Value: w.sweep}, {Ordinal: 3, Value: w.run}})
		}
		if err == nil {
			_, err = ex.ExecContext(ctx, "COMMIT", nil)
		}
		if err != nil {
			ex.ExecContext(ctx, "ROLLBACK", nil) // fails harmlessly when SQLite rolled back already
		}
		return err
	})
	return n, err
}

// insertRows runs the insert statements over b inside the caller's
// transaction, grouping rows by shape.
func (w *Writer) insertRows(ctx context.Context, dc any, b []job.Result) (uint64, error) {
	if cap(w.vals) < len(b) {
		w.vals, w.shapes = make([][cols]any, len(b)), make([]uint32, len(b))
	}
	vals, shapes := w.vals[:len(b)], w.shapes[:len(b)]
	for k := range w.groups {
		w.groups[k] = w.groups[k][:0]
	}
	var order []uint32 // shapes in order of first appearance
	for i := range b {
		if b[i].Index > maxIdx {
			return 0, fmt.Errorf("index %d: beyond the store's limit of %d targets per sweep", b[i].Index, uint64(maxIdx)+1)
		}
		sh := w.values(&b[i], &vals[i])
		if _, ok := w.stmts[sh]; !ok && len(w.stmts) >= maxShapes {
			sh = fullShape
		}
		shapes[i] = sh
		if len(w.groups[sh]) == 0 {
			order = append(order, sh)
		}
		w.groups[sh] = append(w.groups[sh], i)
	}
	var n uint64
	ran := 0
	for _, sh := range order {
		ss, err := w.prepared(dc, sh)
		if err != nil {
			return 0, err
		}
		rows := w.groups[sh]
		for lo := 0; lo < len(rows); {
			st, hi := ss.multi, lo+multi
			if hi > len(rows) {
				st, hi = ss.one, lo+1
			}
			w.args = w.args[:0]
			for _, i := range rows[lo:hi] {
				for c := 0; c < cols; c++ {
					if sh&(1<<c) != 0 {
						w.args = append(w.args, driver.NamedValue{Ordinal: len(w.args) + 1, Value: vals[i][c]})
					}
				}
			}
			if w.crashIn > 0 && int64(w.commits.Load())+1 == w.crashIn && ran >= len(b)/2 {
				if p, err := os.FindProcess(os.Getpid()); err == nil {
					p.Kill() // SIGKILL: no deferred function, no rollback, no close
				}
				select {}
			}
			res, err := st.(driver.StmtExecContext).ExecContext(ctx, w.args)
			if err != nil {
				return 0, fmt.Errorf("index %d: %w", b[rows[lo]].Index, err)
			}
			if k, err := res.RowsAffected(); err == nil {
				n += uint64(k)
			}
			ran += hi - lo
			lo = hi
		}
	}
	return n, nil
}

// prepared returns (preparing on first use) the inserts of shape sh.
func (w *Writer) prepared(dc any, sh uint32) (*shapeStmts, error) {
	if ss, ok := w.stmts[sh]; ok {
		return ss, nil
	}
	p, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("sqlite driver without PrepareContext")
	}
	ctx := context.Background()
	ss := &shapeStmts{}
	var err error
	if ss.multi, err = p.PrepareContext(ctx, insertSQL(sh, multi)); err != nil {
		return nil, err
	}
	if ss.one, err = p.PrepareContext(ctx, insertSQL(sh, 1)); err != nil {
		ss.multi.Close()
		return nil, err
	}
	w.stmts[sh] = ss
	return ss, nil
}

// values fills v with r's column values and returns its shape: the columns
// that differ from their default (0 or NULL), plus the key, host and status.
func (w *Writer) values(r *job.Result, v *[cols]any) uint32 {
	var exit any
	if r.ExitCode != nil {
		exit = int64(*r.ExitCode)
	}
	stdout, t1 := bound(r.Stdout, w.o.MaxOutput)
	stderr, t2 := bound(r.Stderr, w.o.MaxOutput)
	var addr any = r.Addr
	if r.Addr == r.Host {
		addr = nil // read back as host
	}
	*v = [cols]any{w.sweep<<idxBits | int64(r.Index), r.Host, addr, int64(r.Port),
		string(r.Status), nullIfEmpty(string(r.Class)), nullIfEmpty(r.Error),
		int64(r.RTT), int64(r.Sent), int64(r.Recv), int64(r.RTTMin), int64(r.RTTAvg), int64(r.RTTMax),
		exit, stdout, stderr, int64(boolInt(r.Truncated || t1 || t2)),
		int64(r.Attempts), unixNano(r.Start), unixNano(r.End), nullIfEmpty(r.Worker)}
	shape := uint32(always)
	for c, x := range v {
		if x != nil && (nullDefault&(1<<c) != 0 || x != any(int64(0))) {
			shape |= 1 << c
		}
	}
	return shape
}

// nullDefault are the columns whose default is NULL: a zero value there
// (exit code 0, empty output, an empty addr) is data and is bound.
const nullDefault = 1<<2 | 1<<5 | 1<<6 | 1<<13 | 1<<14 | 1<<15 | 1<<20

// nullIfEmpty binds "" as NULL: no string to copy into SQLite.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// bound keeps b as a blob (nil stays NULL) cut at max bytes.
func bound(b []byte, max int) (any, bool) {
	if b == nil {
		return nil, false
	}
	if len(b) > max {
		return b[:max], true
	}
	return b, false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// IsDiskFull reports whether err was caused by a full disk or file size limit.
func IsDiskFull(err error) bool { return errors.Is(err, ErrDiskFull) }
