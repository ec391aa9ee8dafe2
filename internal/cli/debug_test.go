//go:build fanout_debug

package cli_test

// debugBuild: the tests run with -tags fanout_debug, and build fanout with
// it, so that the fault injection (store's crash hook) is in the binary.
const debugBuild = true
