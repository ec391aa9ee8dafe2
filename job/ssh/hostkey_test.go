package ssh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// With accept-new, what another process wrote to known_hosts after the job
// read it is respected: the file is read again under the lock.
func TestAcceptNewRereadsKnownHostsUnderLock(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, "")
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	j := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew}, home.env())

	// Meanwhile another fanout (plain lines) and ssh (hashed lines) add
	// hosts 1-4, two of them with another key than the fleet's.
	addr := func(i int) string { return fmt.Sprintf("[%s]:%d", host(i), fleet.Port) }
	meanwhile := fmt.Sprintf("%s %s%s %s%s %s%s %s",
		addr(1), ssh.MarshalAuthorizedKey(fleet.WrongKey),
		addr(2), ssh.MarshalAuthorizedKey(fleet.HostKey),
		hashHost(addr(3)), ssh.MarshalAuthorizedKey(fleet.HostKey),
		hashHost(addr(4)), ssh.MarshalAuthorizedKey(fleet.WrongKey))
	if err := os.WriteFile(kh, []byte(meanwhile), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host int
		up   bool
		want string // in the error
	}{
		{1, false, "known_hosts:1"},
		{2, true, ""},
		{3, true, ""},
		{4, false, "known_hosts:4"},
		{5, true, ""}, // unknown everywhere: added
	}
	for _, tt := range tests {
		r := j.Run(context.Background(), at(tt.host, fleet.Port))
		switch {
		case tt.up && r.Status != job.Up:
			t.Errorf("host %d: %s/%s %q, want up", tt.host, r.Status, r.Class, r.Error)
		case !tt.up && (r.Class != job.ClassHostKey || !strings.Contains(r.Error, "CHANGED") || !strings.Contains(r.Error, tt.want)):
			t.Errorf("host %d: %s/%s %q, want hostkey CHANGED naming %s", tt.host, r.Status, r.Class, r.Error, tt.want)
		}
	}
	data, _ := os.ReadFile(kh)
	want := meanwhile + fmt.Sprintf("%s %s", addr(5), ssh.MarshalAuthorizedKey(fleet.HostKey))
	if string(data) != want {
		t.Errorf("known_hosts after the sweep:\n%s\nwant only host 5 added:\n%s", data, want)
	}
}

// Two jobs with their own state (as two fanout processes) accept the same
// new hosts at the same time: each host ends on exactly one line.
func TestAcceptNewConcurrentJobsOneLinePerHost(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	_, lines, _, hashed := acceptNewTwice(t, fleet, newHome(t, ""), 60, 16, nil)
	for k, l := range lines {
		if hashed[k] {
			t.Errorf("line %q hashed, want plain", l)
		}
	}
}

// acceptNewTwice runs two accept-new jobs of their own state (as two fanout
// processes, both reading the file before either sweeps) over hosts 1..n
// at once, c targets in flight each, and checks every host is up and ends
// on exactly one line of known_hosts, which it returns as knownFileLines
// does.
func acceptNewTwice(t *testing.T, fleet *lab.Fleet, home *testHome, n, c int, opts map[string]string) (kh string, lines []string, hostsOf [][]int, hashed []bool) {
	t.Helper()
	kh = filepath.Join(home.dir, ".ssh", "known_hosts")
	var targets []target.Target
	for i := 1; i <= n; i++ {
		targets = append(targets, at(i, fleet.Port))
	}
	jobs := []*Job{
		newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew, Options: opts}, home.env()),
		newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew, Options: opts}, home.env()),
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range run(t, j, targets, c) {
				if r.Status != job.Up {
					t.Errorf("%s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
				}
			}
		}()
	}
	wg.Wait()
	lines, hostsOf, hashed = knownFileLines(t, kh, n, fleet.Port)
	seen := map[int]int{}
	for k := range lines {
		for _, i := range hostsOf[k] {
			seen[i]++
		}
	}
	for i := 1; i <= n; i++ {
		if seen[i] != 1 {
			t.Errorf("host %d on %d lines, want 1", i, seen[i])
		}
	}
	if len(lines) != n {
		t.Errorf("known_hosts has %d lines for %d hosts", len(lines), n)
	}
	return kh, lines, hostsOf, hashed
}
