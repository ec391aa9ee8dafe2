package cli_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
)

// Two fanout processes accepting the same new hosts at the same time into
// one known_hosts: every host ends on exactly one line.
func TestSSHAcceptNewTwoProcesses(t *testing.T) {
	t.Parallel()
	const n = 80
	flags, dir := sshFleet(t)
	// A fleet whose banner waits, so that both processes have read the
	// empty known_hosts before either adds a host.
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		HandshakeDelay: func(netip.Addr) time.Duration { return 200 * time.Millisecond },
	})
	kh := filepath.Join(dir, "accept_known_hosts")
	for i, f := range flags {
		switch f {
		case "--known-hosts":
			flags[i+1] = kh
		case "-p":
			flags[i+1] = fmt.Sprint(fleet.Port)
		}
	}
	args := append(flags, "--host-key", "accept-new", "-c", "20", "-o", "jsonl", fmt.Sprintf("127.2.1.[1-%d]", n), "--", "echo", "hi")
	fanoutBin(t) // built before the race starts
	t.Run("race", func(t *testing.T) {
		for p := range 2 {
			t.Run(fmt.Sprint("process", p), func(t *testing.T) {
				t.Parallel()
				r := fanout(t, "", args...)
				if r.code != 0 || len(results(t, r.stdout)) != n {
					t.Errorf("exit %d, %d results, stderr:\n%s", r.code, len(results(t, r.stdout)), r.stderr)
				}
			})
		}
	})
	data, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != n {
		t.Errorf("known_hosts has %d lines for %d hosts", len(lines), n)
	}
	want := string(ssh.MarshalAuthorizedKey(fleet.HostKey))
	seen := map[string]int{}
	for _, l := range lines {
		host, key, _ := strings.Cut(l, " ")
		seen[host]++
		if key+"\n" != want {
			t.Errorf("line %q: not the fleet's key", l)
		}
	}
	for i := 1; i <= n; i++ {
		if h := fmt.Sprintf("[127.2.1.%d]:%d", i, fleet.Port); seen[h] != 1 {
			t.Errorf("%s on %d lines, want 1", h, seen[h])
		}
	}
}
