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
	"unsafe"

	"github.com/fanout/fanout/job"
)

const (
	defaultBatch = 2048
	queued       = 6 // full batches waiting for the writer at most
	// WriterHeap is about the most Go heap a Writer with the default batch
	// holds: its batches of Results (queued, filling and committing) and
	// their column values; the bytes Results point to are extra. A caller
	// that sets a soft memory limit adds it, or the GC runs to keep the
	// queue under the limit.
	WriterHeap = (queued+2)*defaultBatch*int(unsafe.Sizeof(job.Result{})) + defaultBatch*int(unsafe.Sizeof(row{}))
)

// WriterOptions tune how Results are batched into transactions.
type WriterOptions struct {
	Batch     int           // Results per transaction at most; 0 means 2048 (defaultBatch)
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
	stmts map[uint32]*shapeStmts
	// begin, update runs' last_ns, commit: prepared once, not per commit
	tx     [3]driver.Stmt
	rows   []row   // the batch's integer values and shapes, reused
	groups []group // the batch's rows by statement shape, reused
	args   []driver.NamedValue

	closing atomic.Bool   // Close is waiting: commit at normal priority
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

// aliasOf[c], when not -1, is an earlier column that column c often equals
// (a ping of count 1: rtt = min = avg = max, sent = recv = attempts = 1).
// Bit cols+k of a shape says that the k-th aliasable column equals its
// source and is not bound again but selected from the source's value:
// SQLite's and the driver's cost is per bound value.
var aliasOf = [cols]int{-1, -1, -1, -1, -1, -1, -1, -1, -1, 8, 7, 7, 7, -1, -1, -1, -1, 8, -1, -1, -1}

// aliased lists the aliasable columns; aliasBit[c] is column c's shape bit.
var aliased, aliasBit = func() (cs []int, bits [cols]uint32) {
	for c, src := range aliasOf {
		if src >= 0 {
			bits[c] = 1 << (cols + len(cs))
			cs = append(cs, c)
		}
	}
	return cs, bits
}()

// insertSQL inserts rows Results of one shape, ignoring one whose (sweep,
// idx) is already stored: a redelivered cluster task or a race between runs
// adds nothing. Binding only the columns a Result fills (a ping binds 12 of
// 21, a refused tcp 9), and each value once (a ping of count 1 binds 7),
// saves much of the writer's time: SQLite's cost is per bound value. An
// aliased column selects its source's VALUES column; a ?N parameter instead
// would give the statement named parameters, which SQLite looks up in a list
// per bound value (slower than binding the copies).
func insertSQL(shape uint32, rows int) string {
	var names, sel, vals []string
	n := 0                // VALUES columns
	var expr [cols]string // column -> what the SELECT takes for it
	copied := false       // some column copies another's bound value
	for c, name := range columns {
		if shape&(1<<c) == 0 {
			continue
		}
		names = append(names, name)
		if lit, ok := literal(shape, c); ok {
			expr[c] = lit
			vals = append(vals, lit)
		} else if shape&aliasBit[c] != 0 {
			expr[c] = expr[aliasOf[c]]
			vals = append(vals, expr[c])
			copied = copied || strings.HasPrefix(expr[c], "column")
		} else {
			n++
			expr[c] = "column" + strconv.Itoa(n)
			vals = append(vals, "?")
		}
		sel = append(sel, expr[c])
	}
	insert := "INSERT OR IGNORE INTO results(" + strings.Join(names, ", ") + ") "
	if !copied {
		// Values bound or literal: VALUES rows hold them, no subquery.
		row := "(" + strings.Join(vals, ",") + ")"
		return insert + "VALUES " + strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
	return insert + "SELECT " + strings.Join(sel, ", ") + " FROM (VALUES " +
		strings.TrimSuffix(strings.Repeat(row+",", rows), ",") + ")"
}

// Common values are written into the statement instead of bound: the status
// (shape bits statusShift and up, a code in statuses) and a sent count of 1.
const (
	statusShift = cols + 5 // after the alias bits
	statusMask  = 3 << statusShift
	sentOne     = 1 << (statusShift + 2)
	sentCol     = 8
	statusCol   = 4
)

var statuses = [...]job.Status{1: job.Up, 2: job.Down, 3: job.Error}

// literal is the SQL literal that shape writes for column c, if any.
func literal(shape uint32, c int) (string, bool) {
	switch {
	case c == statusCol && shape&statusMask != 0:
		return "'" + string(statuses[shape&statusMask>>statusShift]) + "'", true
	case c == sentCol && shape&sentOne != 0:
		return "1", true
	}
	return "", false
}

// bindCols are the columns whose values shape binds, in order.
func bindCols(shape uint32) []uint8 {
	var cs []uint8
	for c := 0; c < cols; c++ {
		if _, lit := literal(shape, c); shape&(1<<c) != 0 && shape&aliasBit[c] == 0 && !lit {
			cs = append(cs, uint8(c))
		}
	}
	return cs
}

// shapeStmts are the prepared inserts of one shape.
type shapeStmts struct {
	multi, one driver.Stmt
	bind       []uint8 // bindCols
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
		batches: make(chan []job.Result, queued), free: make(chan []job.Result, queued+2), done: make(chan struct{}),
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
	w.stmts = map[uint32]*shapeStmts{}
	err = conn.Raw(func(dc any) error {
		if _, err := w.prepared(dc, fullShape); err != nil { // the driver can do what we need
			return err
		}
		p := dc.(driver.ConnPrepareContext) // prepared checked it
		for i, q := range []string{"BEGIN IMMEDIATE", "UPDATE runs SET last_ns=? WHERE sweep=? AND run=?", "COMMIT"} {
			var err error
			if w.tx[i], err = p.PrepareContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
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
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (w *Writer) closeStmts() {
	w.conn.Raw(func(any) error {
		for _, st := range w.tx {
			if st != nil {
				st.Close()
			}
		}
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
		run := func(st driver.Stmt, args []driver.NamedValue) error {
			_, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
			return err
		}
		if err := run(w.tx[0], nil); err != nil {
			return err
		}
		n, err = w.insertRows(ctx, dc, b)
		if err == nil {
			err = run(w.tx[1], []driver.NamedValue{
				{Ordinal: 1, Value: time.Now().UnixNano()}, {Ordinal: 2, Value: w.sweep}, {Ordinal: 3, Value: w.run}})
		}
		if err == nil {
			err = run(w.tx[2], nil)
		}
		if err != nil {
			ex.ExecContext(ctx, "ROLLBACK", nil) // fails harmlessly when SQLite rolled back already
		}
		return err
	})
	return n, err
}

// row is one Result's integer column values and the columns it fills.
type row struct {
	ints  [cols]int64
	shape uint32
}

// group is the rows of a batch that one statement shape inserts.
type group struct {
	shape uint32
	rows  []int
}

// insertRows runs the insert statements over b inside the caller's
// transaction, grouping rows by shape.
func (w *Writer) insertRows(ctx context.Context, dc any, b []job.Result) (uint64, error) {
	if cap(w.rows) < len(b) {
		w.rows = make([]row, len(b))
	}
	rows := w.rows[:len(b)]
	for k := range w.groups {
		w.groups[k].rows = w.groups[k].rows[:0]
	}
	for i := range b {
		if b[i].Index > maxIdx {
			return 0, fmt.Errorf("index %d: beyond the store's limit of %d targets per sweep", b[i].Index, uint64(maxIdx)+1)
		}
		w.values(&b[i], &rows[i])
		sh := rows[i].shape
		if _, ok := w.stmts[sh]; !ok && len(w.stmts) >= maxShapes {
			sh = fullShape
		}
		w.group(sh, i)
	}
	var n uint64
	ran := 0
	for _, g := range w.groups {
		if len(g.rows) == 0 {
			continue
		}
		sh := g.shape
		ss, err := w.prepared(dc, sh)
		if err != nil {
			return 0, err
		}
		for lo := 0; lo < len(g.rows); {
			st, hi := ss.multi, lo+multi
			if hi > len(g.rows) {
				st, hi = ss.one, lo+1
			}
			w.args = w.args[:0]
			for _, i := range g.rows[lo:hi] {
				for _, c := range ss.bind {
					w.args = append(w.args, driver.NamedValue{Ordinal: len(w.args) + 1, Value: w.value(&b[i], &rows[i], int(c))})
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
				return 0, fmt.Errorf("index %d: %w", b[g.rows[lo]].Index, err)
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
	ss := &shapeStmts{bind: bindCols(sh)}
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

// group adds row i to the group of statement shape sh.
func (w *Writer) group(sh uint32, i int) {
	for k := range w.groups {
		if w.groups[k].shape == sh {
			w.groups[k].rows = append(w.groups[k].rows, i)
			return
		}
	}
	w.groups = append(w.groups, group{shape: sh, rows: []int{i}})
}

// intCols are the integer columns with default 0 (exit_code's is NULL).
const intCols = 1<<0 | 1<<3 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<16 | 1<<17 | 1<<18 | 1<<19

// values fills v with r's integer column values and its shape: the columns
// that differ from their default (0 or NULL), plus the key, host and status.
func (w *Writer) values(r *job.Result, v *row) {
	var exit int64
	if r.ExitCode != nil {
		exit = int64(*r.ExitCode)
	}
	trunc := r.Truncated || len(r.Stdout) > w.o.MaxOutput || len(r.Stderr) > w.o.MaxOutput
	v.ints = [cols]int64{0: w.sweep<<idxBits | int64(r.Index), 3: int64(r.Port),
		7: int64(r.RTT), 8: int64(r.Sent), 9: int64(r.Recv), 10: int64(r.RTTMin), 11: int64(r.RTTAvg), 12: int64(r.RTTMax),
		13: exit, 16: int64(boolInt(trunc)), 17: int64(r.Attempts), 18: unixNano(r.Start), 19: unixNano(r.End)}
	shape := uint32(always)
	for c, x := range &v.ints {
		if intCols&(1<<c) != 0 && x != 0 {
			shape |= 1 << c
		}
	}
	for c, set := range [...]bool{2: r.Addr != r.Host, 5: r.Class != "", 6: r.Error != "", 13: r.ExitCode != nil,
		14: r.Stdout != nil, 15: r.Stderr != nil, 20: r.Worker != ""} {
		if set {
			shape |= 1 << c
		}
	}
	for _, c := range aliased {
		if src := aliasOf[c]; shape&(1<<c) != 0 && shape&(1<<src) != 0 && v.ints[c] == v.ints[src] {
			shape |= aliasBit[c]
		}
	}
	for k, st := range statuses {
		if k > 0 && r.Status == st {
			shape |= uint32(k) << statusShift
		}
	}
	if r.Sent == 1 {
		shape |= sentOne
	}
	v.shape = shape
}

// value is column c of r (whose integers and shape are in v) for binding.
// Strings and integers are bound through pointers into r and v, which stay
// put until the statement has run: no copy on the heap per value.
func (w *Writer) value(r *job.Result, v *row, c int) any {
	if v.shape&(1<<c) == 0 {
		if nullDefault&(1<<c) != 0 {
			return nil
		}
		return int64(0)
	}
	switch c {
	case 1:
		return boxString(&r.Host)
	case 2:
		return boxString(&r.Addr) // set: differs from host (read back as host when NULL)
	case 4:
		return boxString((*string)(&r.Status))
	case 5:
		return boxString((*string)(&r.Class))
	case 6:
		return boxString(&r.Error)
	case 14:
		out, _ := bound(r.Stdout, w.o.MaxOutput)
		return out
	case 15:
		out, _ := bound(r.Stderr, w.o.MaxOutput)
		return out
	case 20:
		return boxString(&r.Worker)
	}
	return boxInt64(&v.ints[c])
}

// eface is the layout of an interface value (the runtime's eface).
type eface struct{ typ, data unsafe.Pointer }

// boxInt64 is any(*p) without the copy of *p that Go allocates for it: the
// interface points at *p, which must not change while the value is in use.
func boxInt64(p *int64) any {
	v := any(int64(0)) // no allocation: the runtime's static zero
	(*eface)(unsafe.Pointer(&v)).data = unsafe.Pointer(p)
	return v
}

// boxString is boxInt64 for a string.
func boxString(p *string) any {
	v := any("")
	(*eface)(unsafe.Pointer(&v)).data = unsafe.Pointer(p)
	return v
}

// nullDefault are the columns whose default is NULL: a zero value there
// (exit code 0, empty output, an empty addr) is data and is bound.
const nullDefault = 1<<2 | 1<<5 | 1<<6 | 1<<13 | 1<<14 | 1<<15 | 1<<20

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
