package watch

// Per-target state across rounds: the one place where a watch's memory grows
// with N. A target is a 16-byte record in a slice addressed by its index in
// the round's Set (no map, no string), plus 8 bytes of output hash for the
// job kinds that have an output (exec, ssh), allocated on the first such
// Result: a /16 is 1 MB of state, a /8 256 MB.

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/fanout/fanout/job"
)

// Bounds and defaults of the confirm and flap rules. The history of a rule
// is a word of bits per target, one per round, hence the maxima.
const (
	MaxConfirmRounds = 8  // --confirm N/M: M at most 8
	MaxFlapRounds    = 16 // --flap K/M: M at most 16
	// DefaultFlapChanges and DefaultFlapRounds are the default flap rule:
	// more than 4 changes of state within the last 10 rounds is flapping
	// (a target that went down and came back twice is not; one that
	// changes every other round is, from its fifth change). A flapping
	// target settles once it has held one state for a whole window.
	DefaultFlapChanges = 4
	DefaultFlapRounds  = 10
)

// Confirm is the --confirm rule: a change is reported once the new state
// held in N of the last M rounds. The zero Confirm is 1/1 (every change at
// once).
type Confirm struct{ N, M int }

// Flap is the flap rule: a target whose state changed more than K times in
// its last M rounds is reported once as flapping, its changes are held back
// until it has held one state for M rounds, and then it is reported once as
// settled. The zero Flap is the default rule (DefaultFlapChanges in
// DefaultFlapRounds); K < 0 turns flap detection off.
type Flap struct{ K, M int }

// ParseConfirm reads "N/M" (1 <= N <= M <= MaxConfirmRounds).
func ParseConfirm(s string) (Confirm, error) {
	n, m, err := parseRatio(s)
	if err != nil || n < 1 || n > m || m > MaxConfirmRounds {
		return Confirm{}, fmt.Errorf("confirm %q: want N/M, a change held in N of the last M rounds, with 1 <= N <= M <= %d (1/1: every change, 2/3: held in two of three rounds)", s, MaxConfirmRounds)
	}
	return Confirm{n, m}, nil
}

// ParseFlap reads "K/M" (1 <= K < M <= MaxFlapRounds), or "off".
func ParseFlap(s string) (Flap, error) {
	if s == "off" {
		return Flap{K: -1}, nil
	}
	k, m, err := parseRatio(s)
	if err != nil || k < 1 || k >= m || m > MaxFlapRounds {
		return Flap{}, fmt.Errorf("flap %q: want K/M, flapping when the state changed more than K times in the last M rounds, with 1 <= K < M <= %d (default %d/%d), or off", s, MaxFlapRounds, DefaultFlapChanges, DefaultFlapRounds)
	}
	return Flap{k, m}, nil
}

func parseRatio(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("no /")
	}
	n, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, err
	}
	m, err := strconv.Atoi(b)
	return n, m, err
}

func (c Confirm) String() string { return fmt.Sprintf("%d/%d", c.N, c.M) }
func (f Flap) String() string {
	if f.K < 0 {
		return "off"
	}
	return fmt.Sprintf("%d/%d", f.K, f.M)
}

// A state code packs what a change is about into a byte: 0 is "not seen
// yet", codeUp is up, and 2 and above are (status, class) pairs interned in
// codes; lossyBit marks an up target whose loss is above the threshold.
const (
	codeNone uint8 = 0
	codeUp   uint8 = 1
	lossyBit uint8 = 0x80
	maxCodes       = 0x7f
)

// Record flags.
const (
	flagFlapping uint8 = 1 << iota
	flagHashed         // hashes[i] holds an output hash
)

// rec is one target's state. 16 bytes.
type rec struct {
	since int64  // unix ns: when the confirmed state began
	flaps uint16 // bit k: the observed state changed k rounds ago
	hist  uint8  // bit k: the observation k rounds ago was cand
	state uint8  // confirmed state code (codeNone: no observation yet)
	last  uint8  // the last observed code
	cand  uint8  // the state awaiting confirmation
	flags uint8
}

// notUp is an interned (status, class) of a target that is not up.
type notUp struct {
	status job.Status
	class  job.Class
}

// codes interns the (status, class) pairs seen; a watch sees a handful.
type codes struct {
	byPair map[notUp]uint8
	pairs  []notUp // by code - 2
}

func (c *codes) code(st job.Status, cl job.Class) uint8 {
	if st == job.Up {
		return codeUp
	}
	p := notUp{st, cl}
	if k, ok := c.byPair[p]; ok {
		return k
	}
	if c.byPair == nil {
		c.byPair = map[notUp]uint8{}
	}
	if len(c.pairs) >= maxCodes-2 {
		// A job that invents classes without end: the rest share one
		// code, so their changes among themselves go unreported.
		return maxCodes
	}
	c.pairs = append(c.pairs, p)
	k := uint8(len(c.pairs) + 1)
	c.byPair[p] = k
	return k
}

// decode is the status and class of a code (lossy or not).
func (c *codes) decode(k uint8) (job.Status, job.Class) {
	k &^= lossyBit
	switch {
	case k == codeNone:
		return "", ""
	case k == codeUp:
		return job.Up, ""
	case int(k)-2 < len(c.pairs):
		p := c.pairs[k-2]
		return p.status, p.class
	}
	return job.Error, "other"
}

// rules is what a tracker reports, checked.
type rules struct {
	confirm Confirm
	flap    Flap
	loss    float64 // fraction above which an up target is lossy; 0: off
}

// tracker holds every target's state and applies the rules.
type tracker struct {
	rules
	recs   []rec
	hashes []uint64 // nil until a Result carries output
	codes  codes
}

func newTracker(n uint64, r rules) *tracker {
	return &tracker{rules: r, recs: make([]rec, n)}
}

// event is what observe decides: a change of kind, from the previous state
// (prev) that held since.
type event struct {
	kind  Kind
	prev  uint8
	since int64
}

// observe applies one Result of target i (seen at now) and returns the
// change it makes, if any.
func (t *tracker) observe(i uint64, r *job.Result, now time.Time) (event, bool) {
	x := &t.recs[i]
	o := t.codes.code(r.Status, r.Class)
	if o == codeUp && t.loss > 0 && r.Sent > 0 && r.Loss() > t.loss {
		o |= lossyBit
	}
	ns := now.UnixNano()
	hash, hashed := outputHash(r)

	if x.state == codeNone {
		// A new target: what it is now is its state. Not up (or lossy)
		// is news; up is the baseline.
		*x = rec{since: ns, state: o, last: o, cand: o, flags: x.flags}
		t.setHash(i, x, hash, hashed)
		switch {
		case o&^lossyBit != codeUp:
			return event{kind: Down, since: ns}, true
		case o&lossyBit != 0:
			return event{kind: Loss, since: ns}, true
		}
		return event{}, false
	}

	changed := o != x.last
	x.last = o
	x.flaps <<= 1
	if changed {
		x.flaps |= 1
	}
	if t.flap.K >= 0 {
		window := uint16(1)<<t.flapRounds() - 1
		if x.flags&flagFlapping != 0 {
			if x.flaps&window != 0 {
				return event{}, false // still flapping: held back
			}
			ev := event{kind: Settled, prev: x.state, since: x.since}
			x.flags &^= flagFlapping
			x.state, x.cand, x.hist, x.since = o, o, 0, ns
			t.setHash(i, x, hash, hashed)
			return ev, true
		}
		if bits.OnesCount16(x.flaps&window) > t.flapChanges() {
			x.flags |= flagFlapping
			x.hist = 0
			return event{kind: Flapping, prev: x.state, since: x.since}, true
		}
	}

	if o == x.state {
		x.hist <<= 1
		if hashed && (x.flags&flagHashed == 0 || t.hashes[i] != hash) {
			had := x.flags&flagHashed != 0
			t.setHash(i, x, hash, hashed)
			if had {
				return event{kind: Output, prev: x.state, since: x.since}, true
			}
		}
		return event{}, false
	}
	if o == x.cand {
		x.hist = x.hist<<1 | 1
	} else {
		x.cand, x.hist = o, 1
	}
	n, m := t.confirmRule()
	if bits.OnesCount8(x.hist&(uint8(1<<m)-1)) < n {
		return event{}, false
	}
	ev := event{kind: kindOf(x.state, o), prev: x.state, since: x.since}
	x.state, x.hist, x.since = o, 0, ns
	t.setHash(i, x, hash, hashed)
	return ev, true
}

func (t *tracker) confirmRule() (n, m int) {
	if t.confirm.N == 0 {
		return 1, 1
	}
	return t.confirm.N, t.confirm.M
}

func (t *tracker) flapRounds() int {
	if t.flap.M == 0 {
		return DefaultFlapRounds
	}
	return t.flap.M
}

func (t *tracker) flapChanges() int {
	if t.flap.M == 0 {
		return DefaultFlapChanges
	}
	return t.flap.K
}

// kindOf names the change from state a to state b (a != b, both seen).
func kindOf(a, b uint8) Kind {
	upA, upB := a&^lossyBit == codeUp, b&^lossyBit == codeUp
	switch {
	case upA && !upB:
		return Down
	case !upA && upB:
		return Up
	case !upA && !upB:
		return Class
	}
	return Loss
}

func (t *tracker) setHash(i uint64, x *rec, h uint64, ok bool) {
	if !ok {
		return
	}
	if t.hashes == nil {
		t.hashes = make([]uint64, len(t.recs))
	}
	t.hashes[i] = h
	x.flags |= flagHashed
}

// outputHash is the FNV-1a hash of a command's stdout and exit code; ok is
// false for a Result without either (ping, tcp).
func outputHash(r *job.Result) (uint64, bool) {
	if r.ExitCode == nil && r.Stdout == nil {
		return 0, false
	}
	h := fnv.New64a()
	h.Write(r.Stdout)
	if r.ExitCode != nil {
		var b [9]byte
		b[0] = 1
		e := uint64(int64(*r.ExitCode))
		for k := 0; k < 8; k++ {
			b[k+1] = byte(e >> (8 * k))
		}
		h.Write(b[:])
	}
	return h.Sum64(), true
}

// left is a target of the previous list that the reloaded one lacks: its
// old index and its record.
type left struct {
	index uint64
	rec   rec
}

// remap moves the records of the targets of a reloaded list to their new
// indexes: oldKeys and newKeys are the targets' keys by index. It returns
// the targets that left.
func (t *tracker) remap(oldKeys, newKeys []string) []left {
	pos := make(map[string]uint64, len(oldKeys))
	for i, k := range oldKeys {
		if _, dup := pos[k]; !dup {
			pos[k] = uint64(i)
		}
	}
	recs := make([]rec, len(newKeys))
	var hashes []uint64
	if t.hashes != nil {
		hashes = make([]uint64, len(newKeys))
	}
	kept := make([]bool, len(oldKeys))
	for i, k := range newKeys {
		j, ok := pos[k]
		if !ok || kept[j] {
			continue
		}
		kept[j] = true
		recs[i] = t.recs[j]
		if hashes != nil {
			hashes[i] = t.hashes[j]
		}
	}
	var gone []left
	for j, k := range kept {
		if !k {
			gone = append(gone, left{uint64(j), t.recs[j]})
		}
	}
	t.recs, t.hashes = recs, hashes
	return gone
}
