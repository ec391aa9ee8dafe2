package cli_test

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hostsOf is the sorted hosts of a jsonl run.
func hostsOf(t *testing.T, stdout string) []string {
	t.Helper()
	var hosts []string
	for _, r := range results(t, stdout) {
		hosts = append(hosts, r.Host)
	}
	slices.Sort(hosts)
	return hosts
}

// TestNetworkBroadcastSkipped: ping, tcp (and ssh) leave out the network
// and broadcast addresses of a CIDR of /30 and wider, as fping -g does;
// --all-addresses keeps them; exec keeps them always.
func TestNetworkBroadcastSkipped(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close() // a closed port: every probe is refused at once
	edges := []string{"127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3"}
	inner := edges[1:3]
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"tcp", "-p", port, "--timeout", "5s", "127.0.0.0/30"}, inner},
		{[]string{"tcp", "-p", port, "--timeout", "5s", "--all-addresses", "127.0.0.0/30"}, edges},
		{[]string{"tcp", "-p", port, "--timeout", "5s", "127.0.0.0/31", "127.0.0.2-3"}, edges},
		{[]string{"ping", "--count", "1", "127.0.0.0/30"}, inner},
		{[]string{"ping", "--count", "1", "--all-addresses", "127.0.0.0/30"}, edges},
		{[]string{"exec", "127.0.0.0/30", "--", "true"}, edges},
	} {
		args := append([]string{tt.args[0], "-o", "jsonl", "-q"}, tt.args[1:]...)
		r := fanout(t, "", args...)
		if r.code > 1 {
			t.Fatalf("fanout %q: exit %d, stderr %s", tt.args, r.code, r.stderr)
		}
		if got := hostsOf(t, r.stdout); !slices.Equal(got, tt.want) {
			t.Errorf("fanout %q: hosts %q, want %q", tt.args, got, tt.want)
		}
	}
	r := fanout(t, "", "exec", "--all-addresses", "127.0.0.0/30", "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, "--all-addresses: exec keeps every address") {
		t.Errorf("exec --all-addresses: exit %d, stderr %q; want 2, naming why", r.code, r.stderr)
	}
}
