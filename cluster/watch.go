package cluster

// Watches on the cluster: a watch is a sweep that repeats. Its record goes
// into the KV bucket fanout_watches (write-once, like a sweep's); its clock
// is a JetStream message schedule (Nats-Schedule: @every D) on
// fanout.rounds.<watch>.clock, which the server itself fires as a tick on
// fanout.rounds.<watch>.tick, so no process of ours keeps time and none needs
// electing. Every worker sees every tick and expands it, by arithmetic, into
// the watch's fixed chunks; each chunk is polled by its owner, the live
// worker (heartbeats) with the highest rendezvous weight for (watch, chunk),
// so ownership holds while membership does and moves by about 1/N when it
// changes. Results are stored as a sweep's are, on
// fanout.wresults.<watch>.<round>.<chunk>.<slot> (first writer wins: one
// Result per (watch, round, index)), and a chunk's end on
// fanout.wresults.<watch>.<round>.<chunk>.done. Each change of a target's
// state is published once on fanout.events.<watch>, its event id as the
// message id.
//
//	KV fanout_watches        key <watch>: the WatchRecord; <watch>/stopped
//	stream FANOUT_ROUNDS     fanout.rounds.<watch>.clock (the schedule),
//	                         fanout.rounds.<watch>.tick (what it fires)
//	stream FANOUT_WRESULTS   fanout.wresults.<watch>.<round>.<chunk>.<slot|done>
//	stream FANOUT_EVENTS     fanout.events.<watch>

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/target"
)

// Names of what a cluster watch keeps on the server.
const (
	WatchesBucket      = "fanout_watches"
	RoundsStream       = "FANOUT_ROUNDS"
	WatchResultsStream = "FANOUT_WRESULTS"
	EventsStream       = "FANOUT_EVENTS"

	roundsPrefix     = "fanout.rounds."
	wresultsPrefix   = "fanout.wresults."
	eventsPrefix     = "fanout.events."
	stoppedKeySuffix = "/stopped"
)

// Watch bounds: the schedule fires at whole seconds (nats-server's @every
// takes at least one second), and a watch keeps its rounds' results for
// DefaultWatchRetention unless told otherwise.
const (
	MinWatchEvery         = time.Second
	DefaultWatchRetention = time.Hour
	// watchChunks is how many chunks a watch's targets are cut into, at
	// most: enough for rendezvous hashing to share them out evenly (a
	// worker's share is within a few percent of 1/N).
	watchChunks = 256
	// lsRounds is how many of the last complete rounds watch ls reads.
	lsRounds = 10
	// maxWatchChunk bounds a chunk (a record from the bus says its size).
	maxWatchChunk = 1 << 16
)

// ErrNoWatch: the watch is not (or no longer) on the server.
var ErrNoWatch = errors.New("no such watch on this server")

// WatchRecord is a watch as kept in the watches bucket, written once.
type WatchRecord struct {
	ID        string        `json:"id"`
	Spec      spec.Spec     `json:"spec"`
	Every     time.Duration `json:"every_ns"`
	Total     uint64        `json:"total"`      // targets in the watch's order
	ChunkSize uint64        `json:"chunk_size"` // targets per chunk (the last may be short)
	Chunks    uint64        `json:"chunks"`
	Created   time.Time     `json:"created"`
	Owner     string        `json:"owner"` // who submitted it (host-pid)
	// Retention is how long each round's results and events are kept.
	Retention time.Duration `json:"retention_ns"`
	// On pins the watch to the workers whose tags include all of these
	// (--on dc=paris): its chunks are shared out among those alone.
	On map[string]string `json:"on,omitempty"`
	// Rounds ends the watch after its round Rounds (0: until stopped): no
	// worker starts a round numbered above it, and its clock expires
	// (roundsClockTTL) shortly after.
	Rounds uint64 `json:"rounds,omitempty"`
	// Spread, when above 0, smears the starts of each worker's share of a
	// round over that much of the interval (at most Every), as a local
	// watch's --spread does over the whole round.
	Spread time.Duration `json:"spread_ns,omitempty"`

	Digest   string `json:"-"`
	Revision uint64 `json:"-"`
}

// sweepRecord is the record of one round seen as a sweep, for the checker
// and the publisher: same targets, chunks as tasks.
func (r WatchRecord) sweepRecord() Record {
	return Record{ID: r.ID, Spec: r.Spec, Total: r.Total, TaskSize: r.ChunkSize, Tasks: r.Chunks,
		Submitted: r.Created, Submitter: r.Owner, Retention: r.Retention, On: r.On, Digest: r.Digest, Revision: r.Revision}
}

func decodeWatchRecord(id string, b []byte) (WatchRecord, error) {
	var r WatchRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("watch %s: bad record: %w", id, err)
	}
	switch {
	case r.ID != id:
		return r, fmt.Errorf("watch %s: the record names watch %q", id, r.ID)
	case r.Every < MinWatchEvery || r.Every%time.Second != 0:
		return r, fmt.Errorf("watch %s: bad record: every %v", id, r.Every)
	case r.Retention <= 0 || r.Retention > MaxRetention:
		return r, fmt.Errorf("watch %s: bad record: retention %v", id, r.Retention)
	case r.Rounds > maxRounds(r.Every):
		return r, fmt.Errorf("watch %s: bad record: %d rounds every %v, at most %d", id, r.Rounds, r.Every, maxRounds(r.Every))
	case r.Spread < 0 || r.Spread > r.Every:
		return r, fmt.Errorf("watch %s: bad record: spread over %v, want 0 to the interval %v", id, r.Spread, r.Every)
	case r.ChunkSize > maxWatchChunk:
		// A chunk's results are gathered in memory before they are stored.
		return r, fmt.Errorf("watch %s: bad record: chunks of %d targets, at most %d", id, r.ChunkSize, maxWatchChunk)
	case r.Total == 0 && r.Chunks == 0:
	case r.ChunkSize == 0 || r.Chunks != r.Total/r.ChunkSize+min(r.Total%r.ChunkSize, 1):
		return r, fmt.Errorf("watch %s: bad record: %d chunks of %d do not make %d targets", id, r.Chunks, r.ChunkSize, r.Total)
	}
	if err := CheckTags(r.On); err != nil {
		return r, fmt.Errorf("watch %s: bad record: on: %w", id, err)
	}
	if err := r.Spec.Standalone(); err != nil {
		return r, fmt.Errorf("watch %s: %w", id, err)
	}
	r.Digest = digest(b)
	return r, nil
}

// maxRounds is the most rounds a watch every apart may be limited to: its
// clock, which expires after them (roundsClockTTL), must not outlive the
// stream's MaxAge, which would end it earlier.
func maxRounds(every time.Duration) uint64 {
	if every <= 0 || MaxRetention/every < 2 {
		return 0
	}
	return uint64(MaxRetention/every) - 2
}

// roundsClockTTL is the TTL of the clock of a watch of rounds rounds every
// apart: the server removes the schedule (and so stops ticking) half an
// interval after round rounds+1 is due. That tick, which no worker starts
// (past Rounds), tells the workers the watch ended; and round rounds's own
// tick, however late the server fires it, comes before the clock expires.
func roundsClockTTL(rounds uint64, every time.Duration) time.Duration {
	return time.Duration(rounds+1)*every + every/2
}

// ended reports whether round n is past the watch's last (Rounds).
func (r WatchRecord) ended(n uint64) bool { return r.Rounds > 0 && n > r.Rounds }

// WatchChunkSize is the chunk size of a watch of n targets of kind: about
// watchChunks chunks, each no larger than the kind's task size.
func WatchChunkSize(kind string, n uint64) uint64 {
	b := defaultTaskSize
	if t, ok := job.TraitsOf(kind); ok {
		b = t.TaskSize
	}
	return max(1, min(b[1], (n+watchChunks-1)/watchChunks))
}

// ensureWatch finds or creates what watches need (see ensure).
func (s *setup) ensureWatch(ctx context.Context, update bool) error {
	var err error
	s.watches, err = bucket(ctx, s.js, update, jetstream.KeyValueConfig{
		Bucket: WatchesBucket, Description: "fanout watches: spec, interval, owner",
		Storage: jetstream.FileStorage, History: 1, TTL: resultsMaxAge, Replicas: s.replicas,
	})
	if err != nil {
		return fmt.Errorf("kv %s: %w", WatchesBucket, err)
	}
	s.rounds, err = stream(ctx, s.js, update, jetstream.StreamConfig{
		Name: RoundsStream, Description: "fanout watch clocks (message schedules) and their ticks",
		Subjects: []string{roundsPrefix + ">"}, Storage: jetstream.FileStorage,
		// A schedule message is stored as a subject rollup (the server adds
		// the header), which needs AllowRollup.
		AllowMsgSchedules: true, AllowRollup: true, AllowMsgTTL: true,
		MaxMsgsPerSubject: 64, MaxAge: resultsMaxAge, Replicas: s.replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", RoundsStream, err)
	}
	s.wresults, err = stream(ctx, s.js, update, jetstream.StreamConfig{
		Name: WatchResultsStream, Description: "fanout watch results, one message per (watch, round, chunk, batch)",
		Subjects: []string{wresultsPrefix + ">"}, Storage: jetstream.FileStorage,
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
		MaxAge: resultsMaxAge, Duplicates: 2 * time.Minute, AllowMsgTTL: true, Replicas: s.replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", WatchResultsStream, err)
	}
	s.events, err = stream(ctx, s.js, update, jetstream.StreamConfig{
		Name: EventsStream, Description: "fanout watch change events, one per (watch, round, target)",
		Subjects: []string{eventsPrefix + ">"}, Storage: jetstream.FileStorage,
		MaxAge: resultsMaxAge, Duplicates: 10 * time.Minute, AllowMsgTTL: true, Replicas: s.replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", EventsStream, err)
	}
	return nil
}

func clockSubject(w string) string { return roundsPrefix + w + ".clock" }
func tickSubject(w string) string  { return roundsPrefix + w + ".tick" }
func eventSubject(w string) string { return eventsPrefix + w }

func wresultSubject(w string, round, chunk uint64, slot int) string {
	return fmt.Sprintf("%s%s.%d.%d.%d", wresultsPrefix, w, round, chunk, slot)
}

func wdoneSubject(w string, round, chunk uint64) string {
	return fmt.Sprintf("%s%s.%d.%d.done", wresultsPrefix, w, round, chunk)
}

// parseWResult reads fanout.wresults.<w>.<round>.<chunk>.<slot|done>.
func parseWResult(w, subject string) (round, chunk uint64, done, ok bool) {
	rest, ok := strings.CutPrefix(subject, wresultsPrefix+w+".")
	if !ok {
		return 0, 0, false, false
	}
	p := strings.Split(rest, ".")
	if len(p) != 3 {
		return 0, 0, false, false
	}
	var err1, err2 error
	round, err1 = strconv.ParseUint(p[0], 10, 64)
	chunk, err2 = strconv.ParseUint(p[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false, false
	}
	if p[2] == "done" {
		return round, chunk, true, true
	}
	if _, err := strconv.ParseUint(p[2], 10, 31); err != nil {
		return 0, 0, false, false
	}
	return round, chunk, false, true
}

// roundOf is the number of the round a tick fired for: ticks fire at
// anchor + k x every (k >= 1), anchor being the clock message's time to the
// second; after a server restart the schedule skips ahead, so k is rounded
// to the nearest (consecutive ticks still differ by one).
func roundOf(anchor time.Time, every time.Duration, fired time.Time) uint64 {
	k := math.Floor(float64(fired.Sub(anchor))/float64(every) + 0.5)
	if k < 1 {
		return 1
	}
	return uint64(k)
}

// tickTime is when a tick was due: its Nats-Schedule-Next header (the next
// firing) less the interval; else when it was stored.
func tickTime(h nats.Header, stored time.Time, every time.Duration) time.Time {
	if next, err := time.Parse(time.RFC3339Nano, h.Get("Nats-Schedule-Next")); err == nil {
		return next.Add(-every)
	}
	return stored
}

// WatchOptions tune a watch's submission.
type WatchOptions struct {
	ID        string        // default a new sweep-style id
	Every     time.Duration // whole seconds, at least MinWatchEvery
	Retention time.Duration // of each round's results; default DefaultWatchRetention
	ChunkSize uint64        // default WatchChunkSize
	// On pins the watch to the workers tagged with all of these (ParseTags).
	On map[string]string
	// Rounds ends the watch after that many rounds (0: until StopWatch);
	// at most MaxWatchRounds(Every).
	Rounds uint64
	// Spread smears each worker's share of a round over that much of the
	// interval (0: all at once; at most Every).
	Spread time.Duration
}

// MaxWatchRounds is the most rounds (WatchOptions.Rounds) a watch every
// apart may be limited to: the rounds must end within the server's
// MaxRetention.
func MaxWatchRounds(every time.Duration) uint64 { return maxRounds(every) }

// SubmitWatch puts the watch's record into the watches bucket (write-once)
// and starts its clock: a message schedule that fires a tick every
// o.Every. n is the number of targets the spec visits (see Submit).
func (c *Client) SubmitWatch(ctx context.Context, sp spec.Spec, n uint64, o WatchOptions) (WatchRecord, error) {
	sp, err := sp.Inline(nil)
	if err != nil {
		return WatchRecord{}, err
	}
	if _, stdin, err := sp.SplitStdin(); err != nil {
		return WatchRecord{}, err
	} else if stdin != nil || sp.StdinDigest() != "" {
		return WatchRecord{}, errors.New("a cluster watch does not take --stdin")
	}
	if max := sp.MaxTargets; max == 0 && n > target.DefaultMaxTargets || max > 0 && n > max {
		return WatchRecord{}, fmt.Errorf("%w: %d targets; raise the limit with --max-targets N", target.ErrTooMany, n)
	}
	if o.Every < MinWatchEvery || o.Every%time.Second != 0 {
		return WatchRecord{}, fmt.Errorf("every %v: a cluster watch's interval is whole seconds, at least %v", o.Every, MinWatchEvery)
	}
	ret := o.Retention
	if ret == 0 {
		ret = DefaultWatchRetention
	}
	if ret < o.Every || ret > MaxRetention {
		return WatchRecord{}, fmt.Errorf("retention %v: want from the interval (%v) to %v", ret, o.Every, MaxRetention)
	}
	id := o.ID
	if id == "" {
		id = NewSweepID()
	}
	if !ValidSweepID(id) {
		return WatchRecord{}, fmt.Errorf("watch id %q: want letters, digits, - and _", id)
	}
	if err := CheckTags(o.On); err != nil {
		return WatchRecord{}, fmt.Errorf("on: %w", err)
	}
	if o.Rounds > maxRounds(o.Every) {
		return WatchRecord{}, fmt.Errorf("rounds %d every %v: at most %d (the rounds must end within %v)", o.Rounds, o.Every, maxRounds(o.Every), MaxRetention)
	}
	if o.Spread < 0 || o.Spread > o.Every {
		return WatchRecord{}, fmt.Errorf("spread over %v: want 0 to the interval %v", o.Spread, o.Every)
	}
	size := o.ChunkSize
	if size == 0 {
		size = WatchChunkSize(sp.Job, n)
	}
	if size > maxWatchChunk {
		return WatchRecord{}, fmt.Errorf("chunk size %d: at most %d", size, maxWatchChunk)
	}
	h, _ := os.Hostname()
	rec := WatchRecord{ID: id, Spec: sp, Every: o.Every, Total: n, ChunkSize: size, Chunks: n/size + min(n%size, 1),
		Created: time.Now().UTC(), Owner: fmt.Sprintf("%s-%d", h, os.Getpid()), Retention: ret, On: o.On,
		Rounds: o.Rounds, Spread: o.Spread}
	b, err := json.Marshal(rec)
	if err != nil {
		return WatchRecord{}, err
	}
	if limit := int(c.nc.MaxPayload()) - 4096; len(b) > limit {
		return WatchRecord{}, fmt.Errorf("watch spec is %d bytes, over the server's %d-byte message limit (a long host list?)", len(b), c.nc.MaxPayload())
	}
	if rec.Revision, err = c.s.watches.Create(ctx, id, b); err != nil {
		return WatchRecord{}, fmt.Errorf("watch %s: %w", id, err)
	}
	rec.Digest = digest(b)
	// The clock: the server fires a tick on the tick subject every interval;
	// with Rounds, the clock message expires after them (a schedule whose
	// message is gone fires no more), so that the watch ends in the
	// cluster, without any process of ours.
	clock := &nats.Msg{
		Subject: clockSubject(id), Data: []byte(id),
		Header: nats.Header{
			"Nats-Schedule":        []string{"@every " + o.Every.String()},
			"Nats-Schedule-Target": []string{tickSubject(id)},
			"Nats-Schedule-TTL":    []string{ret.String()},
		},
	}
	if o.Rounds > 0 {
		clock.Header.Set("Nats-TTL", roundsClockTTL(o.Rounds, o.Every).String())
	} else {
		// Else the stream's MaxAge would remove it, and so end the watch,
		// after MaxRetention.
		clock.Header.Set("Nats-TTL", "never")
	}
	_, err = c.s.js.PublishMsg(ctx, clock)
	if err != nil {
		return rec, fmt.Errorf("watch %s: start its clock: %w (the server must be nats-server 2.14 or later)", id, err)
	}
	return rec, nil
}

// LookupWatch returns a watch's record.
func (c *Client) LookupWatch(ctx context.Context, id string) (WatchRecord, error) {
	return getWatch(ctx, c.s, id)
}

func getWatch(ctx context.Context, s *setup, id string) (WatchRecord, error) {
	if !ValidSweepID(id) {
		return WatchRecord{}, fmt.Errorf("watch id %q: want letters, digits, - and _", id)
	}
	e, err := s.watches.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return WatchRecord{}, fmt.Errorf("watch %q: %w (see fanout watch ls)", id, ErrNoWatch)
	}
	if err != nil {
		return WatchRecord{}, fmt.Errorf("watch %s: %w", id, err)
	}
	rec, err := decodeWatchRecord(id, e.Value())
	rec.Revision = e.Revision()
	return rec, err
}

// watchStopped reports whether watch id was stopped.
func watchStopped(ctx context.Context, s *setup, id string) (bool, time.Time, error) {
	e, err := s.watches.Get(ctx, id+stoppedKeySuffix)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, err
	}
	return true, e.Created(), nil
}

// StopWatch stops a watch: the stop mark first (workers start no round of
// a stopped watch, even one whose tick was already on its way), then its
// schedule is removed (a message without a schedule on the clock subject).
// Rounds already running finish.
func (c *Client) StopWatch(ctx context.Context, id string) error {
	if _, err := c.LookupWatch(ctx, id); err != nil {
		return err
	}
	if _, err := c.s.watches.Create(ctx, id+stoppedKeySuffix, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("watch %s: %w", id, err)
	}
	if _, err := c.s.js.Publish(ctx, clockSubject(id), []byte("stopped")); err != nil {
		return fmt.Errorf("watch %s: stop its clock: %w", id, err)
	}
	return nil
}

// rendezvous is the weight of worker for chunk of watch: the chunk belongs
// to the live worker of highest weight (highest-random-weight hashing).
func rendezvous(watch string, chunk uint64, worker string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(watch))
	var b [9]byte
	b[0] = 0
	for i := range 8 {
		b[i+1] = byte(chunk >> (8 * i))
	}
	h.Write(b[:])
	h.Write([]byte(worker))
	return mix64(h.Sum64())
}

// mix64 spreads FNV's bits (splitmix64's finalizer): FNV alone weighs
// names that differ in their last byte too alike.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Owner is the worker among workers that owns chunk of watch ("" if none).
func Owner(watch string, chunk uint64, workers []string) string {
	var best string
	var bw uint64
	for _, w := range workers {
		if x := rendezvous(watch, chunk, w); best == "" || x > bw || x == bw && w > best {
			best, bw = w, x
		}
	}
	return best
}

// chunkDone is what a chunk's done mark says.
type chunkDone struct {
	Worker string `json:"worker"`
	// Changes is how many change events the chunk's run published (and
	// had acknowledged) before this mark: a follower prints them all
	// before the round's end.
	Changes int       `json:"changes,omitempty"`
	Up      int       `json:"up"`
	Down    int       `json:"down"`
	Error   int       `json:"error"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Due     time.Time `json:"due"`
}
