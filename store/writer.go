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
	Batch     int           // Results per transaction at most; 0 means 8192
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

	batches chan []job.Result // full batches to commit; its capacity is the backpressure
	free    chan []job.Result // committed batches' slices, reused
	done    chan struct{}
	err     atomic.Pointer[error]

	conn *sql.Conn
	// The insert statements are the driver's own, used through conn.Raw:
	// database/sql's per-argument conversions cost a tenth of the writer's CPU.
	ins  driver.Stmt // multi rows
	ins1 driver.Stmt // one row
	args []driver.NamedValue

	written atomic.Uint64 // rows inserted (duplicates excluded)
	commits atomic.Uint64

	crashIn int64 // fault injection for the kill tests; see crashEnv
}

// crashEnv, when set to N in the environment, makes the process SIGKILL
// itself in the middle of its N-th transaction (rows inserted, not yet
// committed): the resume test's "killed during a commit", made certain.
const crashEnv = "FANOUT_TEST_CRASH_IN_COMMIT"

// insertSQL inserts rows Results, ignoring one whose (sweep, idx) is already
// stored: a redelivered cluster task or a race between runs adds nothing.
// Many rows per statement: the per-statement cost dominates small rows.
func insertSQL(rows int) string {
	const row = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	return `INSERT OR IGNORE INTO results(sweep_idx, host, addr, port, status, class, error,
	rtt_ns, sent, recv, rtt_min_ns, rtt_avg_ns, rtt_max_ns, exit_code, stdout, stderr, truncated,
	attempts, start_ns, end_ns, worker) VALUES` + strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
}

// cols is the number of values per row of insertSQL; multi the rows per
// multi-row statement (SQLite allows 32766 variables per statement).
const (
	cols  = 21
	multi = 64
)

// NewWriter starts a Writer appending Results to sweep id's current run.
func (s *Store) NewWriter(id int64, o WriterOptions) (*Writer, error) {
	if o.Batch <= 0 {
		o.Batch = 8192
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
		batches: make(chan []job.Result, 4), free: make(chan []job.Result, 6), done: make(chan struct{})}
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(run),0) FROM runs WHERE sweep=?`, id).Scan(&w.run); err != nil {
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	// A big page cache keeps the B-tree's inner pages in memory for shuffled
	// sweeps of millions of targets (inserts land anywhere in the key range).
	if _, err := conn.ExecContext(ctx, `PRAGMA cache_size=-65536`); err != nil {
		conn.Close()
		return nil, s.describe("write results to", err)
	}
	err = conn.Raw(func(dc any) error {
		p, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("sqlite driver without PrepareContext")
		}
		var err error
		if w.ins, err = p.PrepareContext(ctx, insertSQL(multi)); err != nil {
			return err
		}
		w.ins1, err = p.PrepareContext(ctx, insertSQL(1))
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
	return w, nil
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
	w.closeStmts()
	w.conn.Close()
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (w *Writer) closeStmts() {
	w.conn.Raw(func(any) error {
		for _, st := range []driver.Stmt{w.ins, w.ins1} {
			if st != nil {
				st.Close()
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
		n, err = w.insertRows(ctx, b)
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
// transaction.
func (w *Writer) insertRows(ctx context.Context, b []job.Result) (uint64, error) {
	var n uint64
	for lo := 0; lo < len(b); {
		st, hi := w.ins, lo+multi
		if hi > len(b) {
			st, hi = w.ins1, lo+1
		}
		w.args = w.args[:0]
		for i := lo; i < hi; i++ {
			if b[i].Index > maxIdx {
				return 0, fmt.Errorf("index %d: beyond the store's limit of %d targets per sweep", b[i].Index, uint64(maxIdx)+1)
			}
			w.args = w.appendRow(w.args, &b[i])
		}
		if w.crashIn > 0 && int64(w.commits.Load())+1 == w.crashIn && lo >= len(b)/2 {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				p.Kill() // SIGKILL: no deferred function, no rollback, no close
			}
			select {}
		}
		res, err := st.(driver.StmtExecContext).ExecContext(ctx, w.args)
		if err != nil {
			return 0, fmt.Errorf("index %d: %w", b[lo].Index, err)
		}
		if k, err := res.RowsAffected(); err == nil {
			n += uint64(k)
		}
		lo = hi
	}
	return n, nil
}

func (w *Writer) appendRow(args []driver.NamedValue, r *job.Result) []driver.NamedValue {
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
	for _, v := range [cols]any{w.sweep<<idxBits | int64(r.Index), r.Host, addr, int64(r.Port),
		string(r.Status), nullIfEmpty(string(r.Class)), nullIfEmpty(r.Error),
		int64(r.RTT), int64(r.Sent), int64(r.Recv), int64(r.RTTMin), int64(r.RTTAvg), int64(r.RTTMax),
		exit, stdout, stderr, int64(boolInt(r.Truncated || t1 || t2)),
		int64(r.Attempts), unixNano(r.Start), unixNano(r.End), nullIfEmpty(r.Worker)} {
		args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: v})
	}
	return args
}

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
