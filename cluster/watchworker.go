package cluster

// A worker's side of cluster watches (see watch.go): every tick of every
// watch reaches every worker; each polls the chunks it owns by rendezvous
// hashing over the live workers, and takes over the unfinished chunks of
// open rounds whose owner left.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/internal/backoff"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

// Event is a change of a watched target's state, as published on
// fanout.events.<watch> (JSON), its ID the message id.
type Event struct {
	ID         string     `json:"id"`
	Watch      string     `json:"watch"`
	Round      uint64     `json:"round"`
	Kind       watch.Kind `json:"change"`
	Result     job.Result `json:"result"`
	PrevStatus job.Status `json:"prev_status,omitempty"`
	PrevClass  job.Class  `json:"prev_class,omitempty"`
}

// Change is the event as the watch package's Change.
func (e Event) Change() watch.Change {
	return watch.Change{ID: e.ID, Watch: e.Watch, Round: e.Round, Kind: e.Kind, Result: e.Result,
		PrevStatus: e.PrevStatus, PrevClass: e.PrevClass}
}

// changesAckWait bounds the wait for the server's acknowledgements of a
// chunk's change events.
const changesAckWait = 30 * time.Second

// watchScanEvery is how often a worker looks for open rounds' chunks that
// lost their owner.
const watchScanEvery = time.Second

// watchRun is a watch as one worker runs it: rebuilt once, its job kept
// across rounds (an ssh job keeps its connections), its open rounds, and
// the last stored state of the chunks it polled.
type watchRun struct {
	sr     *sweepRun // set, order, job, checker; err: this worker's refusal
	rec    WatchRecord
	anchor time.Time

	mu     sync.Mutex
	rounds map[uint64]*openRound
	state  map[uint64]*chunkState // chunk -> its statuses in state.round
	// last is, per chunk, closed when this worker's latest run of it has
	// published its changes: the next round's run of the chunk waits for
	// it, so that changes are reckoned round after round.
	last map[uint64]chan struct{}
	// over: a tick past the watch's last round (rec.Rounds) came; the run
	// is closed once its open rounds are done.
	over bool
}

// openRound is a round ticked and not yet complete.
type openRound struct {
	n       uint64
	due     time.Time
	seen    time.Time
	started map[uint64]bool // chunks this worker started
}

// chunkState is a chunk's stored statuses in one round, by position in the
// chunk (codeNone: unknown).
type chunkState struct {
	round uint64
	codes []stateCode
}

type stateCode struct {
	status job.Status
	class  job.Class
}

// watchLoop follows every watch's ticks until ctx is done.
func (w *Worker) watchLoop(ctx context.Context, ready func()) {
	runs := map[string]*watchRun{}
	defer func() {
		for _, wr := range runs {
			wr.close()
		}
	}()
	ticks := make(chan jetstream.Msg, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.followTicks(ctx, ticks, ready)
	}()
	scan := time.NewTicker(watchScanEvery)
	defer scan.Stop()
	var live liveCache
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ticks:
			id, ok := strings.CutPrefix(m.Subject(), roundsPrefix)
			id, ok2 := strings.CutSuffix(id, ".tick")
			if !ok || !ok2 || !ValidSweepID(id) {
				continue
			}
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			// A tick stored after the watch was stopped starts nothing;
			// one stored before it does, however late this worker reads
			// it (the other workers started their share of that round),
			// unless the watch stopped long ago (a worker starting reads
			// the last tick of every watch).
			stopped, at, err := watchStopped(ctx, w.s, id)
			if err != nil || stopped && (!meta.Timestamp.Before(at) || time.Since(at) > 2*WorkerTTL) {
				continue
			}
			wr := w.watchRunFor(ctx, runs, id)
			if wr == nil {
				continue
			}
			due := tickTime(m.Headers(), meta.Timestamp, wr.rec.Every)
			if time.Since(due) > wr.keepOpen() {
				continue // a round given up already
			}
			n := roundOf(wr.anchor, wr.rec.Every, due)
			if wr.rec.ended(n) {
				// Past the watch's last round: nothing starts; the run
				// closes once its open rounds are done (the scan).
				wr.mu.Lock()
				wr.over = true
				wr.mu.Unlock()
				continue
			}
			// A tick read late (the last one, read when this worker
			// started following, or one it lagged behind): some of the
			// round's chunks may be done already.
			lateTick := time.Since(due) > wr.rec.Every/2
			wr.mu.Lock()
			if wr.rounds[n] == nil {
				wr.rounds[n] = &openRound{n: n, due: due, seen: time.Now(), started: map[uint64]bool{}}
				w.opts.Metrics.round(id)
			}
			older := wr.openBefore(n)
			wr.mu.Unlock()
			// A chunk's rounds start in order (see watchRun.last): the
			// open rounds' chunks that lost their owner first, then the
			// new round's, all by the same view of the live workers.
			alive := live.get(ctx, w, wr.rec)
			for _, o := range older {
				w.startOwned(ctx, &wg, wr, o, alive, true)
			}
			w.startOwned(ctx, &wg, wr, n, alive, lateTick)
		case <-scan.C:
			for id, wr := range runs {
				// A stopped watch starts no round (see the tick above); the
				// rounds open when it stopped finish.
				stopped, _, err := watchStopped(ctx, w.s, id)
				stopped = err == nil && stopped
				if ended := wr.ended(); (stopped || ended) && wr.openRounds() == 0 || wr.idle() {
					switch {
					case stopped:
						w.opts.Logf("watch %s: stopped", id)
						w.opts.Metrics.watchStopped(id)
					case ended:
						w.opts.Logf("watch %s: ended after round %d", id, wr.rec.Rounds)
						w.opts.Metrics.watchStopped(id)
					}
					wr.close()
					delete(runs, id)
					continue
				}
				wr.mu.Lock()
				open := wr.openBefore(^uint64(0))
				wr.mu.Unlock()
				alive := live.get(ctx, w, wr.rec)
				for _, n := range open {
					w.startOwned(ctx, &wg, wr, n, alive, true)
				}
			}
		}
	}
}

// followTicks sends every watch's last tick, then every tick stored from
// then on, to ticks (a worker that starts, or comes back, mid-round takes
// its share of that round, which the others, seeing its heartbeat, leave
// to it), through a streamReader: replaced when it stalls (the worker would
// keep its heartbeat and poll none of its chunks again), resuming after
// the last tick read. ready is called once it follows.
func (w *Worker) followTicks(ctx context.Context, ticks chan<- jetstream.Msg, ready func()) {
	f := newStreamReader(w.s.js, RoundsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{roundsPrefix + "*.tick"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
	f.opened = ready
	defer f.Stop()
	fails := 0
	for ctx.Err() == nil {
		m, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) {
				return
			}
			fails++
			w.opts.Logf("watch ticks: %v", err)
			backoff.Sleep(ctx, fetchRetry.Delay(fails))
			continue
		}
		fails = 0
		select {
		case ticks <- m:
		case <-ctx.Done():
		}
	}
}

// watchRunFor is the cached run of watch id, rebuilt from its record the
// first time; nil when it cannot run here (logged once).
func (w *Worker) watchRunFor(ctx context.Context, runs map[string]*watchRun, id string) *watchRun {
	if wr, ok := runs[id]; ok {
		if wr.sr.err != nil {
			return nil
		}
		return wr
	}
	rec, err := getWatch(ctx, w.s, id)
	if err != nil {
		w.logSweep(id, "watch %s: %v", id, err)
		return nil
	}
	anchor, err := clockAnchor(ctx, w.s, id)
	if err != nil && rec.Rounds > 0 && errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // ended after its rounds: its clock expired
	}
	if err != nil {
		w.logSweep(id, "watch %s: its clock: %v", id, err)
		return nil
	}
	if len(runs) >= 256 {
		w.logSweep(id, "watch %s: this worker already runs %d watches; left to others", id, len(runs))
		return nil
	}
	srec := rec.sweepRecord()
	sr, err := w.rebuildFor(ctx, srec, true)
	var leave *leaveError
	switch {
	case errors.As(err, &leave):
		w.logSweep(id, "worker %s: watch %s %s: left to other workers", w.opts.Name, id, leave.Error())
		sr = &sweepRun{rec: srec, err: leave}
	case err != nil:
		w.logSweep(id, "watch %s: %v", id, err)
		return nil
	}
	wr := &watchRun{sr: sr, rec: rec, anchor: anchor, rounds: map[uint64]*openRound{}, state: map[uint64]*chunkState{}, last: map[uint64]chan struct{}{}}
	runs[id] = wr
	if sr.err != nil {
		return nil
	}
	w.opts.Logf("worker %s: watch %s: %s every %v, %d targets in %d chunks", w.opts.Name, id, rec.Spec.Job, rec.Every, rec.Total, rec.Chunks)
	return wr
}

func (wr *watchRun) close() {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if c, ok := wr.sr.job.(io.Closer); ok && c != nil {
		_ = c.Close()
	}
	wr.sr.job = nil
}

// openBefore are the open rounds before n, oldest first (a chunk's rounds
// in order: see watchRun.last). wr.mu is held.
func (wr *watchRun) openBefore(n uint64) []uint64 {
	open := make([]uint64, 0, len(wr.rounds))
	for r := range wr.rounds {
		if r < n {
			open = append(open, r)
		}
	}
	slices.Sort(open)
	return open
}

// ended: the watch's last round (rec.Rounds) is behind: a tick past it
// came, or (that tick lost to a server restart) its time is long gone.
func (wr *watchRun) ended() bool {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if wr.rec.Rounds == 0 {
		return false
	}
	return wr.over || time.Since(wr.anchor) > time.Duration(wr.rec.Rounds+1)*wr.rec.Every+wr.keepOpen()
}

func (wr *watchRun) openRounds() int {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return len(wr.rounds)
}

// idle: no round open for long; forget the watch (a refused one is
// retried then).
func (wr *watchRun) idle() bool {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return wr.sr.err != nil && len(wr.rounds) == 0
}

// keepOpen is how long a round stays open for takeovers: long enough for a
// dead owner's heartbeat to expire, and a few rounds.
func (wr *watchRun) keepOpen() time.Duration {
	return 2*WorkerTTL + 3*wr.rec.Every
}

// lookBack is how many rounds back a chunk's last stored state is looked
// for: every round that can still be open (keepOpen), and one more.
func (wr *watchRun) lookBack() uint64 {
	return min(uint64(wr.keepOpen()/wr.rec.Every)+2, 64)
}

// startOwned starts the chunks of round n this worker owns among live and
// has not started; with scan, first drops the round when it is complete or
// too old, and asks the server which chunks are done (a dead owner's
// unfinished chunks are then this worker's if it weighs most among those
// alive).
func (w *Worker) startOwned(ctx context.Context, wg *sync.WaitGroup, wr *watchRun, n uint64, live []string, scan bool) {
	wr.mu.Lock()
	rd := wr.rounds[n]
	wr.mu.Unlock()
	if rd == nil || wr.sr.job == nil {
		return
	}
	var done map[uint64]bool
	if scan {
		var err error
		done, err = w.chunksDone(ctx, wr.rec, n)
		if err != nil {
			return
		}
		if uint64(len(done)) >= wr.rec.Chunks || time.Since(rd.seen) > wr.keepOpen() {
			wr.mu.Lock()
			if uint64(len(done)) < wr.rec.Chunks {
				w.opts.Logf("watch %s round %d: %d of %d chunks not done after %v; given up", wr.rec.ID, n, wr.rec.Chunks-uint64(len(done)), wr.rec.Chunks, wr.keepOpen())
			}
			delete(wr.rounds, n)
			wr.mu.Unlock()
			return
		}
	}
	var owned []uint64
	var targets uint64
	for c := uint64(0); c < wr.rec.Chunks; c++ {
		if done[c] || Owner(wr.rec.ID, c, live) != w.opts.Name {
			continue
		}
		owned = append(owned, c)
		targets += min((c+1)*wr.rec.ChunkSize, wr.rec.Total) - c*wr.rec.ChunkSize
	}
	// With a spread, the share this worker takes as the round ticks starts
	// over it, chunk after chunk, each at its place in the share (a chunk's
	// targets start together: a few at a time over a round). The waits hold
	// no slot of the worker's gate, which its sweeps share. A --rate lower
	// than the spread's wins, as in a local watch; chunks taken later (a
	// dead owner's, a retry) start at once, to end the round in time.
	spread := !scan && wr.rec.Spread > 0 && targets > 1
	if r := float64(targets) / wr.rec.Spread.Seconds(); spread && wr.rec.Spec.Rate > 0 && wr.rec.Spec.Rate < r {
		spread = false
	}
	begin, before := time.Now(), uint64(0)
	for _, c := range owned {
		var at time.Time
		if spread {
			at = begin.Add(time.Duration(float64(wr.rec.Spread) * float64(before) / float64(targets)))
		}
		before += min((c+1)*wr.rec.ChunkSize, wr.rec.Total) - c*wr.rec.ChunkSize
		wr.mu.Lock()
		started, tried := rd.started[c]
		if started {
			wr.mu.Unlock()
			continue
		}
		if scan && !tried {
			// Not this worker's when the round ticked (a retry is tried).
			w.opts.Metrics.takeover(wr.rec.ID)
		}
		rd.started[c] = true
		prev, mine := wr.last[c], make(chan struct{})
		wr.last[c] = mine
		wr.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(mine)
			if err := w.runChunk(ctx, wr, rd, c, prev, at); err != nil && ctx.Err() == nil {
				w.opts.Logf("watch %s round %d chunk %d: %v; retried", wr.rec.ID, n, c, err)
				w.opts.Metrics.chunkFailed(wr.rec.ID)
				wr.mu.Lock()
				rd.started[c] = false // the next scan runs it again
				wr.mu.Unlock()
			}
		}()
	}
}

// chunksDone are the chunks of round n whose done mark is stored.
func (w *Worker) chunksDone(ctx context.Context, rec WatchRecord, n uint64) (map[uint64]bool, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := w.s.wresults.Info(ictx, jetstream.WithSubjectFilter(fmt.Sprintf("%s%s.%d.*.done", wresultsPrefix, rec.ID, n)))
	if err != nil {
		return nil, err
	}
	done := make(map[uint64]bool, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		if r, c, d, ok := parseWResult(rec.ID, subj); ok && d && r == n && c < rec.Chunks {
			done[c] = true
		}
	}
	return done, nil
}

// liveCache reads the live workers at most once per scan; get picks those
// that may run a watch: its kind allowed, its tags (On) theirs.
type liveCache struct {
	at    time.Time
	beats []Heartbeat
}

func (l *liveCache) get(ctx context.Context, w *Worker, rec WatchRecord) []string {
	kind := rec.Spec.Job
	if time.Since(l.at) > watchScanEvery/2 {
		c := &Client{nc: w.nc, s: w.s}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		beats, err := c.Workers(lctx)
		cancel()
		if err == nil || len(l.beats) == 0 {
			l.beats, l.at = beats, time.Now()
		}
	}
	var out []string
	for _, h := range l.beats {
		if slices.Contains(h.Allow, kind) && h.Name != w.opts.Name && TagsMatch(h.Tags, rec.On) {
			out = append(out, h.Name)
		}
	}
	// This worker is alive, whatever the bucket says yet.
	if w.allow[kind] && TagsMatch(w.opts.Tags, rec.On) {
		out = append(out, w.opts.Name)
	}
	return out
}

// runChunk polls chunk c of round rd, stores its results (one per index,
// whoever else ran it too), publishes the changes its stored results make,
// then the chunk's done mark.
//
// at, when set, is when the chunk is to start (a spread round's).
func (w *Worker) runChunk(ctx context.Context, wr *watchRun, rd *openRound, c uint64, prev <-chan struct{}, at time.Time) error {
	rec := wr.rec
	lo := c * rec.ChunkSize
	hi := min(lo+rec.ChunkSize, rec.Total)
	sr := wr.sr
	opts := rec.Spec.EngineOptions()
	opts.Concurrency = w.opts.Concurrency
	if rec.Spec.Concurrency > 0 && rec.Spec.Concurrency < opts.Concurrency {
		opts.Concurrency = rec.Spec.Concurrency
	}
	opts.Gate, opts.Pacer = w.gate, sr.rate
	// This worker's run of the chunk's round before ends first: its changes
	// are reckoned round after round, and a round that overran does not
	// poll the same hosts twice at once (an ssh job's pool lends a host's
	// connection to one run: a second would dial another).
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !at.IsZero() && !backoff.Sleep(ctx, time.Until(at)) {
		return ctx.Err()
	}
	wr.mu.Lock()
	j := sr.job
	wr.mu.Unlock()
	if j == nil {
		return nil
	}
	if _, batch := j.(job.Batcher); batch {
		w.batchMu.Lock()
		defer w.batchMu.Unlock()
		opts.Concurrency = int(min(uint64(opts.Concurrency), hi-lo))
	}
	start := time.Now()
	results := make([]job.Result, 0, hi-lo)
	var cnt engine.Counters
	w.outstanding.Add(int64(hi - lo))
	err := engine.Run(ctx, sr.set, target.Slice(sr.order, lo, hi), j, opts, &cnt, func(r job.Result) {
		r.Worker = w.opts.Name
		results = append(results, r)
		w.outstanding.Add(-1)
	})
	w.outstanding.Add(-int64(hi-lo) + int64(len(results)))
	if err != nil {
		return err
	}
	if uint64(len(results)) != hi-lo {
		return fmt.Errorf("%d results of %d targets", len(results), hi-lo)
	}
	var mine []job.Result
	pub := &chunkPublisher{w: w, t: task{Sweep: rec.ID, Chunk: c, Lo: lo, Hi: hi, Job: rec.Spec.Job}, sr: sr,
		subject: func(slot int) string { return wresultSubject(rec.ID, rd.n, c, slot) },
		stream:  w.s.wresults,
		stored:  func(rs []job.Result) { mine = append(mine, rs...) },
	}
	if err := pub.publish(ctx, results); err != nil {
		return fmt.Errorf("publish results: %w", err)
	}
	w.resultsDone.Add(int64(len(mine)))
	changes, err := w.publishChanges(ctx, wr, rd.n, c, mine, len(mine) == len(results))
	if err != nil {
		return err
	}
	d := chunkDone{Worker: w.opts.Name, Start: start, End: time.Now(), Due: rd.due, Changes: changes}
	for _, r := range results {
		switch r.Status {
		case job.Up:
			d.Up++
		case job.Down:
			d.Down++
		default:
			d.Error++
		}
	}
	b, _ := json.Marshal(d)
	subj := wdoneSubject(rec.ID, rd.n, c)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = w.s.js.PublishMsg(pctx, &nats.Msg{Subject: subj, Data: b, Header: nats.Header{"Nats-Msg-Id": []string{subj}}},
		jetstream.WithMsgTTL(rec.Retention), jetstream.WithRetryAttempts(20), jetstream.WithRetryWait(250*time.Millisecond))
	var apiErr *jetstream.APIError
	if err != nil && !errors.As(err, &apiErr) { // refused: another run marked it first
		return fmt.Errorf("done mark: %w", err)
	}
	w.tasksDone.Add(1)
	w.opts.Metrics.chunk(rec.ID, d, rec.Every, results, len(mine))
	return nil
}

// publishChanges publishes the changes the results this worker stored for
// chunk c of round n make against the chunk's stored state in round n-1
// (kept from this worker's own run of it, else read back from the
// server), each once (its event id is the message id). whole says mine
// holds every index of the chunk: the state is then kept for the next
// round.
func (w *Worker) publishChanges(ctx context.Context, wr *watchRun, n, c uint64, mine []job.Result, whole bool) (int, error) {
	rec := wr.rec
	lo := c * rec.ChunkSize
	hi := min(lo+rec.ChunkSize, rec.Total)
	wr.mu.Lock()
	prev := wr.state[c]
	wr.mu.Unlock()
	// The chunk's last stored state: round n-1's, or the newest before it
	// (a round not stored at all: the watch was stopped, no worker was
	// there, or its owner died and the rounds it left were given up), as
	// far back as a round can stay open.
	for back := uint64(1); back <= wr.lookBack() && back < n && (prev == nil || prev.round != n-back); back++ {
		if st := w.storedState(ctx, wr, n-back, c); st != nil {
			prev = st
			break
		}
	}
	if prev != nil && prev.round >= n {
		prev = nil
	}
	next := &chunkState{round: n, codes: make([]stateCode, hi-lo)}
	published := 0
	var kinds map[watch.Kind]int // published, for the metrics
	for _, r := range mine {
		k, ok := target.Position(wr.sr.order, r.Index)
		if !ok || k < lo || k >= hi {
			continue
		}
		cur := stateCode{r.Status, r.Class}
		next.codes[k-lo] = cur
		var was stateCode
		if prev != nil {
			was = prev.codes[k-lo]
		}
		kind, changed := changeOf(was, cur)
		if !changed {
			continue
		}
		ev := Event{ID: watch.EventID(rec.ID, n, watch.Key(wr.sr.set.At(r.Index))), Watch: rec.ID, Round: n, Kind: kind,
			Result: r, PrevStatus: was.status, PrevClass: was.class}
		b, err := json.Marshal(ev)
		if err != nil {
			return 0, err
		}
		// Many chunks publish at once (a first round where most targets
		// are down: one event per target): past the client's bound on
		// unacknowledged publishes, wait for acks as long as the chunk's
		// changes may take, not the default 200 ms (its error would fail
		// the chunk after its results were stored, and its retry, storing
		// none, publishes no changes: they would be lost).
		if _, err := w.s.js.PublishMsgAsync(&nats.Msg{Subject: eventSubject(rec.ID), Data: b,
			Header: nats.Header{"Nats-Msg-Id": []string{ev.ID}}}, jetstream.WithMsgTTL(rec.Retention),
			jetstream.WithStallWait(changesAckWait)); err != nil {
			return 0, fmt.Errorf("publish change: %w", err)
		}
		published++
		if kinds == nil {
			kinds = map[watch.Kind]int{}
		}
		kinds[kind]++
	}
	select {
	case <-w.s.js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(changesAckWait):
		return 0, fmt.Errorf("changes not acknowledged by the server after %v", changesAckWait)
	}
	w.opts.Metrics.changed(rec.ID, kinds)
	wr.mu.Lock()
	if whole {
		wr.state[c] = next
	} else {
		delete(wr.state, c) // read back next round
	}
	wr.mu.Unlock()
	return published, nil
}

// storedState reads chunk c's stored results of round n back from the
// server (nil: none stored, as in a watch's first round).
func (w *Worker) storedState(ctx context.Context, wr *watchRun, n, c uint64) *chunkState {
	if n == 0 {
		return nil
	}
	rec := wr.rec
	lo := c * rec.ChunkSize
	hi := min(lo+rec.ChunkSize, rec.Total)
	st := &chunkState{round: n, codes: make([]stateCode, hi-lo)}
	found := false
	for slot := 0; slot < int(hi-lo)+1; slot++ {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := w.s.wresults.GetLastMsgForSubject(gctx, wresultSubject(rec.ID, n, c, slot))
		cancel()
		if err != nil {
			break
		}
		rs, err := decodeBatch(m.Data)
		if err != nil {
			continue
		}
		for i := range rs {
			k, err := wr.sr.chk.check(c, &rs[i])
			if err != nil {
				continue
			}
			st.codes[k-lo] = stateCode{rs[i].Status, rs[i].Class}
			found = true
		}
	}
	if !found {
		return nil
	}
	return st
}

// changeOf is the change from state was (zero: unknown, a first round) to
// cur, as the local watch reports them with --confirm 1/1: a target down
// (or in error) when first seen or after being up, up after being down, or
// down for another reason.
func changeOf(was, cur stateCode) (watch.Kind, bool) {
	switch {
	case was.status == "" && cur.status == job.Up:
		return "", false
	case was.status == "" || was.status == job.Up && cur.status != job.Up:
		if cur.status == job.Up {
			return "", false
		}
		return watch.Down, true
	case was.status != job.Up && cur.status == job.Up:
		return watch.Up, true
	case was.status != job.Up && cur.status != job.Up && was.class != cur.class:
		return watch.Class, true
	}
	return "", false
}
