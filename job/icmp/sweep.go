// The sweep: one RunBatch, its state, and how it starts and stops. Its
// goroutines each have a file: intake.go (the feed and the name lookups),
// send.go with sendmmsg.go and senderr.go (the sender), receive.go (a
// receiver per socket), reap.go (the reaper); slots.go and result.go hold
// what they share. RunBatch runs on the engine's goroutine.

package icmp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

const (
	batchMax = 64 // messages per sendmmsg / recvmmsg
	// reapTick is how often an idle receiver reports an empty socket, and
	// how often at most the reaper wakes.
	reapTick = 5 * time.Millisecond
)

// sweep is one RunBatch. A target goes from the engine through the feed
// into the intake queue; the sender gives it a slot and sends its requests;
// each request is resolved by a receiver (a reply or an ICMP error), by the
// reaper (its timeout) or by the sender (it could not leave); whoever
// resolves a target's last request emits its Result and frees its slot.
//
// Who may touch what: the fields down to maxBatch are set before the
// goroutines start and only read after; mu guards the fields after it, up
// to in, except where a field says otherwise; the rest synchronize
// themselves.
type sweep struct {
	j        *Job
	count    int
	interval int64
	timeout  int64
	payload  int
	key      key
	id       uint16
	epoch    time.Time
	emit     func(job.Result) // from any goroutine, outside mu
	stats    *counters        // atomic
	limiter  *rate.Limiter    // the sender's
	maxBatch int

	// conns are opened by the sender under mu, which reads them without it
	// (it is their only writer); RunBatch closes them and the reaper reads
	// them under mu; a receiver is handed its socket.
	conns   [2]*conn // [0] IPv4, [1] IPv6: opened on first use, by the sender
	connErr [2]error // the sender's, under mu
	hasAddr [2]int8  // the sender's: this machine has an address of the family (0 unknown, 1 yes, -1 no)
	drained [2]int64 // under mu: every reply that arrived before it was applied (receivers write, the reaper reads)

	mu       sync.Mutex
	closed   bool // sockets closed: open no more (RunBatch sets it, the sender reads it)
	slots    []slot
	bits     []uint64 // per slot: words of "resolved" bits, then words of "answered" bits
	words    int      // words per bitset; set before the goroutines start
	free     []uint32
	timeouts ring[timeout] // pushed by the sender, popped by the reaper
	resends  ring[resend]  // pushed and popped by the sender only, under mu
	seq      uint16        // the sender's, under mu

	in         intake        // its own lock: the feed and the lookups push, the sender takes
	kick       chan struct{} // the sender wakes the reaper when its queue was empty
	inflight   atomic.Int64  // targets received and not yet emitted
	senderDone atomic.Bool
	done       chan struct{} // closed by checkDone, from any goroutine
	doneOnce   sync.Once
	wg         sync.WaitGroup // the feed, sender, reaper and receivers; the sender adds receivers under mu

	// spare holds the tables above while the sweep runs; its own fields
	// the sender and each receiver fill as they end (spare.go).
	spare *spare
}

// RunBatch pings every target received on in (Count requests each) and
// emits one Result per target. See job.Batcher. cfg.Timeout applies when
// the Config has none; cfg.Retries does not apply (Count is how many
// requests a target gets); the engine enforces cfg.Concurrency and cfg.Rate.
func (j *Job) RunBatch(ctx context.Context, in <-chan target.Target, cfg job.BatchConfig, emit func(job.Result)) error {
	s := newSweep(j, cfg, emit)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	s.wg.Add(3)
	go s.reaper(sctx)
	go s.feed(sctx, in)
	go s.sender(sctx)

	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		if c != nil {
			c.close() // ends the receivers' reads and any blocked write
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	j.putSpare(s)
	return err
}

// newSweep is a sweep of j's Config, with cfg's timeout when it has none
// and a fresh key and echo id.
func newSweep(j *Job, cfg job.BatchConfig, emit func(job.Result)) *sweep {
	s := &sweep{
		j:        j,
		count:    j.cfg.Count,
		interval: int64(j.cfg.Interval),
		timeout:  int64(DefaultTimeout),
		payload:  j.cfg.PayloadSize,
		epoch:    time.Now(),
		emit:     emit,
		stats:    &j.stats,
		maxBatch: batchMax,
		kick:     make(chan struct{}, 1),
		in:       intake{wake: make(chan struct{}, 1)},
		done:     make(chan struct{}),
	}
	switch {
	case j.cfg.Timeout > 0:
		s.timeout = int64(j.cfg.Timeout)
	case cfg.Timeout > 0:
		s.timeout = int64(cfg.Timeout)
	}
	if j.cfg.Rate > 0 {
		burst := min(batchMax, max(1, int(j.cfg.Rate/100)))
		s.limiter = rate.NewLimiter(rate.Limit(j.cfg.Rate), burst)
		s.maxBatch = burst
	}
	s.words = (s.count + 63) / 64
	j.takeSpare().use(s)
	var kb [18]byte
	_, _ = rand.Read(kb[:])
	s.key = key{binary.LittleEndian.Uint64(kb[0:]), binary.LittleEndian.Uint64(kb[8:])}
	s.id = binary.LittleEndian.Uint16(kb[16:])
	return s
}

func (s *sweep) now() int64 { return int64(time.Since(s.epoch)) }

// checkDone is called when the sender has nothing left to send and whenever
// Results were emitted: the sweep is over when both hold.
func (s *sweep) checkDone() {
	if s.senderDone.Load() && s.inflight.Load() == 0 {
		s.doneOnce.Do(func() { close(s.done) })
	}
}

// deliver emits finished Results outside the lock.
func (s *sweep) deliver(out []job.Result) []job.Result {
	if len(out) == 0 {
		return out
	}
	for _, r := range out {
		s.emit(r)
	}
	s.inflight.Add(-int64(len(out)))
	s.checkDone()
	return out[:0]
}

// family is the index of a family in sweep.conns: 0 for IPv4, 1 for IPv6.
func family(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}
