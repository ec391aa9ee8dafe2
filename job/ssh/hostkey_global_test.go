package ssh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Tests never read this machine's /etc/ssh/ssh_known_hosts: a test that
// wants a global file names it (-o GlobalKnownHostsFile, or this variable
// in TestGlobalKnownHostsDefaultAndDisabled).
func init() { defaultGlobalKnownHosts = nil }

// knownLine is a known_hosts line for host i of the fleet with key.
func knownLine(i, port int, key ssh.PublicKey) string {
	return fmt.Sprintf("[%s]:%d %s", host(i), port, ssh.MarshalAuthorizedKey(key))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

// The global file is read after the user's, and never written: a key there
// is trusted, a changed key there or a @revoked line is a hostkey error, and
// accept-new writes only to the user's file.
func TestGlobalKnownHosts(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, knownLine(1, fleet.Port, fleet.HostKey))
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	dir := t.TempDir()
	global := filepath.Join(dir, "ssh_known_hosts")
	globalText := "# the system's\n" + knownLine(2, fleet.Port, fleet.HostKey) + knownLine(3, fleet.Port, fleet.WrongKey) +
		hashHost(fmt.Sprintf("[%s]:%d", host(4), fleet.Port)) + " " + string(ssh.MarshalAuthorizedKey(fleet.HostKey))
	if err := os.WriteFile(global, []byte(globalText), 0o644); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "ssh_known_hosts2")
	if err := os.WriteFile(second, []byte(knownLine(6, fleet.Port, fleet.HostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two files, one missing (no error, as in OpenSSH).
	opts := map[string]string{"GlobalKnownHostsFile": global + " " + filepath.Join(dir, "missing") + " " + second}
	userBefore := readFile(t, kh)

	tests := []struct {
		host int
		up   bool
		want []string // in the error
	}{
		{1, true, nil}, // user file
		{2, true, nil}, // global file
		{4, true, nil}, // global file, hashed
		{6, true, nil}, // second global file
		{3, false, []string{"CHANGED", global + ":3"}},
		{5, false, []string{"unknown", kh, global, second}},
	}
	strict := newJob(t, Config{Command: "echo hi", Options: opts}, home.env())
	for _, tt := range tests {
		r := strict.Run(context.Background(), at(tt.host, fleet.Port))
		if tt.up != (r.Status == job.Up) {
			t.Errorf("strict, host %d: %s/%s %q, want up %v", tt.host, r.Status, r.Class, r.Error, tt.up)
			continue
		}
		if !tt.up && r.Class != job.ClassHostKey {
			t.Errorf("strict, host %d: %s/%s %q, want hostkey", tt.host, r.Status, r.Class, r.Error)
		}
		for _, w := range tt.want {
			if !strings.Contains(r.Error, w) {
				t.Errorf("strict, host %d: %q does not name %q", tt.host, r.Error, w)
			}
		}
	}

	// accept-new: host 5 goes to the user's file; host 3's changed key in
	// the global file stays an error; the global files are untouched.
	accept := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew, Options: opts}, home.env())
	for _, r := range run(t, accept, []target.Target{at(2, fleet.Port), at(3, fleet.Port), at(5, fleet.Port)}, 3) {
		switch {
		case r.Host == host(3).String():
			if r.Class != job.ClassHostKey || !strings.Contains(r.Error, "CHANGED") {
				t.Errorf("accept-new, changed in the global file: %s/%s %q, want hostkey CHANGED", r.Status, r.Class, r.Error)
			}
		case r.Status != job.Up:
			t.Errorf("accept-new, %s: %s/%s %q, want up", r.Host, r.Status, r.Class, r.Error)
		}
	}
	if got, want := readFile(t, kh), userBefore+knownLine(5, fleet.Port, fleet.HostKey); got != want {
		t.Errorf("user known_hosts after accept-new:\n%s\nwant host 5 added, only:\n%s", got, want)
	}
	if got := readFile(t, global); got != globalText {
		t.Errorf("accept-new wrote to the global file:\n%s", got)
	}

	// A @revoked line in the global file wins over the user's trust.
	revoked := filepath.Join(dir, "revoked")
	if err := os.WriteFile(revoked, []byte("@revoked * "+string(ssh.MarshalAuthorizedKey(fleet.HostKey))), 0o644); err != nil {
		t.Fatal(err)
	}
	rj := newJob(t, Config{Command: "echo hi", Options: map[string]string{"GlobalKnownHostsFile": revoked}}, home.env())
	if r := rj.Run(context.Background(), at(1, fleet.Port)); r.Class != job.ClassHostKey || !strings.Contains(r.Error, "revoked ("+revoked+":1)") {
		t.Errorf("key revoked in the global file: %s/%s %q, want hostkey revoked naming %s:1", r.Status, r.Class, r.Error, revoked)
	}
}

// --known-hosts (Config.KnownHosts) replaces the user's file only: the
// global file is still read, and accept-new writes to the first given file.
func TestKnownHostsFlagKeepsGlobal(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, "")
	dir := t.TempDir()
	global := filepath.Join(dir, "global")
	if err := os.WriteFile(global, []byte(knownLine(1, fleet.Port, fleet.HostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "mine")
	j := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew, KnownHosts: []string{mine},
		Options: map[string]string{"GlobalKnownHostsFile": global}}, home.env())
	for _, r := range run(t, j, []target.Target{at(1, fleet.Port), at(2, fleet.Port)}, 2) {
		if r.Status != job.Up {
			t.Errorf("%s: %s/%s %q, want up", r.Host, r.Status, r.Class, r.Error)
		}
	}
	if got, want := readFile(t, mine), knownLine(2, fleet.Port, fleet.HostKey); got != want {
		t.Errorf("--known-hosts file:\n%s\nwant only host 2 (host 1 is in the global file):\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(home.dir, ".ssh", "known_hosts")); !os.IsNotExist(err) {
		t.Errorf("~/.ssh/known_hosts written although --known-hosts was given")
	}
}

// Without GlobalKnownHostsFile, OpenSSH's two files are read;
// GlobalKnownHostsFile none or /dev/null (as bench/ssh.sh's config sets it),
// from -o or from the config file, reads none. Not parallel: it sets
// defaultGlobalKnownHosts.
func TestGlobalKnownHostsDefaultAndDisabled(t *testing.T) {
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, "")
	dir := t.TempDir()
	saved := defaultGlobalKnownHosts
	t.Cleanup(func() { defaultGlobalKnownHosts = saved })
	defaultGlobalKnownHosts = []string{filepath.Join(dir, "ssh_known_hosts"), filepath.Join(dir, "ssh_known_hosts2")}
	if err := os.WriteFile(defaultGlobalKnownHosts[1], []byte(knownLine(1, fleet.Port, fleet.HostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(dir, "user_known_hosts")
	if err := os.WriteFile(user, []byte(knownLine(2, fleet.Port, fleet.HostKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	benchLike := writeFile(t, dir, "bench_config", fmt.Sprintf("Host *\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n", user))
	noneInFile := writeFile(t, dir, "none_config", "Host *\n  GlobalKnownHostsFile none\n")
	tests := []struct {
		name       string
		c          Config
		up1, up2   bool // host 1 is in the default global file, host 2 in user_known_hosts
		unknownMsg string
	}{
		{"default", Config{}, true, false, defaultGlobalKnownHosts[1]},
		{"-o none", Config{Options: map[string]string{"GlobalKnownHostsFile": "none"}}, false, false, ".ssh/known_hosts2)"},
		{"-o /dev/null", Config{Options: map[string]string{"GlobalKnownHostsFile": "/dev/null"}}, false, false, "/dev/null"},
		{"config none", Config{SSHConfig: noneInFile}, false, false, ".ssh/known_hosts2)"},
		{"bench's -F", Config{SSHConfig: benchLike}, false, true, user + ", /dev/null"},
		{"user none", Config{Options: map[string]string{"UserKnownHostsFile": "none"}}, true, false, "not in " + defaultGlobalKnownHosts[1] + ")"},
		{"both none", Config{Options: map[string]string{"UserKnownHostsFile": "none", "GlobalKnownHostsFile": "none"}}, false, false, "UserKnownHostsFile is none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Command = "echo hi"
			j := newJob(t, tt.c, home.env())
			for i, up := range []bool{tt.up1, tt.up2} {
				r := j.Run(context.Background(), at(i+1, fleet.Port))
				if up != (r.Status == job.Up) || (!up && r.Class != job.ClassHostKey) {
					t.Errorf("host %d: %s/%s %q, want up %v", i+1, r.Status, r.Class, r.Error, up)
				}
			}
			if r := j.Run(context.Background(), at(3, fleet.Port)); !strings.Contains(r.Error, tt.unknownMsg) {
				t.Errorf("unknown host: %q, want it to name %q", r.Error, tt.unknownMsg)
			}
		})
	}
}

// Bad global files are errors before the sweep, naming the file; accept-new
// with no user file to write is one too.
func TestGlobalKnownHostsErrors(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "a_directory")
	if err := os.Mkdir(unreadable, 0o755); err != nil {
		t.Fatal(err)
	}
	malformed := writeFile(t, dir, "malformed", "127.0.0.1 ssh-ed25519 not-base64!\n")
	tests := []struct {
		name string
		c    Config
		want []string
	}{
		{"unreadable", Config{Options: map[string]string{"GlobalKnownHostsFile": unreadable}}, []string{unreadable, "GlobalKnownHostsFile"}},
		{"unreadable, accept-new", Config{HostKey: HostKeyAcceptNew, Options: map[string]string{"GlobalKnownHostsFile": unreadable}}, []string{unreadable}},
		{"malformed", Config{Options: map[string]string{"GlobalKnownHostsFile": malformed}}, []string{malformed, "line 1"}},
		{"accept-new, user none", Config{HostKey: HostKeyAcceptNew, Options: map[string]string{"UserKnownHostsFile": "none"}}, []string{"accept-new", "UserKnownHostsFile is none"}},
		{"bad HashKnownHosts", Config{Options: map[string]string{"HashKnownHosts": "maybe"}}, []string{"HashKnownHosts", "maybe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Command = "true"
			newFails(t, tt.c, home.env(), tt.want...)
		})
	}
}

// A known_hosts whose last line has no newline (an editor left it so):
// accept-new starts its line on a line of its own, as OpenSSH does.
func TestAcceptNewAfterLastLineWithoutNewline(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	first := strings.TrimSuffix(knownLine(1, fleet.Port, fleet.HostKey), "\n")
	home := newHome(t, first)
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	j := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew}, home.env())
	for _, r := range run(t, j, []target.Target{at(1, fleet.Port), at(2, fleet.Port), at(3, fleet.Port)}, 1) {
		if r.Status != job.Up {
			t.Errorf("%s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
	want := first + "\n" + knownLine(2, fleet.Port, fleet.HostKey) + knownLine(3, fleet.Port, fleet.HostKey)
	if got := readFile(t, kh); got != want {
		t.Errorf("known_hosts:\n%s\nwant:\n%s", got, want)
	}
	strict := newJob(t, Config{Command: "echo hi"}, home.env())
	for _, r := range run(t, strict, []target.Target{at(1, fleet.Port), at(2, fleet.Port), at(3, fleet.Port)}, 3) {
		if r.Status != job.Up {
			t.Errorf("strict after: %s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
}
