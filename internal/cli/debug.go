//go:build fanout_debug

package cli

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// Debug builds (go build -tags fanout_debug) write a CPU profile of the
// whole run to $FANOUT_CPUPROFILE when it is set: how bench/store.sh's
// sweeps were profiled. Release builds have none of it (debug_disabled.go).
const cpuProfileEnv = "FANOUT_CPUPROFILE"

// debugHooks starts what the environment asks for; stop ends it.
func debugHooks() (stop func()) {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fanout: %s: %v\n", cpuProfileEnv, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
