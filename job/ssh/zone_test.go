package ssh

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// TestDialsTargetZoneUserPort: a target parsed from
// admin@[fe80::1%lo]:2222 is dialled at its zoned address and port, as
// that address and port (the dialer here records it, then reaches the lab
// fleet, which plays any host: fe80::1 is not on this machine's lo).
func TestDialsTargetZoneUserPort(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	h := newHome(t, "")
	var mu sync.Mutex
	var dialled []string
	env := h.env()
	env.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(host(1), uint16(fleet.Port)).String())
	}
	j := newJob(t, Config{Command: "hostname", HostKey: HostKeyOff, User: "ignored", Port: 22}, env)
	set, err := target.Parse([]string{"admin@[fe80::1%lo]:2222"}, target.ParseOptions{Takes: Traits.Takes, Job: j.Kind()})
	if err != nil {
		t.Fatal(err)
	}
	tg := set.At(0)
	if hs := settingsOf(t, j, tg); hs.user != "admin" || hs.port != 2222 || hs.addr() != "[fe80::1%lo]:2222" {
		t.Errorf("settings: user %q port %d addr %q, want admin, 2222, [fe80::1%%lo]:2222", hs.user, hs.port, hs.addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := j.Run(ctx, tg)
	if r.Status != job.Up || r.Port != 2222 || r.Host != "fe80::1%lo" {
		t.Errorf("Run: %s/%s (%s) port %d host %q, want up on 2222 for fe80::1%%lo", r.Status, r.Class, r.Error, r.Port, r.Host)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialled) != 1 || dialled[0] != "[fe80::1%lo]:"+strconv.Itoa(2222) {
		t.Errorf("dialled %q, want [fe80::1%%lo]:2222", dialled)
	}
}
