package cli

// The extensions of fanout watch (watchExtensions): its Prometheus metrics
// (--metrics, --metrics-targets) and its history in --db (--keep,
// --keep-rounds). Both are opened before the first round: an address in
// use, a file that cannot hold the watch, are usage errors before any
// traffic.
//
// A watch over @FILE (or "-") records, with each round, the lists as that
// round polled them: the bytes read when the list was last (re-)read, kept
// in unlinked copies beside the --db file and stored into the round's
// sweep, so that a round's indexes always name the targets it polled. A
// list re-read for a round is copied once and stored with every round that
// polls it. A copy that cannot be written (a full disk) does not stop the
// new list being polled: the rounds that poll it are not recorded (said
// once per round), and the next round reads the list again for a copy.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// The metrics come first: listening has no side effect to undo when the
// store then fails.
func init() { watchExtensions = append(watchExtensions, watchMetrics, watchHistory) }

// watchMetrics adds --metrics and --metrics-targets to a watch command.
func watchMetrics(cmd *cobra.Command) func(*watchSetup) error {
	mf := &metricsFlags{}
	addMetricsFlags(cmd.Flags(), mf)
	return func(s *watchSetup) error {
		e, err := mf.listen()
		if err != nil || e == nil {
			return err
		}
		s.opts.Observers = append(s.opts.Observers, e)
		s.closers = append(s.closers, e.Close)
		if !s.f.quiet {
			fmt.Fprintf(s.stderr, "fanout: metrics at http://%s/metrics\n", e.Addr())
		}
		return nil
	}
}

// watchHistory adds --keep and --keep-rounds to a watch command, and with
// --db records its rounds there: the watch's id in the file is its id, and
// its numbering continues from the last round the file holds.
func watchHistory(cmd *cobra.Command) func(*watchSetup) error {
	ws := &watchStoreFlags{}
	addWatchStoreFlags(cmd.Flags(), ws)
	if f := cmd.Flags().Lookup("db"); f != nil {
		f.Usage = "record every round (a sweep each) in this SQLite file; the same watch started again with it continues its round numbering (fanout results --watch, history, diff, report read it)"
	}
	return func(s *watchSetup) error {
		if s.f.db == "" {
			return nil
		}
		s.usesDB = true
		var lists func(uint64) ([]io.Reader, error)
		if s.lists != nil {
			lists = s.lists.forRound
		}
		rec, next, err := ws.openWatchStoreLists(s.f.db, s.spec, s.opts.Every, s.stderr, lists)
		if err != nil {
			return err
		}
		s.opts.Watch = strconv.FormatInt(rec.ID(), 10)
		s.opts.FirstRound = next
		if s.lists != nil {
			// Before the recorder: a round's lists are known when the
			// recorder hears of the round.
			s.opts.Observers = append(s.opts.Observers, s.lists)
		}
		s.opts.Observers = append(s.opts.Observers, rec)
		s.closers = append(s.closers, rec.Close)
		if s.lists != nil {
			s.closers = append(s.closers, s.lists.Close) // after the recorder's last round
		}
		return nil
	}
}

// listCopies are the copies of a watch's lists, for the rounds that polled
// them (see the top of the file). It is a watch.Observer: RoundStart tells
// which round first polls a list just re-read.
type listCopies struct {
	dir string

	mu    sync.Mutex
	gens  []*listGen // polled, oldest first; the first may be dropped once no round to record needs it
	next  *listGen   // read by the last reload, polled from the next round
	stale bool       // the newest copy failed: read the lists again
}

// listGen is one reading of the lists.
type listGen struct {
	from  uint64     // first round that polled it (0: from the start)
	files []*os.File // the copies, one per list entry, unlinked
	err   error      // a copy could not be written in full
}

var _ watch.Observer = (*listCopies)(nil)

// newListCopies keeps the plan's copies of its lists (taken as newPlan read
// them) as the lists of the watch's first rounds.
func newListCopies(db string, p *plan) *listCopies {
	c := &listCopies{dir: filepath.Dir(db)}
	c.gens = []*listGen{{files: p.spools}}
	p.spools = nil
	return c
}

// reading wraps read so that each list read is copied, for the rounds that
// will poll what it read; done says whether they will (the parse held).
func (c *listCopies) reading(read fanout.Lists) (lists fanout.Lists, done func(polled bool)) {
	g := &listGen{}
	lists = func(spec string) (io.Reader, error) {
		r, err := read(spec)
		if err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(c.dir, ".fanout-list-*")
		if err != nil {
			if g.err == nil {
				g.err = err
			}
			return r, nil
		}
		os.Remove(f.Name()) // gone when closed, or when fanout is
		g.files = append(g.files, f)
		return teeReader{io.TeeReader(r, keptCopy{f, g}), r}, nil
	}
	return lists, func(polled bool) {
		if !polled {
			g.close()
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.next != nil { // a reload whose round never started
			c.next.close()
		}
		c.next, c.stale = g, g.err != nil
	}
}

// isStale: the lists must be read again, for a copy, even unchanged.
func (c *listCopies) isStale() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stale
}

// keptCopy writes the copy of a list; a write error (a full disk) is kept
// in the generation, not returned: the list is still polled.
type keptCopy struct {
	f *os.File
	g *listGen
}

func (k keptCopy) Write(b []byte) (int, error) {
	if k.g.err == nil {
		if _, err := k.f.Write(b); err != nil {
			k.g.err = err
		}
	}
	return len(b), nil
}

func (g *listGen) close() {
	for _, f := range g.files {
		f.Close()
	}
	g.files = nil
}

// forRound is store.WatchOptions.Lists: the lists round n polled. The
// recorder asks for rounds in increasing order, so older readings go.
func (c *listCopies) forRound(n uint64) ([]io.Reader, error) {
	c.mu.Lock()
	i := 0
	for i+1 < len(c.gens) && c.gens[i+1].from <= n {
		i++
	}
	for _, g := range c.gens[:i] {
		g.close()
	}
	c.gens = c.gens[i:]
	g := c.gens[0]
	c.mu.Unlock()
	if g.err != nil {
		return nil, fmt.Errorf("keep a copy of the target lists re-read for round %d beside %s: %w", g.from, c.dir, g.err)
	}
	rs := make([]io.Reader, len(g.files))
	for k, f := range g.files {
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("read back the copy of a target list: %w", err)
		}
		rs[k] = io.NewSectionReader(f, 0, st.Size())
	}
	return rs, nil
}

// Close closes every copy.
func (c *listCopies) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.gens {
		g.close()
	}
	if c.next != nil {
		c.next.close()
	}
	return nil
}

// RoundStart: a list re-read for this round is polled from it on.
func (c *listCopies) RoundStart(rd watch.Round) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next != nil {
		c.next.from = rd.N
		c.gens = append(c.gens, c.next)
		c.next = nil
	}
}

func (*listCopies) Result(uint64, job.Result) {}
func (*listCopies) Change(watch.Change)       {}
func (*listCopies) RoundEnd(watch.Round)      {}
