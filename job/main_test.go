package job_test

import (
	"os"
	"testing"

	"github.com/fanout/fanout/internal/lab"
)

// Resolve-failure tests must not send DNS queries to the machine's resolver.
func TestMain(m *testing.M) {
	lab.NoDNS()
	os.Exit(m.Run())
}
