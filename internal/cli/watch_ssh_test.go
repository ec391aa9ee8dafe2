package cli_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
)

// clientKey writes a new ed25519 key to dir/id and returns its path and
// public key.
func clientKey(t *testing.T, dir string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "cli test")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id")
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return path, sp
}

// startSSHD runs a real OpenSSH sshd -D -e on a free loopback port, trusting
// key, and returns its port and host key.
func startSSHD(t *testing.T, key ssh.PublicKey) (int, ssh.PublicKey) {
	t.Helper()
	d := lab.StartSSHD(t, lab.SSHDOptions{Keys: []ssh.PublicKey{key}})
	return d.Port, d.HostKey
}

// sshRound is one result line of fanout watch --all -o jsonl.
type sshRound struct {
	Host   string `json:"host"`
	Status string `json:"status"`
	Round  uint64 `json:"round"`
	Change string `json:"change"`
	Stdout string `json:"stdout"`
	Error  string `json:"error"`
}

// keptSSHRounds runs fanout watch ssh over the hosts of hostsFile (n of
// them) with flags, round after round on SIGHUP, and checks, from the
// server's count of TCP connections (accepted), that round 1 opens one per
// host and later rounds none; after drop (the server drops them all), the
// next round opens one per host again and no host's result is lost. With
// --reconnect (reconnect), every round opens one per host.
func keptSSHRounds(t *testing.T, flags []string, hostsFile string, n int, accepted func() int64, drop func(), want func(host string) string, reconnect bool) {
	t.Helper()
	args := append([]string{"watch"}, flags...)
	if reconnect {
		args = append(args, "--reconnect")
	}
	args = append(args, "--every", "1h", "--spread=false", "--all", "-o", "jsonl", "@"+hostsFile, "--", "echo", "hello", "world")
	w := startWatch(t, args...)
	check := func(round int, wantConns int64) {
		t.Helper()
		w.waitErr(t, fmt.Sprintf("round %d:", round))
		var got []sshRound
		testwait.For(t, fmt.Sprintf("round %d's %d results", round, n), func() bool {
			out, _ := w.lines()
			got = got[:0]
			for _, l := range out {
				var r sshRound
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("jsonl line %q: %v", l, err)
				}
				if r.Round == uint64(round) && r.Change == "" {
					got = append(got, r)
				}
			}
			return len(got) >= n
		})
		seen := map[string]bool{}
		for _, r := range got {
			if r.Status != "up" || r.Stdout != want(r.Host) || seen[r.Host] {
				_, errs := w.lines()
				t.Fatalf("round %d: %+v, want up once with %q; stderr:\n%s", round, r, want(r.Host), strings.Join(errs, "\n"))
			}
			seen[r.Host] = true
		}
		if len(got) != n {
			t.Fatalf("round %d: %d results, want %d", round, len(got), n)
		}
		if a := accepted(); a != wantConns {
			t.Fatalf("after round %d: the server accepted %d connections, want %d (reconnect %v)", round, a, wantConns, reconnect)
		}
	}
	conns := func(round int) int64 {
		if reconnect {
			return int64(round * n)
		}
		return int64(n)
	}
	for round := 1; round <= 3; round++ {
		check(round, conns(round))
		w.cmd.Process.Signal(syscall.SIGHUP) // the next round, now
	}
	if !reconnect {
		w.waitErr(t, "round 4:")
		drop() // between rounds 4 and 5
		w.cmd.Process.Signal(syscall.SIGHUP)
		check(5, int64(2*n))
		w.cmd.Process.Signal(syscall.SIGHUP)
		check(6, int64(2*n))
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t); code != 130 {
		t.Fatalf("exit %d, want 130", code)
	}
}

// fanout watch ssh against the lab fleet (hosts 127.2.0.1-20), through a
// counting proxy: after round 1 no new TCP connection while the server
// keeps them; a dropped connection is redialled, no result lost; with
// --reconnect, a connection per host per round.
func TestWatchSSHKeptConnectionsLab(t *testing.T) {
	t.Parallel()
	const n = 20
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	for _, reconnect := range []bool{false, true} {
		t.Run(fmt.Sprint("reconnect=", reconnect), func(t *testing.T) {
			proxy := lab.StartProxyT(t, func(local netip.Addr) string { return fleet.Addr(local.String()) })
			dir := t.TempDir()
			key, _ := clientKey(t, dir)
			kh := filepath.Join(dir, "known_hosts")
			if err := os.WriteFile(kh, []byte("[*]:"+strconv.Itoa(proxy.Port)+" "+string(ssh.MarshalAuthorizedKey(fleet.HostKey))), 0o600); err != nil {
				t.Fatal(err)
			}
			var hosts strings.Builder
			for i := 1; i <= n; i++ {
				fmt.Fprintf(&hosts, "127.2.0.%d\n", i)
			}
			hf := filepath.Join(dir, "hosts")
			writeFile(t, hf, hosts.String())
			flags := []string{"ssh", "-F", "none", "--no-agent", "-i", key, "--known-hosts", kh, "-p", strconv.Itoa(proxy.Port)}
			keptSSHRounds(t, flags, hf, n, proxy.Accepted.Load, proxy.Drop, func(string) string { return "hello world\n" }, reconnect)
		})
	}
}

// The same against a real OpenSSH sshd: 8 hosts (127.0.0.1-8, all this
// sshd behind the proxy) logged in as root.
func TestWatchSSHKeptConnectionsOpenSSH(t *testing.T) {
	t.Parallel()
	const n = 8
	dir := t.TempDir()
	key, pub := clientKey(t, dir)
	port, hostKey := startSSHD(t, pub)
	up := fmt.Sprintf("127.0.0.1:%d", port)
	proxy := lab.StartProxyT(t, func(netip.Addr) string { return up })
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("[*]:"+strconv.Itoa(proxy.Port)+" "+string(ssh.MarshalAuthorizedKey(hostKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	var hosts strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&hosts, "127.0.0.%d\n", i)
	}
	hf := filepath.Join(dir, "hosts")
	writeFile(t, hf, hosts.String())
	flags := []string{"ssh", "-F", "none", "--no-agent", "-i", key, "--known-hosts", kh, "-l", "root", "-p", strconv.Itoa(proxy.Port)}
	keptSSHRounds(t, flags, hf, n, proxy.Accepted.Load, proxy.Drop, func(string) string { return "hello world\n" }, false)
}
