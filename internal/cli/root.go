// Package cli is the fanout command line: one file per subcommand, flags to
// options to a library call.
package cli

import (
	"fmt"
	"os"
)

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	fmt.Fprintln(os.Stderr, "fanout: not built yet")
	return 2
}
