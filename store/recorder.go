package store

import (
	"fmt"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
)

// Recorder records one run of a sweep: the Results it is given (through a
// Writer: it is an output sink), then, at Finish, whether the sweep is
// finished, which resume reads. What a library user who sweeps into a
// store needs:
//
//	rec, err := st.Record(spec, store.Meta{Total: order.Len()}, store.WriterOptions{})
//	... fanout.Sweep(ctx, set, j, fanout.Options{OnResult: func(r job.Result) { rec.Write(r) }})
//	rec.Close()
//	outcome, err := rec.Finish()
//
// and, to continue a sweep that did not finish, Resume instead of Record.
type Recorder struct {
	s      *Store
	id     int64
	total  uint64
	before uint64 // Results stored before this run
	w      *Writer
	closed bool
}

// Outcome is where a recorded sweep stands after a run.
type Outcome struct {
	Sweep  int64
	State  State  // Finished when every target has a Result, else Interrupted
	Reason string // why not finished: the writer's error, or how many are done
	Done   uint64 // targets with a Result, this run's and earlier runs'
	Total  uint64
}

// Record creates a sweep (see CreateSweep) and starts recording its
// Results.
func (s *Store) Record(spec spec.Spec, meta Meta, o WriterOptions) (*Recorder, error) {
	id, err := s.CreateSweep(spec, meta)
	if err != nil {
		return nil, err
	}
	w, err := s.NewWriter(id, o)
	if err != nil {
		s.unlockSweep(id)
		return nil, err
	}
	return &Recorder{s: s, id: id, total: meta.Total, w: w}, nil
}

// Resume starts a new run of sweep id under its run lock (an error
// wrapping ErrSweepRunning when another process runs it), and returns its
// Recorder and the indexes in [0, n) that already have a Result: the run
// skips them. n is the size of the sweep's target set (its index space;
// a shard visits part of it).
func (s *Store) Resume(id int64, n uint64, version string, o WriterOptions) (*Recorder, *Bitmap, error) {
	sw, err := s.Sweep(id)
	if err != nil {
		return nil, nil, err
	}
	// Before reading what is done: another process running the sweep
	// would run what is not done a second time.
	if err := s.LockSweep(id); err != nil {
		return nil, nil, err
	}
	done, err := s.Done(id, n)
	if err == nil {
		err = s.ResumeSweep(id, version)
	}
	var w *Writer
	if err == nil {
		w, err = s.NewWriter(id, o)
	}
	if err != nil {
		s.unlockSweep(id)
		return nil, nil, err
	}
	return &Recorder{s: s, id: id, total: sw.Total, before: done.Count(), w: w}, done, nil
}

// ID is the recorded sweep's id.
func (r *Recorder) ID() int64 { return r.id }

// Write records res; see Writer.Write.
func (r *Recorder) Write(res job.Result) error { return r.w.Write(res) }

// Close commits the Results written and stops the writer; see Writer.Close.
func (r *Recorder) Close() error {
	if r.closed {
		return r.w.Err()
	}
	r.closed = true
	return r.w.Close()
}

// Err is the error that stopped the writer, or nil.
func (r *Recorder) Err() error { return r.w.Err() }

// Finish closes the Recorder if it is not, settles whether the sweep is
// finished (every target has a Result) or interrupted, ends the run with
// that state and releases the sweep's run lock.
func (r *Recorder) Finish() (Outcome, error) {
	werr := r.Close()
	o := Outcome{Sweep: r.id, Total: r.total, State: Finished}
	// What this run inserted plus what was there is exact unless another
	// process wrote to the sweep too (its duplicates are not counted):
	// reaching the total settles it; short of it, the stored counts say.
	o.Done = r.before + r.w.Written()
	if o.Done < r.total {
		c, err := r.s.Counts(r.id)
		if err != nil {
			return o, err
		}
		o.Done = c.Done
	}
	if o.Done < r.total {
		o.State, o.Reason = Interrupted, fmt.Sprintf("stopped with %d of %d targets done", o.Done, r.total)
	}
	if werr != nil {
		o.Reason = werr.Error()
	}
	if err := r.s.FinishSweep(r.id, o.State, o.Reason); err != nil {
		return o, err
	}
	return o, nil
}
