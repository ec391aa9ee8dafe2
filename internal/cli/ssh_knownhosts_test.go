package cli_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
)

// Two fanout processes accepting the same new hosts at the same time into
// one known_hosts: every host ends on exactly one line.
func TestSSHAcceptNewTwoProcesses(t *testing.T) {
	t.Parallel()
	const n = 80
	flags, dir := sshFleet(t)
	// A fleet whose banner for a host waits until both processes have
	// dialled it, so that both have read the empty known_hosts before
	// either adds that host: an event, where a fixed delay would let a
	// process that started late read a known_hosts already written to.
	var mu sync.Mutex
	dialled := map[netip.Addr]int{}
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{
		HandshakeDelay: func(h netip.Addr) time.Duration {
			mu.Lock()
			dialled[h]++
			mu.Unlock()
			testwait.Until(testwait.Hang, func() bool { mu.Lock(); defer mu.Unlock(); return dialled[h] >= 2 })
			return 0
		},
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
	// Banners wait for the other process: no connect timeout but a hang's.
	args := append(flags, "--host-key", "accept-new", "-c", "20", "--connect-timeout", testwait.Hang.String(),
		"-o", "jsonl", fmt.Sprintf("127.2.1.[1-%d]", n), "--", "echo", "hi")
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
