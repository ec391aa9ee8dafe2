// Package report turns a stored sweep into pictures: an RTT histogram for the
// terminal, and one self-contained HTML page (summary, histogram, error
// classes, slowest and failing hosts, and for IPv4 sweeps a Hilbert-curve map
// of the address space). The page fetches nothing: CSS, script and data are
// inline.
package report

import (
	"context"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/store"
)

// Report is everything the page shows about one sweep.
type Report struct {
	File      string
	Sweep     store.Sweep
	Counts    store.Counts
	RTT       Histogram
	Slowest   []job.Result
	Failing   []job.Result
	NotUp     NotUp   // every target not up, by class and /24 or node-set prefix
	Command   string  // the sweep as a fanout command line (CommandLine)
	Map       *Map    // nil when the sweep has no IPv4 address
	Uptime    *Uptime // nil unless the sweep is a round of a watch
	Generated time.Time
}

// Uptime is the watch's availability over its kept rounds, when the sweep
// is one of them: overall, and the least available targets.
type Uptime struct {
	Watch   int64
	Round   uint64
	Rounds  int  // rounds counted
	Capped  bool // more were kept: only the last uptimeRounds count
	Targets int
	Overall float64 // up results / results
	Lowest  []store.Uptime
}

// Bounds of the uptime section: the rounds it reads and the targets it lists.
const (
	uptimeRounds = 1000
	uptimeLowest = 20
)

func buildUptime(ctx context.Context, st *store.Store, id int64) (*Uptime, error) {
	rd, ok, err := st.RoundOf(id)
	if err != nil || !ok {
		return nil, err
	}
	rounds, err := st.Rounds(rd.Watch)
	if err != nil {
		return nil, err
	}
	ups, err := st.Uptimes(ctx, rd.Watch, uptimeRounds)
	if err != nil {
		return nil, err
	}
	u := &Uptime{Watch: rd.Watch, Round: rd.N, Rounds: min(len(rounds), uptimeRounds), Capped: len(rounds) > uptimeRounds, Targets: len(ups)}
	var up, all int
	for _, x := range ups {
		up += x.Up
		all += x.Rounds
	}
	if all > 0 {
		u.Overall = float64(up) / float64(all)
	}
	sort.SliceStable(ups, func(i, j int) bool {
		a, b := ups[i], ups[j]
		return a.Up*b.Rounds < b.Up*a.Rounds // lower share up first
	})
	for _, x := range ups {
		if len(u.Lowest) == uptimeLowest || x.Up == x.Rounds {
			break
		}
		u.Lowest = append(u.Lowest, x)
	}
	return u, nil
}

// Map is the Hilbert-curve picture of an IPv4 block: Side×Side cells, each
// an aligned block of PerCell addresses, row-major.
type Map struct {
	Prefix  netip.Prefix
	Side    int
	PerCell uint64
	Up      []uint32 // results up in the cell
	Seen    []uint32 // results in the cell
}

// Limits of the host tables.
const (
	slowestN = 15
	failingN = 40
)

// Build reads sweep id from st.
func Build(ctx context.Context, st *store.Store, id int64) (*Report, error) {
	sw, err := st.Sweep(id)
	if err != nil {
		return nil, err
	}
	r := &Report{File: st.Path(), Sweep: sw, Generated: time.Now(), Command: CommandLine(sw.Spec)}
	if r.Counts, err = st.Counts(id); err != nil {
		return nil, err
	}
	// Pass 1: RTTs and the span of IPv4 addresses.
	var lo, hi uint32
	var v4 uint64
	err = st.Points(ctx, id, func(p store.Point) error {
		if p.Status == job.Up {
			r.RTT.Add(p.RTT)
		}
		if a, ok := ipv4(p); ok {
			if v4 == 0 || a < lo {
				lo = a
			}
			if v4 == 0 || a > hi {
				hi = a
			}
			v4++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if v4 > 0 {
		m := newMap(lo, hi)
		// Pass 2: aggregate into cells.
		err = st.Points(ctx, id, func(p store.Point) error {
			if a, ok := ipv4(p); ok {
				m.add(a, p.Status == job.Up)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		r.Map = m
	}
	if r.Slowest, err = st.Slowest(ctx, id, slowestN); err != nil {
		return nil, err
	}
	if r.Failing, err = st.Failing(ctx, id, failingN); err != nil {
		return nil, err
	}
	if r.Uptime, err = buildUptime(ctx, st, id); err != nil {
		return nil, err
	}
	if r.NotUp, err = notUp(ctx, st, id); err != nil {
		return nil, err
	}
	return r, nil
}

func ipv4(p store.Point) (uint32, bool) {
	s := p.Addr
	if s == "" {
		s = p.Host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return 0, false
	}
	a = a.Unmap()
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
}

// newMap sizes the picture for addresses lo..hi: the smallest aligned block
// holding both, at least a /24, with an even number of host bits so it is a
// square.
func newMap(lo, hi uint32) *Map {
	hostBits := 32 - bits.LeadingZeros32(lo^hi)
	if lo == hi {
		hostBits = 0
	}
	if hostBits < 8 {
		hostBits = 8
	}
	if hostBits%2 == 1 {
		hostBits++
	}
	cellBits := 0
	if hostBits > 16 { // 2^16 cells = 256×256
		cellBits = hostBits - 16
	}
	side := 1 << ((hostBits - cellBits) / 2)
	base := lo
	if hostBits < 32 {
		base = lo &^ (1<<hostBits - 1)
	} else {
		base = 0
	}
	var b [4]byte
	b[0], b[1], b[2], b[3] = byte(base>>24), byte(base>>16), byte(base>>8), byte(base)
	return &Map{
		Prefix:  netip.PrefixFrom(netip.AddrFrom4(b), 32-hostBits),
		Side:    side,
		PerCell: 1 << cellBits,
		Up:      make([]uint32, side*side),
		Seen:    make([]uint32, side*side),
	}
}

func (m *Map) base() uint32 {
	b := m.Prefix.Addr().As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (m *Map) add(a uint32, up bool) {
	off := uint64(a - m.base())
	d := uint32(off / m.PerCell)
	x, y := hilbertXY(uint32(m.Side), d)
	i := int(y)*m.Side + int(x)
	m.Seen[i]++
	if up {
		m.Up[i]++
	}
}

// CellPrefix is the block of addresses shown by cell (x, y).
func (m *Map) CellPrefix(x, y int) netip.Prefix {
	d := hilbertD(uint32(m.Side), uint32(x), uint32(y))
	a := m.base() + uint32(uint64(d)*m.PerCell)
	b := [4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}
	return netip.PrefixFrom(netip.AddrFrom4(b), 32-bits.TrailingZeros64(m.PerCell))
}

// Block is an aligned sub-block of the map (a quadrant, a sixteenth), for
// the outlines and labels drawn over it.
type Block struct {
	X, Y, Size int // in cells
	Prefix     netip.Prefix
	Results    uint64
}

// Blocks splits the map into 4^level aligned blocks (level 1: quadrants).
func (m *Map) Blocks(level int) []Block {
	bs := m.Side >> level
	if bs < 1 {
		return nil
	}
	n := 1 << (2 * level)
	per := uint32(m.Side * m.Side / n)
	out := make([]Block, n)
	for j := range out {
		d := uint32(j) * per
		x, y := hilbertXY(uint32(m.Side), d)
		b := Block{X: int(x) - int(x)%bs, Y: int(y) - int(y)%bs, Size: bs}
		a := m.base() + uint32(uint64(d)*m.PerCell)
		b.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), m.Prefix.Bits()+2*level)
		for yy := b.Y; yy < b.Y+bs; yy++ {
			for xx := b.X; xx < b.X+bs; xx++ {
				b.Results += uint64(m.Seen[yy*m.Side+xx])
			}
		}
		out[j] = b
	}
	return out
}

// classCount is one row of the error class table.
type classCount struct {
	Class string
	Count uint64
	Pct   float64
}

// Classes are the error classes, most frequent first.
func (r *Report) Classes() []classCount {
	var out []classCount
	var total uint64
	for _, n := range r.Counts.Classes {
		total += n
	}
	for c, n := range r.Counts.Classes {
		out = append(out, classCount{c, n, 100 * float64(n) / float64(max(total, 1))})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Class < out[j].Class
	})
	return out
}

// Rate is targets finished per second of wall time, as the summary, the
// progress line and fanout sweeps define it (output.Rate).
func (r *Report) Rate() float64 { return output.Rate(int64(r.Counts.Done), r.Sweep.Elapsed) }

func pct(n, of uint64) string {
	if of == 0 {
		return "0%"
	}
	v := 100 * float64(n) / float64(of)
	if v > 0 && v < 0.1 {
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", v)
}
