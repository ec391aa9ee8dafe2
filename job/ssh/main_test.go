package ssh_test

import (
	"os"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job/ssh"
)

// Resolve-failure tests must not send DNS queries to the machine's resolver.
func TestMain(m *testing.M) {
	if os.Getenv(ssh.FloodEnv) != "" {
		ssh.FloodServerMain() // a child process of TestFloodBounded
	}
	lab.NoDNS()
	os.Exit(m.Run())
}
