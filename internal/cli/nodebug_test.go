//go:build !fanout_debug

package cli_test

const debugBuild = false
