package lab

import (
	"context"
	"net"
	"testing"

	"github.com/fanout/fanout/internal/testwait"
)

func TestNoDNS(t *testing.T) {
	// Main installed it; a name outside /etc/hosts fails at once, localhost
	// still resolves from /etc/hosts.
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang) // only a hang: both answers come from local files
	defer cancel()
	if _, err := net.DefaultResolver.LookupNetIP(ctx, "ip", "no-such-host.invalid"); err == nil {
		t.Fatal("no-such-host.invalid resolved")
	}
	if _, err := net.DefaultResolver.LookupNetIP(ctx, "ip", "localhost"); err != nil {
		t.Fatalf("localhost: %v", err)
	}
}
