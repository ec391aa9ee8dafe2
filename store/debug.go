//go:build fanout_debug

package store

import (
	"os"
	"strconv"
)

// The fault injection of the kill tests, in debug builds only (go build
// -tags fanout_debug), as restic keeps its debug code apart.

// crashEnv, when set to N in the environment, makes the process SIGKILL
// itself in the middle of its N-th transaction (rows inserted, not yet
// committed): the resume test's "killed during a commit", made certain.
const crashEnv = "FANOUT_TEST_CRASH_IN_COMMIT"

var crashIn, _ = strconv.ParseUint(os.Getenv(crashEnv), 10, 64)

// noIdle, from FANOUT_STORE_NOIDLE=1, commits at normal priority, never on
// the SCHED_IDLE thread: bench/store.sh's IDLE_AB=1 compares the two.
var noIdle = os.Getenv("FANOUT_STORE_NOIDLE") == "1"

// crashHook is called in each commit before COMMIT, with the commit's number.
func crashHook(commit uint64) {
	if crashIn == 0 || commit != crashIn {
		return
	}
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Kill() // SIGKILL: no deferred function, no rollback, no close
	}
	select {}
}
