package cli_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
)

// nft loads ruleset into the lab namespace this test runs in.
func nft(t *testing.T, ruleset string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\n%s", err, out, ruleset)
	}
}

// Exact changes: a ping watch of the 65,536 live lab addresses every 2 s.
// After round 1 the test drops 100 chosen addresses (an nft rule), and
// once their 100 down events are in it restores them: exactly 100 down
// events then exactly 100 up events, naming exactly those addresses, and no
// other event, over the rounds until one more full round after the last up.
// Not parallel: the lab's other tests ping these addresses.
func TestWatchExactChanges(t *testing.T) {
	lab.Require(t)
	chosen := map[string]bool{}
	var set []string
	for i := 1; i <= 100; i++ {
		a := netip.AddrFrom4([4]byte{127, 0, byte(i), byte(i * 7 % 256)}).String()
		chosen[a] = true
		set = append(set, a)
	}
	const table = "watchexact"
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })

	w := startWatch(t, "watch", "ping", "--every", "2s", "-o", "jsonl", "--all-addresses", "127.0.0.0/16")
	w.waitErr(t, "round 1:")
	if out, _ := w.lines(); len(out) != 0 {
		t.Fatalf("round 1 of live targets printed changes: %v", out[:min(len(out), 5)])
	}
	nft(t, fmt.Sprintf(`table inet %s {
	chain input {
		type filter hook input priority -1; policy accept;
		ip daddr { %s } icmp type echo-request drop
	}
}`, table, strings.Join(set, ", ")))
	testwait.For(t, "100 down events", func() bool { out, _ := w.lines(); return len(out) >= 100 })
	nft(t, "delete table inet "+table)
	testwait.For(t, "100 up events", func() bool { out, _ := w.lines(); return len(out) >= 200 })
	// One more full round after the last up: no stray event in it.
	_, errs := w.lines()
	rounds := 0
	for _, l := range errs {
		if strings.HasPrefix(l, "round ") {
			rounds++
		}
	}
	testwait.For(t, "one more round", func() bool {
		_, errs := w.lines()
		n := 0
		for _, l := range errs {
			if strings.HasPrefix(l, "round ") {
				n++
			}
		}
		return n >= rounds+2 // the round running at the last up, and a whole one after
	})
	w.cmd.Process.Signal(syscall.SIGINT)
	code := w.wait(t)
	out, errs := w.lines()
	if code != 130 {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, strings.Join(errs, "\n"))
	}
	cs := changes(t, out)
	downs, ups := map[string]uint64{}, map[string]uint64{}
	for _, c := range cs {
		switch {
		case !chosen[c.Host]:
			t.Errorf("event for an address never dropped: %+v", c)
		case c.Change == "down" && downs[c.Host] == 0:
			downs[c.Host] = c.Round
		case c.Change == "up" && ups[c.Host] == 0 && downs[c.Host] != 0:
			ups[c.Host] = c.Round
		default:
			t.Errorf("unexpected event %+v", c)
		}
	}
	if len(cs) != 200 || len(downs) != 100 || len(ups) != 100 {
		t.Fatalf("%d events: %d down, %d up; want exactly 100 of each (stderr:\n%s)", len(cs), len(downs), len(ups), strings.Join(errs, "\n"))
	}
	for a, r := range ups {
		if r <= downs[a] {
			t.Errorf("%s up in round %d, down in round %d", a, r, downs[a])
		}
	}
	t.Logf("%d rounds; stderr:\n%s", len(errs), strings.Join(errs, "\n"))
}

// watch ping --count 5 to the 65,536 lab addresses, with the replies of
// some probes dropped by their probe number (an nft rule on the payload),
// by address: x.x.x.0 mod 4 loses none, 1 mod 4 loses probe 0, 2 mod 4
// probes 1 and 3, 3 mod 4 all. Every target reports exactly the replies of
// its own probes (one reply credited to another target would show as a
// count off by one on both), with loss and RTT min/avg/max/stddev; with
// --loss-threshold 30, the 40% of 2 mod 4 are loss changes, the 20% of
// 1 mod 4 are not, and 3 mod 4 are down. Not parallel: the rule touches
// addresses the lab's other tests ping.
func TestWatchPingCountMatching(t *testing.T) {
	lab.Require(t)
	const table = "watchcount"
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
	// The probe number is at byte 20 of the ICMP message (bit 160): the
	// 8-byte header, then the payload's index (8) and slot (4).
	nft(t, `table inet `+table+` {
	chain input {
		type filter hook input priority -1; policy accept;
		ip daddr 127.0.0.0/16 ip daddr & 0.0.0.3 == 0.0.0.1 icmp type echo-request @th,160,16 0 drop
		ip daddr 127.0.0.0/16 ip daddr & 0.0.0.3 == 0.0.0.2 icmp type echo-request @th,160,16 { 1, 3 } drop
		ip daddr 127.0.0.0/16 ip daddr & 0.0.0.3 == 0.0.0.3 icmp type echo-request drop
	}
}`)
	r := fanout(t, "", "watch", "ping", "--count", "5", "--interval", "10ms", "--timeout", "1s", "--every", "1m",
		"--rounds", "1", "--spread=false", "--all", "--loss-threshold", "30", "-o", "jsonl", "--all-addresses", "127.0.0.0/16")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (some down); stderr:\n%s", r.code, r.stderr)
	}
	var results, kinds = map[string]job.Result{}, map[string]map[int]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var x job.Result
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		a := netip.MustParseAddr(x.Host).As4()
		k := int(a[3] & 3)
		if _, kind, ok := strings.Cut(line, `"change":"`); ok {
			kind, _, _ = strings.Cut(kind, `"`)
			if kinds[kind] == nil {
				kinds[kind] = map[int]int{}
			}
			kinds[kind][k]++
			continue
		}
		if _, dup := results[x.Host]; dup || !strings.HasSuffix(line, `"round":1}`) {
			t.Fatalf("result twice or not of round 1: %s", line)
		}
		results[x.Host] = x
		want := []int{5, 4, 3, 0}[k]
		if x.Sent != 5 || x.Recv != want {
			t.Fatalf("%s: %d/%d received, want %d/5 (a reply credited to the wrong target?)", x.Host, x.Recv, x.Sent, want)
		}
		if want > 0 && (x.Status != job.Up || x.RTTMin <= 0 || x.RTTMin > x.RTTAvg || x.RTTAvg > x.RTTMax || x.RTTStddev > x.RTTMax-x.RTTMin) {
			t.Fatalf("%s: %+v: want up with rtt min <= avg <= max and stddev within max-min", x.Host, x)
		}
		if want == 0 && (x.Status != job.Down || x.Class != job.ClassTimeout) {
			t.Fatalf("%s: %+v: want down, timeout", x.Host, x)
		}
	}
	if len(results) != 65536 {
		t.Fatalf("%d results, want 65536", len(results))
	}
	if len(kinds) != 2 || len(kinds["down"]) != 1 || kinds["down"][3] != 16384 || len(kinds["loss"]) != 1 || kinds["loss"][2] != 16384 {
		t.Fatalf("changes by kind and address mod 4: %v; want 16384 down (3) and 16384 loss (2)", kinds)
	}
}
