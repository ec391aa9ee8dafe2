// Package watch repeats a sweep: round r of watch w is a sweep of the same
// targets and job, and what a watch reports is what changed between rounds.
//
// The types here are the contract between the round loop (which runs the
// rounds and keeps each target's state) and what consumes a watch: the CLI's
// change printer, the store's history, the Prometheus metrics. Each consumer
// is an Observer; the loop calls every Observer from one goroutine, in order:
// RoundStart, then Result for each finished target of that round and Change
// for each change it causes, then RoundEnd.
package watch

import (
	"time"

	"github.com/fanout/fanout/job"
)

// Round describes one round of a watch. RoundStart gets it with N, Due,
// Start and Targets set; RoundEnd gets it complete.
type Round struct {
	Watch   string    // the watch's id
	N       uint64    // 1-based; continues across restarts of a watch kept in a store
	Due     time.Time // when the clock wanted it to start
	Start   time.Time // when it started (after Due when the previous round overran)
	End     time.Time
	Late    bool // started after Due because the previous round was still running
	Targets int  // targets polled in this round

	Up, Down, Error int // outcomes of this round
	Changes         int // change events this round caused
}

// Kind says what changed.
type Kind string

const (
	Down     Kind = "down"     // was up (or new), is down or error now
	Up       Kind = "up"       // was down or error, is up now
	Class    Kind = "class"    // still not up, for another reason (error class)
	Output   Kind = "output"   // exec, ssh: the command's output changed
	Loss     Kind = "loss"     // ping --count: loss crossed --loss-threshold
	Flapping Kind = "flapping" // changed state too often; further changes held back
	Settled  Kind = "settled"  // a flapping target held one state again
	Removed  Kind = "removed"  // left the target list (a reloaded @FILE)
)

// Change is one change event. ID is stable (watch, target, round) so that a
// consumer that sees an event twice can drop the copy.
type Change struct {
	ID         string
	Watch      string
	Round      uint64
	Kind       Kind
	Result     job.Result // the result that made the change (Removed: only the target fields)
	PrevStatus job.Status
	PrevClass  job.Class
	Since      time.Time // when the previous state began
}

// Observer consumes a watch. Its methods are called from one goroutine and
// must not block the round for long (a slow consumer buffers or drops, and
// says so).
type Observer interface {
	RoundStart(Round)
	Result(round uint64, r job.Result)
	Change(Change)
	RoundEnd(Round)
}
