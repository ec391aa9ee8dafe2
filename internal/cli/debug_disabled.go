//go:build !fanout_debug

package cli

// debugHooks is debug.go's profiling, absent from release builds.
func debugHooks() (stop func()) { return func() {} }
