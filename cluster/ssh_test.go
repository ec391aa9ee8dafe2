package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	sshjob "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/spec"
)

// An ssh sweep spread over two worker processes: each rebuilds the job from
// the sweep's stored options (port, command) and its own settings (config
// file, key file, known_hosts), every
// host of the in-process fleet is reached exactly once, and each result
// carries that host's own output back through the results stream.
func TestSSHSweepThroughCluster(t *testing.T) {
	t.Parallel()
	const n = 300
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{AuthorizedKeys: []ssh.PublicKey{sshPub}})

	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "cluster test")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	knownFile := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.4.*]:%d %s", fleet.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fleet.HostKey))))
	if err := os.WriteFile(knownFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The workers' own settings: their config file, key and known_hosts.
	confFile := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(confFile, []byte("GlobalKnownHostsFile none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local, _ := json.Marshal(sshjob.Local{SSHConfig: confFile, Identities: []string{keyFile}, NoAgent: true, KnownHosts: []string{knownFile}})
	opts, err := json.Marshal(sshjob.Config{
		Command: "hostname", User: "fanout", Port: fleet.Port, NoDefaultIdentities: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := spec.Spec{Job: sshjob.Kind, JobOptions: opts, Targets: []string{fmt.Sprintf("127.4.0.0-127.4.%d.%d", (n-1)>>8, (n-1)&255)}}

	tc := newTestCluster(t)
	tc.worker("w1", 64, "ssh", "FANOUT_CLUSTER_SSH="+string(local))
	tc.worker("w2", 64, "ssh", "FANOUT_CLUSTER_SSH="+string(local))
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang)
	defer cancel()
	c := tc.client(ctx)
	rec, err := submit(ctx, c, spec, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := newCollector()
	var mu sync.Mutex
	var bad []string
	emit := func(r job.Result) {
		k.emit(r)
		want := netip.AddrFrom4([4]byte{127, 4, byte(r.Index >> 8), byte(r.Index)}).String()
		if r.Status != job.Up || string(r.Stdout) != want+"\n" || r.Job != sshjob.Kind {
			mu.Lock()
			defer mu.Unlock()
			if len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("index %d (%s): job %q, %s/%s %q, stdout %q", r.Index, want, r.Job, r.Status, r.Class, r.Error, r.Stdout))
			}
		}
	}
	if err := c.Collect(ctx, rec.ID, CollectOptions{Counters: &k.c, Emit: emit}); err != nil {
		t.Fatalf("collect: %v", err)
	}
	exactlyOnce(t, "submitter", k.counts, n)
	for _, b := range bad {
		t.Error(b)
	}
	if len(k.workers) < 2 {
		t.Errorf("results came from %v, want both workers", k.workers)
	}
	t.Logf("results per worker: %v", k.workers)
}
