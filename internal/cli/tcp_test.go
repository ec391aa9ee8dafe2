package cli_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
)

// listen starts a listener on addr that accepts and closes, for the test's
// listen runs a listener on addr that accepts and closes, for the test's
// lifetime, and returns its port.
func listen(t *testing.T, addr string) int { return lab.Port(lab.ClosingListener(t, addr)) }

// closedPort is a port nothing listens on (bound, then released).
func closedPort(t *testing.T) int { return lab.ClosedPort(t) }

func TestTCPLoopback(t *testing.T) {
	t.Parallel()
	open, closed := listen(t, "127.0.0.1:0"), closedPort(t)
	ports := strconv.Itoa(open) + "," + strconv.Itoa(closed)

	r := fanout(t, "", "tcp", "-p", ports, "-o", "jsonl", "127.0.0.1")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (one port refused); stderr: %s", r.code, r.stderr)
	}
	got := byHost(results(t, r.stdout))
	if len(got) != 2 {
		t.Fatalf("want 2 results (one per port), got:\n%s", r.stdout)
	}
	up := got["127.0.0.1:"+strconv.Itoa(open)]
	if up.Status != job.Up || up.Job != "tcp" || up.RTT <= 0 {
		t.Errorf("open port: %+v, want up with an RTT", up)
	}
	down := got["127.0.0.1:"+strconv.Itoa(closed)]
	if down.Status != job.Down || down.Class != job.ClassRefused {
		t.Errorf("closed port: %+v, want down refused", down)
	}

	if r := fanout(t, "", "tcp", "-p", strconv.Itoa(open), "127.0.0.1"); r.code != 0 {
		t.Errorf("open port only: exit %d, want 0; stderr: %s", r.code, r.stderr)
	}
	// The (host, port) product counts against --max-targets.
	r = fanout(t, "", "tcp", "-p", "1-1000", "--max-targets", "500", "127.0.0.1")
	if r.code != 2 || !strings.Contains(r.stderr, "--max-targets") {
		t.Errorf("1000 ports over a limit of 500: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestTCPLab: inside the lab namespace, 127.0.0.0/24 answers (up where a
// listener is, refused elsewhere) and 127.1.0.0/24 drops SYNs (timeout).
func TestTCPLab(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	open := listen(t, "0.0.0.0:0") // answers on every live 127.x.y.z
	closed := closedPort(t)

	// A /24's 254 hosts: tcp leaves out .0 and .255 (fping -g's rule).
	cases := []struct {
		port                int
		up, refused, timout int
	}{
		{open, 254, 0, 254},
		{closed, 0, 254, 254},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.port), func(t *testing.T) {
			t.Parallel()
			// The live range gets a timeout only a hang reaches: hundreds of
			// connects at once in a -race binary on a busy machine may be
			// slow to be read, and are not wrong for that. Only the dead
			// range, whose connects must time out, gets 1s.
			wantLive := 0
			if tc.refused > 0 {
				wantLive = 1
			}
			live := fanout(t, "", "tcp", "-p", strconv.Itoa(tc.port), "--timeout", testwait.Hang.String(), "-o", "jsonl", "127.0.0.0/24")
			if live.code != wantLive {
				t.Errorf("port %d, live range: exit %d, want %d; stderr: %s", tc.port, live.code, wantLive, live.stderr)
			}
			dead := fanout(t, "", "tcp", "-p", strconv.Itoa(tc.port), "--timeout", "1s", "-o", "jsonl", "127.1.0.0/24")
			if dead.code != 1 {
				t.Errorf("port %d, dead range: exit %d, want 1; stderr: %s", tc.port, dead.code, dead.stderr)
			}
			var up, refused, timeout, other int
			for _, res := range results(t, live.stdout+"\n"+dead.stdout) {
				live := strings.HasPrefix(res.Host, "127.0.0.")
				switch {
				case res.Status == job.Up && live:
					up++
				case res.Status == job.Down && res.Class == job.ClassRefused && live:
					refused++
				case res.Status == job.Down && res.Class == job.ClassTimeout && !live:
					timeout++
				default:
					other++
					if other < 5 {
						t.Errorf("port %d: unexpected %s %s %s %q", tc.port, res.Host, res.Status, res.Class, res.Error)
					}
				}
			}
			if up != tc.up || refused != tc.refused || timeout != tc.timout || other != 0 {
				t.Errorf("port %d: up %d refused %d timeout %d other %d; want %d %d %d 0",
					tc.port, up, refused, timeout, other, tc.up, tc.refused, tc.timout)
			}
		})
	}
}
