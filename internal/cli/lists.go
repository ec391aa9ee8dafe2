package cli

// How a sweep reads the lists of its "-" and @FILE targets. They are
// parsed as they are read, never copied into the spec: a list of ten
// million names costs about its size in memory, with or without --db.
// With --db, a copy of each list, taken as it is read, is stored beside the
// spec (store.Meta.Lists), and resume parses that copy: the same targets in
// the same order, whatever became of the files since. A cluster spec is
// the exception: it must stand alone, so its lists are inlined.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/target"
)

// listGC is the GC percentage while a spec with lists is parsed. The
// parse makes garbage (the dedup table as it grows, a stored list's parts)
// next to a live heap of the list's size; at the default 100 that garbage
// could grow the heap by a third before a collection. The live heap holds
// no pointers (names back to back in chunks), so a tighter pace costs
// little.
const listGC = 20

// listHeadroom is the garbage a sweep lets pile up over a large parsed
// list before a collection: the GC's default pace is relative to the live
// heap, which the list would make ten million names' worth of garbage.
const listHeadroom = 64 << 20

// lists is how newPlan reads the spec's lists: replayed from the store
// (resume), recorded as they are read (--db), or read (otherwise). The
// returned func releases what it holds (the store handle of a replay).
func (p *plan) lists(stdin io.Reader, f *sweepFlags) (fanout.Lists, func(), error) {
	read := fanout.Lists(target.OpenList(stdin))
	switch {
	case p.spec.Listed() == 0:
		return read, func() {}, nil
	case f != nil && f.resumeSweep != 0:
		st, err := store.OpenExisting(f.db)
		if err != nil {
			return nil, nil, fmt.Errorf("--db: %w", err)
		}
		k := 0
		return func(string) (io.Reader, error) {
			r, err := st.List(f.resumeSweep, k)
			k++
			return r, err
		}, func() { st.Close() }, nil
	case f != nil && f.db != "" && !f.cluster.on():
		dir := filepath.Dir(f.db)
		return func(spec string) (io.Reader, error) {
			r, err := read(spec)
			if err != nil {
				return nil, err
			}
			// The copy goes where the store is, to be stored there:
			// never into memory, nor into a /tmp that may be memory.
			w, err := os.CreateTemp(dir, ".fanout-list-*")
			if err != nil {
				closeReader(r)
				return nil, fmt.Errorf("--db: keep a copy of the list: %w", err)
			}
			os.Remove(w.Name()) // gone when closed, or when fanout is
			p.spools = append(p.spools, w)
			return teeReader{io.TeeReader(r, w), r}, nil
		}, func() {}, nil
	}
	return read, func() {}, nil
}

// teeReader is a list reader that closes the reader it copies.
type teeReader struct {
	io.Reader
	src io.Reader
}

func (t teeReader) Close() error { return closeReader(t.src) }

func closeReader(r io.Reader) error {
	if c, ok := r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// storedLists rewinds the recorded copies for store.Meta.Lists.
func (p *plan) storedLists() ([]io.Reader, error) {
	rs := make([]io.Reader, len(p.spools))
	for i, w := range p.spools {
		if _, err := w.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("--db: read back the copy of a list: %w", err)
		}
		rs[i] = w
	}
	return rs, nil
}

// dropSpools closes the recorded copies (which removes them).
func (p *plan) dropSpools() {
	for _, w := range p.spools {
		w.Close()
	}
	p.spools = nil
}

// parseLists runs build, which parses lists when listed, with the GC
// paced for them: listGC while they are parsed, then the percentage that
// lets listHeadroom of garbage pile up over the live heap (the list),
// rather than as much as the list again. GOGC, when set, is left alone.
func parseLists(listed bool, build func() error) error {
	if !listed || os.Getenv("GOGC") != "" {
		return build()
	}
	prev := debug.SetGCPercent(listGC)
	err := build()
	runtime.GC() // the dedup table goes: the live heap is the list
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > listHeadroom {
		debug.SetGCPercent(max(listGC, int(100*listHeadroom/ms.HeapAlloc)))
	} else {
		debug.SetGCPercent(prev)
	}
	return err
}

// on reports whether the sweep runs on a cluster (--server).
func (cf *clusterFlags) on() bool { return cf != nil && cf.server != "" }
