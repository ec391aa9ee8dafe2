package store

// The history of a watch: round n of watch w is a sweep of the store, with
// a row in rounds linking them. A WatchRecorder is the watch.Observer that
// writes it: its methods only queue what they are given, and one goroutine
// of its own creates each round's sweep, feeds its Results to the store's
// Writer, finishes it and prunes the rounds retention lets go. The poller
// never waits on the disk: a store that falls behind by more than
// maxPending Results drops them, and a full disk loses the rounds it cannot
// hold, each said once, until there is room again.

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/watch"
)

// WatchOptions say how a watch is kept.
type WatchOptions struct {
	Keep       time.Duration // rounds that ended longer ago are pruned; 0 keeps them
	KeepRounds int           // at most this many rounds are kept (the newest); 0: no bound
	Version    string        // fanout version, recorded with each round's sweep
	// Lists returns the contents of the spec's "-" and @FILE entries as
	// round n reads them (one reader per entry, Targets then Excludes).
	// Needed when the spec has such entries; called from the recorder's
	// goroutine.
	Lists func(round uint64) ([]io.Reader, error)
	// OnError is told, at most once per round and from the recorder's
	// goroutine, that the round could not be recorded (fully): a full
	// disk, a store that fell behind. The watch goes on; later rounds are
	// recorded when they can be.
	OnError func(round uint64, err error)
	// OnRecorded is called from the recorder's goroutine once every Result
	// of round n that it was given is committed (stored of them).
	OnRecorded func(r watch.Round, stored uint64)
	Writer     WriterOptions // for each round's Writer (OnError is the recorder's)
}

// maxPending bounds the events queued between the poller and the store: a
// store that falls this far behind drops Results rather than hold the
// poller or grow without bound.
const maxPending = 1 << 18

// WatchRecorder records a watch's rounds into a store. It is a
// watch.Observer.
type WatchRecorder struct {
	s    *Store
	id   int64
	spec spec.Spec
	o    WatchOptions

	mu      sync.Mutex
	pending []event
	dropped map[uint64]uint64 // round -> Results dropped because the queue was full
	closing bool
	wake    chan struct{}
	done    chan struct{}

	// The recorder goroutine's own state.
	cur        *roundRec
	unfinished []int64 // sweeps of rounds that could not be finished, retried
}

var _ watch.Observer = (*WatchRecorder)(nil)

type eventKind uint8

const (
	evStart eventKind = iota
	evResult
	evEnd
)

type event struct {
	kind  eventKind
	round watch.Round
	res   job.Result
}

// roundRec is the round being recorded.
type roundRec struct {
	n        uint64
	sweep    int64 // 0: not recorded
	w        *Writer
	reported bool // OnError was called for it
}

// ErrWatchRunning is matched (errors.Is) by the error of OpenWatch for a
// watch another process runs.
var ErrWatchRunning = errors.New("watch is running")

// watchKey is what makes a watch the same watch: its spec (every may change).
func watchKey(spec spec.Spec) (string, []byte, error) {
	opts, err := redact(spec.JobOptions)
	if err != nil {
		return "", nil, err
	}
	spec.JobOptions = opts
	js, err := json.Marshal(spec)
	if err != nil {
		return "", nil, fmt.Errorf("record watch: %w", err)
	}
	sum := sha256.Sum256(js)
	return hex.EncodeToString(sum[:]), js, nil
}

// OpenWatch opens (creating it) the database at path for a watch of spec
// every interval, and returns its recorder and the number of the watch's
// next round: 1 for a new watch, one past its last recorded round for a
// watch kept there (the same spec), so that a watch killed and started
// again continues its numbering. Rounds the previous run left unfinished
// (killed) are marked interrupted. One process runs a watch at a time: a
// second gets an error matching ErrWatchRunning. Errors come before any
// round: the caller reports them before it polls.
func OpenWatch(path string, spec spec.Spec, every time.Duration, o WatchOptions) (*WatchRecorder, uint64, error) {
	if every <= 0 {
		return nil, 0, fmt.Errorf("record watch in %s: interval %v, want more than 0", path, every)
	}
	if o.Keep < 0 || o.KeepRounds < 0 {
		return nil, 0, fmt.Errorf("record watch in %s: negative retention (keep %v, keep rounds %d)", path, o.Keep, o.KeepRounds)
	}
	if spec.Listed() > 0 && o.Lists == nil {
		return nil, 0, fmt.Errorf("record watch in %s: the spec reads - or @FILE: give WatchOptions.Lists, or inline it", path)
	}
	key, js, err := watchKey(spec)
	if err != nil {
		return nil, 0, err
	}
	s, err := Open(path)
	if err != nil {
		return nil, 0, err
	}
	r := &WatchRecorder{s: s, spec: spec, o: o, dropped: map[uint64]uint64{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	next, err := r.begin(key, js, every)
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	go r.loop()
	return r, next, nil
}

// begin finds or creates the watch, takes its run lock, settles what a
// killed run left, and returns the next round's number.
func (r *WatchRecorder) begin(key string, js []byte, every time.Duration) (uint64, error) {
	s := r.s
	now := time.Now().UnixNano()
	tx, err := s.db.Begin()
	if err != nil {
		return 0, s.describe("record watch in", err)
	}
	defer tx.Rollback()
	err = tx.QueryRow(`SELECT id FROM watches WHERE key=?`, key).Scan(&r.id)
	if errors.Is(err, sql.ErrNoRows) {
		var res sql.Result
		res, err = tx.Exec(`INSERT INTO watches(key, spec, every_ns, keep_ns, keep_rounds, created_ns) VALUES(?,?,?,?,?,?)`,
			key, string(js), int64(every), int64(r.o.Keep), r.o.KeepRounds, now)
		if err == nil {
			r.id, err = res.LastInsertId()
		}
	} else if err == nil {
		_, err = tx.Exec(`UPDATE watches SET every_ns=?, keep_ns=?, keep_rounds=? WHERE id=?`,
			int64(every), int64(r.o.Keep), r.o.KeepRounds, r.id)
	}
	if err != nil {
		return 0, s.describe("record watch in", err)
	}
	if err := s.lockKey(-r.id, func(int) error {
		return fmt.Errorf("%s: watch %d is running in another process: one process polls a watch at a time: %w", s.path, r.id, ErrWatchRunning)
	}); err != nil {
		return 0, err
	}
	// A round left running was killed with the process that ran it: what
	// it committed stays, marked interrupted.
	if _, err := tx.Exec(`UPDATE runs SET end_ns=last_ns, state=?, reason=?
		WHERE end_ns IS NULL AND sweep IN (SELECT sweep FROM rounds WHERE watch=? AND end_ns IS NULL)`,
		string(Interrupted), "the watch stopped during this round", r.id); err != nil {
		return 0, s.describe("record watch in", err)
	}
	if _, err := tx.Exec(`UPDATE sweeps SET state=?, reason=? WHERE state=? AND id IN (SELECT sweep FROM rounds WHERE watch=? AND end_ns IS NULL)`,
		string(Interrupted), "the watch stopped during this round", string(Running), r.id); err != nil {
		return 0, s.describe("record watch in", err)
	}
	var last int64
	if err := tx.QueryRow(`SELECT COALESCE(MAX(round), 0) FROM rounds WHERE watch=?`, r.id).Scan(&last); err != nil {
		return 0, s.describe("record watch in", err)
	}
	if err := tx.Commit(); err != nil {
		s.unlockSweep(-r.id)
		return 0, s.describe("record watch in", err)
	}
	return uint64(last) + 1, nil
}

// ID is the watch's id in the store (what `fanout results --watch` takes).
func (r *WatchRecorder) ID() int64 { return r.id }

// Store is the recorder's store (read it; the recorder writes).
func (r *WatchRecorder) Store() *Store { return r.s }

// RoundStart queues the start of a round.
func (r *WatchRecorder) RoundStart(rd watch.Round) { r.push(event{kind: evStart, round: rd}) }

// Result queues one Result of round n.
func (r *WatchRecorder) Result(n uint64, res job.Result) {
	r.push(event{kind: evResult, round: watch.Round{N: n}, res: res})
}

// Change is not stored: a round's Results are, and its change count.
func (*WatchRecorder) Change(watch.Change) {}

// RoundEnd queues the end of a round.
func (r *WatchRecorder) RoundEnd(rd watch.Round) { r.push(event{kind: evEnd, round: rd}) }

func (r *WatchRecorder) push(e event) {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return
	}
	if e.kind == evResult && len(r.pending) >= maxPending {
		r.dropped[e.round.N]++
		r.mu.Unlock()
		return
	}
	r.pending = append(r.pending, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Close records what is queued (a round started and not ended is finished
// as interrupted), stops the recorder and closes the store.
func (r *WatchRecorder) Close() error {
	r.mu.Lock()
	already := r.closing
	r.closing = true
	r.mu.Unlock()
	if already {
		return nil
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	<-r.done
	for _, id := range r.unfinished {
		r.s.unlockSweep(id)
	}
	return r.s.Close()
}

func (r *WatchRecorder) loop() {
	defer close(r.done)
	var batch []event
	for {
		<-r.wake
		for {
			r.mu.Lock()
			batch, r.pending = r.pending, batch[:0]
			closing := r.closing && len(batch) == 0
			r.mu.Unlock()
			if closing {
				if r.cur != nil {
					r.end(watch.Round{N: r.cur.n, End: time.Now()}, false)
				}
				return
			}
			if len(batch) == 0 {
				break
			}
			for i := range batch {
				r.handle(&batch[i])
				batch[i] = event{} // let the Result's bytes go
			}
		}
	}
}

func (r *WatchRecorder) handle(e *event) {
	switch e.kind {
	case evStart:
		if r.cur != nil { // a round without its end: finish it as interrupted
			r.end(watch.Round{N: r.cur.n, End: time.Now()}, false)
		}
		r.start(e.round)
	case evResult:
		c := r.cur
		if c == nil || c.w == nil || c.n != e.round.N {
			return
		}
		if err := c.w.Write(e.res); err != nil {
			r.fail(c, err)
		}
	case evEnd:
		if r.cur != nil && r.cur.n == e.round.N {
			r.end(e.round, true)
		}
	}
}

// fail says once for round c that it cannot be recorded.
func (r *WatchRecorder) fail(c *roundRec, err error) {
	if c.reported {
		return
	}
	c.reported = true
	if r.o.OnError != nil {
		r.o.OnError(c.n, r.cannot(c.n, err))
	}
}

func (r *WatchRecorder) cannot(n uint64, err error) error {
	if IsDiskFull(err) {
		return fmt.Errorf("watch %d in %s: cannot record round %d: disk full: polling goes on, and recording resumes once there is room", r.id, r.s.path, n)
	}
	return fmt.Errorf("watch %d in %s: cannot record round %d: %w", r.id, r.s.path, n, err)
}

// start reserves round rd.N, creates its sweep and opens its Writer.
func (r *WatchRecorder) start(rd watch.Round) {
	c := &roundRec{n: rd.N}
	r.cur = c
	r.retryUnfinished()
	s := r.s
	late := boolInt(rd.Late)
	if _, err := s.db.Exec(`INSERT INTO rounds(watch, round, due_ns, start_ns, late, targets) VALUES(?,?,?,?,?,?)`,
		r.id, int64(rd.N), unixNano(rd.Due), unixNano(rd.Start), late, rd.Targets); err != nil {
		r.fail(c, s.describe("record round in", err))
		return
	}
	meta := Meta{Total: uint64(max(rd.Targets, 0)), Version: r.o.Version, Start: rd.Start}
	if r.spec.Listed() > 0 {
		lists, err := r.o.Lists(rd.N)
		if err != nil {
			r.fail(c, err)
			return
		}
		meta.Lists = lists
	}
	id, err := s.CreateSweep(r.spec, meta)
	if err != nil {
		r.fail(c, err)
		return
	}
	c.sweep = id
	if _, err := s.db.Exec(`UPDATE rounds SET sweep=? WHERE watch=? AND round=?`, id, r.id, int64(rd.N)); err != nil {
		r.fail(c, s.describe("record round in", err))
		r.unfinished = append(r.unfinished, id)
		c.sweep = 0
		return
	}
	wo := r.o.Writer
	wo.OnError = nil // Write returns it, and fail says it once
	if c.w, err = s.NewWriter(id, wo); err != nil {
		r.fail(c, err)
		r.unfinished = append(r.unfinished, id)
		c.sweep = 0
	}
}

// end commits the round's Results and finishes its sweep (complete: the
// loop said the round ended; else it was cut short), then prunes.
func (r *WatchRecorder) end(rd watch.Round, complete bool) {
	c := r.cur
	r.cur = nil
	s := r.s
	r.mu.Lock()
	dropped := r.dropped[c.n]
	delete(r.dropped, c.n)
	r.mu.Unlock()
	if c.sweep == 0 {
		return
	}
	werr := c.w.Close()
	stored := c.w.Written()
	if werr != nil {
		r.fail(c, werr)
	}
	if dropped > 0 {
		r.fail(c, fmt.Errorf("%d results dropped: the store fell %d results behind the poller", dropped, maxPending))
	}
	state, reason := Finished, ""
	switch {
	case werr != nil:
		state, reason = Interrupted, werr.Error()
	case dropped > 0:
		state, reason = Interrupted, fmt.Sprintf("%d results dropped: the store fell behind", dropped)
	case !complete:
		state, reason = Interrupted, "the watch stopped during this round"
	}
	if err := s.FinishSweep(c.sweep, state, reason); err != nil {
		r.fail(c, err)
		r.unfinished = append(r.unfinished, c.sweep)
		return
	}
	if _, err := s.db.Exec(`UPDATE rounds SET end_ns=?, late=?, up=?, down=?, error=?, changes=? WHERE watch=? AND round=?`,
		unixNano(orNow(rd.End)), boolInt(rd.Late), rd.Up, rd.Down, rd.Error, rd.Changes, r.id, int64(c.n)); err != nil {
		r.fail(c, s.describe("record round in", err))
		return
	}
	if state == Finished && r.o.OnRecorded != nil {
		rd.N = c.n
		r.o.OnRecorded(rd, stored)
	}
	if err := r.prune(); err != nil {
		r.fail(c, err)
	}
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// retryUnfinished finishes, as interrupted, the sweeps of rounds that could
// not be finished when they ended (a full disk), now that there may be room.
func (r *WatchRecorder) retryUnfinished() {
	keep := r.unfinished[:0]
	for _, id := range r.unfinished {
		if err := r.s.FinishSweep(id, Interrupted, "not fully recorded"); err != nil {
			keep = append(keep, id)
		}
	}
	r.unfinished = keep
}

// pruneChunk is the most Results one pruning transaction deletes: the
// round being recorded waits on it (its writer shares the file).
const pruneChunk = 20000

// prune deletes the rounds retention lets go, oldest first, with their
// sweeps and Results. Freed pages are reused by later rounds, which bounds
// the file's size.
func (r *WatchRecorder) prune() error {
	if r.o.KeepRounds == 0 && r.o.Keep == 0 {
		return nil
	}
	s := r.s
	q := `SELECT round, COALESCE(sweep, 0) FROM rounds WHERE watch=? AND end_ns IS NOT NULL AND (0`
	args := []any{r.id}
	if r.o.KeepRounds > 0 {
		q += ` OR round <= (SELECT MAX(round) FROM rounds WHERE watch=?) - ?`
		args = append(args, r.id, r.o.KeepRounds)
	}
	if r.o.Keep > 0 {
		q += ` OR end_ns < ?`
		args = append(args, time.Now().Add(-r.o.Keep).UnixNano())
	}
	q += `) ORDER BY round`
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return s.describe("prune rounds in", err)
	}
	type old struct{ round, sweep int64 }
	var olds []old
	for rows.Next() {
		var o old
		if err := rows.Scan(&o.round, &o.sweep); err != nil {
			rows.Close()
			return s.describe("prune rounds in", err)
		}
		olds = append(olds, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.describe("prune rounds in", err)
	}
	for _, o := range olds {
		if err := s.deleteRound(r.id, o.round, o.sweep); err != nil {
			return err
		}
	}
	return nil
}

// deleteRound deletes round n of watch w and its sweep: the Results in
// chunks, then the rest in one transaction (a round whose row is still
// there after a crash is deleted again the next time).
func (s *Store) deleteRound(w, n, sweep int64) error {
	if sweep > 0 {
		for {
			res, err := s.db.Exec(`DELETE FROM results WHERE sweep_idx IN (SELECT sweep_idx FROM results WHERE `+inSweep(sweep)+` LIMIT ?)`, pruneChunk)
			if err != nil {
				return s.describe("prune rounds in", err)
			}
			if k, _ := res.RowsAffected(); k < pruneChunk {
				break
			}
		}
	}
	tx, err := s.db.Begin()
	if err != nil {
		return s.describe("prune rounds in", err)
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM runs WHERE sweep=?`, `DELETE FROM lists WHERE sweep=?`, `DELETE FROM result_counts WHERE sweep=?`, `DELETE FROM sweeps WHERE id=?`} {
		if _, err := tx.Exec(q, sweep); err != nil {
			return s.describe("prune rounds in", err)
		}
	}
	if _, err := tx.Exec(`DELETE FROM fanout_meta WHERE key >= ? AND key < ?`, noteKey(sweep, ""), noteKey(sweep, "\xff")); err != nil {
		return s.describe("prune rounds in", err)
	}
	if _, err := tx.Exec(`DELETE FROM rounds WHERE watch=? AND round=?`, w, n); err != nil {
		return s.describe("prune rounds in", err)
	}
	if err := tx.Commit(); err != nil {
		return s.describe("prune rounds in", err)
	}
	return nil
}
