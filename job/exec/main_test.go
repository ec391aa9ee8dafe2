package exec_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job/exec"
)

// Resolve-failure tests must not send DNS queries to the machine's resolver.
// The binary adopts orphans, as the fanout command does.
func TestMain(m *testing.M) {
	lab.NoDNS()
	if err := exec.AdoptOrphans(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
