//go:build !fanout_debug

package store

// crashHook is debug.go's fault injection, absent from release builds.
func crashHook(uint64) {}

// noIdle is debug.go's switch to commit without the idle thread.
const noIdle = false
