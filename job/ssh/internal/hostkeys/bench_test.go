package hostkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// BenchmarkKnownHostsSweep is one sweep's host key checks (algorithms, then
// check) against a known_hosts of n lines, one a host, per host checked:
// in the file's order (a sweep after the accept-new sweep that wrote it),
// shuffled, or for hosts the file lacks (unknown, so strict fails them).
//
//	go test -run NONE -bench KnownHostsSweep ./job/ssh/internal/hostkeys/
func BenchmarkKnownHostsSweep(b *testing.B) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	for _, hashed := range []bool{false, true} {
		for _, n := range []int{1000, 10000} {
			var sb strings.Builder
			for i := range n {
				h := fmt.Sprintf("[%s]:2222", host(i))
				if hashed {
					h = knownhosts.HashHostname(h)
				}
				sb.WriteString(h + " " + string(ssh.MarshalAuthorizedKey(key)))
			}
			f := filepath.Join(b.TempDir(), "known_hosts")
			if err := os.WriteFile(f, []byte(sb.String()), 0o600); err != nil {
				b.Fatal(err)
			}
			for _, order := range []string{"file", "shuffled", "unknown"} {
				b.Run(fmt.Sprintf("hashed=%v/n=%d/%s", hashed, n, order), func(b *testing.B) {
					hosts := make([]string, 0, n)
					for i := range n {
						if order == "unknown" {
							i += n
						}
						hosts = append(hosts, net.JoinHostPort(host(i).String(), "2222"))
					}
					if order == "shuffled" {
						mrand.Shuffle(n, func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
					}
					if order == "unknown" && hashed && n > 1000 {
						hosts = hosts[:1000] // each a full pass: enough to measure
					}
					for b.Loop() {
						b.StopTimer()
						hk, err := New(Strict, []string{f}, nil, io.Discard)
						if err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						for _, hn := range hosts {
							hk.Algorithms(hn)
							if err := hk.Check(hn, remote, key); (err == nil) != (order != "unknown") {
								b.Fatalf("%s: %v", hn, err)
							}
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(hosts)), "ns/host")
				})
			}
		}
	}
}
