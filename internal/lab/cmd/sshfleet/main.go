// Command sshfleet runs the lab's in-process SSH fleet: one server that plays
// a distinct host on every 127.x.y.z it is dialled on, for benchmarks.
//
//	go run ./internal/lab/cmd/sshfleet -listen 0.0.0.0:2200 -known-hosts /tmp/kh
//
// It stops on SIGINT/SIGTERM or after -for, printing its counters.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
)

func main() {
	listen := flag.String("listen", "0.0.0.0:2200", "address to listen on (loopback connections only are answered)")
	known := flag.String("known-hosts", "", "write a known_hosts line trusting the fleet on every address to FILE")
	authorized := flag.String("authorized-keys", "", "accept only these client keys (default: any key)")
	life := flag.Duration("for", 15*time.Minute, "stop after this long (a bench must not leave it running)")
	delay := flag.Duration("handshake-delay", 0, "hold every connection's banner this long (a distant host)")
	flag.Parse()

	opts := lab.SSHFleetOptions{Listen: *listen}
	if *delay > 0 {
		opts.HandshakeDelay = func(netip.Addr) time.Duration { return *delay }
	}
	if *authorized != "" {
		data, err := os.ReadFile(*authorized)
		if err != nil {
			fatal(err)
		}
		for len(data) > 0 {
			k, _, _, rest, err := ssh.ParseAuthorizedKey(data)
			if err != nil {
				break
			}
			opts.AuthorizedKeys = append(opts.AuthorizedKeys, k)
			data = rest
		}
		if len(opts.AuthorizedKeys) == 0 {
			fatal(fmt.Errorf("%s: no key", *authorized))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *life)
	defer cancel()
	f, err := lab.StartSSHFleet(ctx, opts)
	if err != nil {
		fatal(err)
	}
	if *known != "" {
		if err := os.WriteFile(*known, []byte(f.KnownHostsLine()), 0o600); err != nil {
			fatal(err)
		}
	}
	fmt.Printf("sshfleet: listening on port %d\n", f.Port)
	// SIGUSR1 prints the counters and resets the peak (benches read it per run).
	usr := make(chan os.Signal, 1)
	signal.Notify(usr, syscall.SIGUSR1)
	for {
		select {
		case <-usr:
			fmt.Printf("sshfleet: accepted %d, peak open connections %d\n", f.Accepted.Load(), f.PeakActive.Swap(0))
			continue
		case <-ctx.Done():
		}
		break
	}
	f.Close()
	fmt.Printf("sshfleet: accepted %d, handshakes %d, sessions %d, peak open connections since the last SIGUSR1 %d\n",
		f.Accepted.Load(), f.Handshakes.Load(), f.Sessions.Load(), f.PeakActive.Load())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sshfleet:", err)
	os.Exit(1)
}
