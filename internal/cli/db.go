package cli

// The --db sink that every job command has: the sweep and its Results go
// into a fanout database (package store), which resume continues from.

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/store"
)

// openStore records the plan's sweep in --db (a store.Recorder among the
// sinks); for resume (f.resumeSweep set) it appends to that sweep and
// skips every index that already has a Result. Errors are usage errors: no
// traffic has been sent.
func openStore(cmd *cobra.Command, f *sweepFlags, p *plan) error {
	if f.db == "" {
		return nil
	}
	st, err := store.Open(f.db)
	if err != nil {
		return usageError(fmt.Errorf("--db: %w", err))
	}
	var rec *store.Recorder
	if f.resumeSweep != 0 {
		var done *store.Bitmap
		rec, done, err = st.Resume(f.resumeSweep, p.set.Len(), version(), store.WriterOptions{})
		if err != nil {
			st.Close()
			if errors.Is(err, store.ErrSweepRunning) {
				return usageError(err)
			}
			return usageError(fmt.Errorf("--db: %w", err))
		}
		p.opts.Skip = done.Has
	} else {
		// The bytes of --stdin are not stored, only their digest: resume
		// asks for them again (--stdin FILE) and checks them. The lists of
		// "-" and @FILE, as this sweep read them, are stored once beside the
		// spec; resume parses them from there.
		spec, _, err := p.spec.SplitStdin()
		var lists []io.Reader
		if err == nil {
			lists, err = p.storedLists()
		}
		if err == nil {
			rec, err = st.Record(spec, store.Meta{Total: p.order.Len(), Version: version(), Lists: lists}, store.WriterOptions{})
		}
		p.dropSpools()
		if err != nil {
			st.Close()
			return usageError(fmt.Errorf("--db: %w", err))
		}
	}
	id := rec.ID()
	p.note = func(key, value string) error { return st.SetNote(id, key, value) }
	// A failed commit (disk full) comes back from the recorder's next
	// Write, which makes runSweep stop the sweep and say why.
	p.sinks = append(p.sinks, rec)
	stderr := cmd.ErrOrStderr()
	p.closers = append(p.closers, func() error {
		defer st.Close()
		// The sinks are closed: every Result the recorder took is committed.
		o, err := rec.Finish()
		if err != nil {
			return err
		}
		// The way back in is printed even with -q: it is not a summary.
		switch {
		case o.State != store.Finished && p.reattach != "":
			// A cluster sweep goes on without us: attach, never a local run.
			fmt.Fprintf(stderr, "sweep %d in %s: %d of %d targets have a result; stream the rest with: %s\n",
				id, f.db, o.Done, o.Total, p.reattach)
		case o.State != store.Finished:
			fmt.Fprintf(stderr, "sweep %d in %s: %d of %d targets have a result; continue with: fanout resume %s %d\n",
				id, f.db, o.Done, o.Total, f.db, id)
		case !f.quiet:
			fmt.Fprintf(stderr, "sweep %d in %s: %d of %d targets have a result\n", id, f.db, o.Done, o.Total)
		}
		return nil
	})
	return nil
}

// openDB opens an existing fanout database for reading commands (read-only
// when this process may not write it); errors are usage errors.
func openDB(path string) (*store.Store, error) {
	st, err := store.OpenExisting(path)
	if err != nil {
		return nil, usageError(err)
	}
	return st, nil
}

// pickSweep is the sweep named by arg ("" means the file's last sweep).
func pickSweep(st *store.Store, arg string) (store.Sweep, error) {
	if arg == "" {
		sw, err := st.Last()
		if err != nil {
			return sw, usageError(err)
		}
		return sw, nil
	}
	if w, n, ok := store.ParseRoundRef(arg); ok {
		return pickRound(st, w, n)
	}
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id < 1 {
		return store.Sweep{}, usageErrorf("sweep %q: want a sweep id (a number, see `fanout sweeps %s`) or W:N, round N of watch W", arg, st.Path())
	}
	sw, err := st.Sweep(id)
	if err != nil {
		return sw, usageError(err)
	}
	return sw, nil
}

// pickRound is the sweep of round n of watch w (w 0: the file's only
// watch; n 0: its last recorded round).
func pickRound(st *store.Store, w int64, n uint64) (store.Sweep, error) {
	wt, err := st.PickWatch(w)
	if err != nil {
		return store.Sweep{}, usageError(err)
	}
	rd, err := st.Round(wt.ID, n)
	if err != nil {
		return store.Sweep{}, usageError(err)
	}
	sw, err := st.Sweep(rd.Sweep)
	if err != nil {
		return sw, usageError(err)
	}
	return sw, nil
}
