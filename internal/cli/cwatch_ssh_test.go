package cli_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
)

// clusterRoundsDone is the newest round whose summary line `fanout watch
// events` printed ("round N: ..."), 0 before any.
func clusterRoundsDone(p *bgProc) int {
	last := 0
	for _, l := range strings.Split(p.errText(), "\n") {
		var n int
		if _, err := fmt.Sscanf(l, "round %d:", &n); err == nil && n > last {
			last = n
		}
	}
	return last
}

// fanout watch ssh --server, polled by two `fanout worker --allow ssh`
// processes against the lab fleet: once both workers are alive (so that
// membership holds from round 1), round 1 opens one TCP connection per host
// (counted where the fleet accepts them) and later rounds none: each worker
// keeps its job, and so its hosts' connections, round after round, and a
// round that overran is not polled twice at once (round 2's run of a chunk
// waits for round 1's: it dialled every host again while round 1 held the
// connections). Every round reaches every host, up, with its output.
func TestClusterWatchSSHKeepsConnections(t *testing.T) {
	t.Parallel()
	const n = 30
	dir := t.TempDir()
	key, pub := clientKey(t, dir)
	// Handshakes slower than the interval: round 1 overruns, and round 2
	// is due while round 1 still holds every host's connection.
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{pub},
		HandshakeDelay: func(netip.Addr) time.Duration { return 1500 * time.Millisecond }})
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("[*]:"+strconv.Itoa(fleet.Port)+" "+string(ssh.MarshalAuthorizedKey(fleet.HostKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := testServer(t)
	// Each worker's own ssh setup: no config, no agent, its key and
	// known_hosts.
	wflags := []string{"--allow", "ssh", "-c", "64", "-F", "none", "--no-agent", "-i", key, "--known-hosts", kh}
	testWorker(t, url, "w1", wflags...)
	testWorker(t, url, "w2", wflags...)
	waitFor(t, "both workers alive", testwait.Hang, func() bool {
		st := fanout(t, "", "status", "--server", url, "-o", "json")
		var s struct {
			Workers []struct{ Name string } `json:"workers"`
		}
		return st.code == 0 && json.Unmarshal([]byte(st.stdout), &s) == nil && len(s.Workers) == 2
	})
	// The submitter builds the job (an agent to open), which runs with the
	// workers' own setup.
	sock, _ := countingAgent(t)
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	sub := startFanout(t, []string{"HOME=" + home, "SSH_AUTH_SOCK=" + sock}, "watch", "ssh", "-p", strconv.Itoa(fleet.Port),
		"--every", "1s", "--server", url, "--detach", fmt.Sprintf("127.2.0.1-%d", n), "--", "hostname")
	if code := sub.wait(t, testwait.Hang); code != 0 {
		t.Fatalf("watch ssh --server --detach: exit %d: %s", code, sub.errText())
	}
	b, _ := os.ReadFile(sub.stdout)
	id := strings.TrimSpace(string(b))
	ev := startFanout(t, nil, "watch", "events", "--server", url, id, "--all", "-o", "jsonl", "--from-start")
	waitFor(t, "round 1's summary", testwait.Hang, func() bool { return clusterRoundsDone(ev) >= 1 })
	after1 := fleet.Accepted.Load()
	r1 := clusterRoundsDone(ev)
	waitFor(t, "3 more rounds", testwait.Hang, func() bool { return clusterRoundsDone(ev) >= r1+3 })
	last := clusterRoundsDone(ev)
	if got := fleet.Accepted.Load(); got != after1 || after1 != n {
		t.Errorf("the fleet accepted %d connections by round %d and %d by round %d: want %d (one per host) then none", after1, r1, got, last, n)
	}
	if st := fanout(t, "", "watch", "stop", "--server", url, id); st.code != 0 {
		t.Fatalf("watch stop: exit %d: %s", st.code, st.stderr)
	}
	ev.kill()
	// Every round up to the last reached every host once, up, with its name.
	out, _ := os.ReadFile(ev.stdout)
	seen := map[[2]string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			Host   string `json:"host"`
			Status string `json:"status"`
			Stdout string `json:"stdout"`
			Round  uint64 `json:"round"`
			Change string `json:"change"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("events line %q: %v", l, err)
		}
		if r.Change != "" || r.Round > uint64(last) {
			continue
		}
		if r.Status != "up" || r.Stdout != r.Host+"\n" {
			t.Errorf("round %d: %s %s %q, want up printing its name", r.Round, r.Host, r.Status, r.Stdout)
		}
		seen[[2]string{strconv.FormatUint(r.Round, 10), r.Host}]++
	}
	for r := 1; r <= last; r++ {
		for i := 1; i <= n; i++ {
			if c := seen[[2]string{strconv.Itoa(r), fmt.Sprintf("127.2.0.%d", i)}]; c != 1 {
				t.Errorf("round %d host 127.2.0.%d: %d results, want 1", r, i, c)
			}
		}
	}
}

// fanout worker --max-connections N: a worker keeps up to N of a watch
// ssh's connections between rounds, beyond its -c: with -c 4 and 30 hosts,
// round 1 opens one connection per host and later rounds none (by -c alone,
// its pool kept 4 and redialled the rest every round: 120 over 4 rounds).
func TestClusterWatchSSHWorkerMaxConnections(t *testing.T) {
	t.Parallel()
	const n = 30
	dir := t.TempDir()
	key, pub := clientKey(t, dir)
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("[*]:"+strconv.Itoa(fleet.Port)+" "+string(ssh.MarshalAuthorizedKey(fleet.HostKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := testServer(t)
	testWorker(t, url, "w1", "--allow", "ssh", "-c", "4", "--max-connections", strconv.Itoa(n),
		"-F", "none", "--no-agent", "-i", key, "--known-hosts", kh)
	sock, _ := countingAgent(t)
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	sub := startFanout(t, []string{"HOME=" + home, "SSH_AUTH_SOCK=" + sock}, "watch", "ssh", "-p", strconv.Itoa(fleet.Port),
		"--every", "1s", "--rounds", "4", "--server", url, fmt.Sprintf("127.2.0.1-%d", n), "--", "hostname")
	if code := sub.wait(t, testwait.Hang); code != 0 {
		t.Fatalf("watch ssh --server --rounds 4: exit %d: %s", code, sub.errText())
	}
	if got := fleet.Accepted.Load(); got != n {
		t.Errorf("the fleet accepted %d connections over 4 rounds: want %d (one per host, kept)", got, n)
	}
}
