package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
	"github.com/fanout/fanout/target"
)

// knownFileLines maps each line of a known_hosts file to the hosts of the
// fleet (1..n) it names, hashed or not, and reports hashed lines.
func knownFileLines(t *testing.T, path string, n, port int) (lines []string, hostsOf [][]int, hashed []bool) {
	t.Helper()
	text := strings.TrimSuffix(readFile(t, path), "\n")
	if text == "" {
		return nil, nil, nil
	}
	for _, l := range strings.Split(text, "\n") {
		field, _, _ := strings.Cut(l, " ")
		isHashed, _ := hostkeys.FieldNames(field, "")
		var hs []int
		for i := 1; i <= n; i++ {
			norm := fmt.Sprintf("[%s]:%d", host(i), port)
			if _, names := hostkeys.FieldNames(field, norm); names {
				hs = append(hs, i)
			}
		}
		lines, hostsOf, hashed = append(lines, l), append(hostsOf, hs), append(hashed, isHashed)
	}
	return lines, hostsOf, hashed
}

// With HashKnownHosts yes for a host, accept-new writes its line hashed, as
// OpenSSH does, and fanout finds it again: later in the same sweep, in a
// strict sweep after, and in another accept-new sweep (which adds nothing).
func TestHashKnownHostsAcceptNew(t *testing.T) {
	t.Parallel()
	const n = 6
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	var targets []target.Target
	for i := 1; i <= n; i++ {
		targets = append(targets, at(i, fleet.Port))
	}
	tests := []struct {
		name   string
		config string // ~/.ssh/config
		opts   map[string]string
		hashed func(i int) bool
	}{
		{"off", "", nil, func(int) bool { return false }},
		{"-o yes", "", map[string]string{"HashKnownHosts": "yes"}, func(int) bool { return true }},
		{"-o no over the config", "Host *\n  HashKnownHosts yes\n", map[string]string{"HashKnownHosts": "no"}, func(int) bool { return false }},
		{"config, Host *", "Host *\n  HashKnownHosts yes\n", nil, func(int) bool { return true }},
		{"config, OpenSSH's other spelling", "Host *\n  HashKnownHosts True\n", nil, func(int) bool { return true }},
		{"config, per host", fmt.Sprintf("Host %s %s\n  HashKnownHosts yes\nHost *\n  HashKnownHosts no\n", host(2), host(5)), nil,
			func(i int) bool { return i == 2 || i == 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			home := newHome(t, "")
			if tt.config != "" {
				writeFile(t, home.dir, ".ssh/config", tt.config)
			}
			kh := filepath.Join(home.dir, ".ssh", "known_hosts")
			accept := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew, Options: tt.opts}, home.env())
			for _, r := range run(t, accept, targets, 3) {
				if r.Status != job.Up {
					t.Errorf("accept-new: %s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
				}
			}
			// The same sweep meets a host it added again.
			if r := accept.Run(context.Background(), at(2, fleet.Port)); r.Status != job.Up {
				t.Errorf("accept-new, host 2 again: %s/%s %q", r.Status, r.Class, r.Error)
			}
			lines, hostsOf, hashed := knownFileLines(t, kh, n, fleet.Port)
			if len(lines) != n {
				t.Fatalf("known_hosts has %d lines for %d hosts:\n%s", len(lines), n, strings.Join(lines, "\n"))
			}
			for k, l := range lines {
				if len(hostsOf[k]) != 1 {
					t.Errorf("line %q names hosts %v, want one", l, hostsOf[k])
					continue
				}
				i := hostsOf[k][0]
				if hashed[k] != tt.hashed(i) {
					t.Errorf("host %d: line %q hashed %v, want %v", i, l, hashed[k], tt.hashed(i))
				}
				if hashed[k] && (!strings.HasPrefix(l, "|1|") || strings.Contains(l, host(i).String())) {
					t.Errorf("host %d: hashed line %q shows the host", i, l)
				}
				if want := " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fleet.HostKey))); !strings.HasSuffix(l, want) {
					t.Errorf("host %d: line %q does not end in the fleet's key", i, l)
				}
			}
			before := readFile(t, kh)
			strict := newJob(t, Config{Command: "echo hi", Options: tt.opts}, home.env())
			again := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew, Options: tt.opts}, home.env())
			for _, j := range []*Job{strict, again} {
				for _, r := range run(t, j, targets, 3) {
					if r.Status != job.Up {
						t.Errorf("later sweep (%s): %s: %s/%s %q", j.cfg.HostKey, r.Host, r.Status, r.Class, r.Error)
					}
				}
			}
			if after := readFile(t, kh); after != before {
				t.Errorf("a later accept-new sweep wrote to known_hosts:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

// A hashed line stays a host's line: a changed key is still CHANGED, and
// two processes hashing at once (whose lines differ by their salts) still
// write each host once, each reading the other's hashed lines under the
// lock.
func TestHashKnownHostsChangedAndConcurrent(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, "")
	opts := map[string]string{"HashKnownHosts": "yes"}
	kh, lines, hostsOf, hashed := acceptNewTwice(t, fleet, home, 40, 8, opts)
	for k := range lines {
		if !hashed[k] {
			t.Errorf("line %q not hashed", lines[k])
		}
	}

	// Host 3's hashed line now holds another key: CHANGED, whatever the
	// policy, naming the line; the file is not touched.
	line := 0
	for k := range lines {
		if len(hostsOf[k]) == 1 && hostsOf[k][0] == 3 {
			field, _, _ := strings.Cut(lines[k], " ")
			lines[k] = field + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fleet.WrongKey)))
			line = k + 1
		}
	}
	changed := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(kh, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{HostKeyStrict, HostKeyAcceptNew} {
		j := newJob(t, Config{Command: "echo hi", HostKey: policy, Options: opts}, home.env())
		r := j.Run(context.Background(), at(3, fleet.Port))
		if r.Class != job.ClassHostKey || !strings.Contains(r.Error, "CHANGED") || !strings.Contains(r.Error, fmt.Sprintf("known_hosts:%d", line)) {
			t.Errorf("%s, hashed line with another key: %s/%s %q, want hostkey CHANGED naming known_hosts:%d", policy, r.Status, r.Class, r.Error, line)
		}
	}
	if got := readFile(t, kh); got != changed {
		t.Errorf("known_hosts changed by a sweep meeting a changed key:\n%s", got)
	}
}

// Interop with OpenSSH's client on a real sshd: ssh accepts the hashed line
// fanout wrote; fanout accepts the hashed line ssh wrote, read from a
// global file; and both fail on a changed key in the global file.
func TestOpenSSHHashedAndGlobalKnownHosts(t *testing.T) {
	t.Parallel()
	sshPath, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no ssh client (apt-get install openssh-client)")
	}
	home := newHome(t, "")
	d := startSSHD(t, []ssh.PublicKey{home.pub})
	dir := t.TempDir()
	sshc := func(opts ...string) error {
		args := []string{"-F", "none", "-o", "BatchMode=yes", "-i", filepath.Join(home.dir, ".ssh", "id_ed25519"), "-p", fmt.Sprint(d.port)}
		for _, o := range opts {
			args = append(args, "-o", o)
		}
		var stderr strings.Builder
		cmd := exec.Command(sshPath, append(args, "root@127.0.0.1", "echo ok")...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil && string(out) != "ok\n" {
			err = fmt.Errorf("printed %q", out)
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr.String())
		}
		return nil
	}

	// fanout hashes, ssh reads.
	mine := filepath.Join(dir, "fanout_known_hosts")
	j := newJob(t, Config{Command: "true", HostKey: HostKeyAcceptNew, KnownHosts: []string{mine},
		Options: map[string]string{"HashKnownHosts": "yes"}}, rootEnv(home))
	if r := j.Run(context.Background(), lo(d.port)); r.Status != job.Up {
		t.Fatalf("fanout accept-new, hashed: %s/%s %q", r.Status, r.Class, r.Error)
	}
	if data := readFile(t, mine); !strings.HasPrefix(data, "|1|") || strings.Contains(data, "127.0.0.1") {
		t.Fatalf("fanout's line is not hashed:\n%s", data)
	}
	if err := sshc("StrictHostKeyChecking=yes", "UserKnownHostsFile="+mine, "GlobalKnownHostsFile=none"); err != nil {
		t.Errorf("ssh with the hashed line fanout wrote: %v", err)
	}

	// ssh hashes, fanout reads it as the global file.
	theirs := filepath.Join(dir, "ssh_known_hosts")
	if err := sshc("StrictHostKeyChecking=accept-new", "HashKnownHosts=yes", "UserKnownHostsFile="+theirs, "GlobalKnownHostsFile=none"); err != nil {
		t.Fatalf("ssh accept-new: %v", err)
	}
	if data := readFile(t, theirs); !strings.HasPrefix(data, "|1|") {
		t.Fatalf("ssh's line is not hashed:\n%s", data)
	}
	empty := filepath.Join(dir, "empty")
	strict := newJob(t, Config{Command: "true", KnownHosts: []string{empty},
		Options: map[string]string{"GlobalKnownHostsFile": theirs}}, rootEnv(home))
	if r := strict.Run(context.Background(), lo(d.port)); r.Status != job.Up {
		t.Errorf("fanout, ssh's hashed line in the global file: %s/%s %q", r.Status, r.Class, r.Error)
	}
	if err := sshc("StrictHostKeyChecking=yes", "UserKnownHostsFile="+empty, "GlobalKnownHostsFile="+theirs); err != nil {
		t.Errorf("ssh, its hashed line in the global file: %v", err)
	}

	// Another key in the global file: both refuse, even with accept-new.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	changed := filepath.Join(dir, "changed")
	if err := os.WriteFile(changed, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", d.port, ssh.MarshalAuthorizedKey(otherPub))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sshc("StrictHostKeyChecking=accept-new", "UserKnownHostsFile="+empty, "GlobalKnownHostsFile="+changed); err == nil {
		t.Errorf("ssh accepted a key that the global file has changed")
	}
	acc := newJob(t, Config{Command: "true", HostKey: HostKeyAcceptNew, KnownHosts: []string{empty},
		Options: map[string]string{"GlobalKnownHostsFile": changed}}, rootEnv(home))
	if r := acc.Run(context.Background(), lo(d.port)); r.Class != job.ClassHostKey || !strings.Contains(r.Error, "CHANGED") || !strings.Contains(r.Error, changed+":1") {
		t.Errorf("fanout accept-new, changed in the global file: %s/%s %q, want hostkey CHANGED naming %s:1", r.Status, r.Class, r.Error, changed)
	}
	if data := readFile(t, empty); data != "" {
		t.Errorf("user file written on a changed key:\n%s", data)
	}
}

// HashKnownHosts is taken from the Host blocks the target's alias matches,
// as OpenSSH does: a block naming only the alias decides, though the line
// written names its HostName.
func TestHashKnownHostsByAlias(t *testing.T) {
	t.Parallel()
	fleet := lab.StartSSHFleetT(t, lab.SSHFleetOptions{})
	home := newHome(t, "")
	writeFile(t, home.dir, ".ssh/config", fmt.Sprintf("Host web3\n  HostName %s\n  HashKnownHosts yes\nHost *\n  HashKnownHosts no\n", host(3)))
	kh := filepath.Join(home.dir, ".ssh", "known_hosts")
	accept := newJob(t, Config{Command: "echo hi", HostKey: HostKeyAcceptNew}, home.env())
	named := target.Target{Host: "web3", Port: uint16(fleet.Port)}
	for _, tg := range []target.Target{named, at(4, fleet.Port)} {
		if r := accept.Run(context.Background(), tg); r.Status != job.Up {
			t.Fatalf("accept-new %s: %s/%s %q", r.Host, r.Status, r.Class, r.Error)
		}
	}
	lines, hostsOf, hashed := knownFileLines(t, kh, 4, fleet.Port)
	if len(lines) != 2 {
		t.Fatalf("known_hosts has %d lines, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for k, l := range lines {
		if len(hostsOf[k]) != 1 {
			t.Fatalf("line %q names hosts %v, want one", l, hostsOf[k])
		}
		if i := hostsOf[k][0]; hashed[k] != (i == 3) {
			t.Errorf("host %d (web3 is host 3): line %q hashed %v", i, l, hashed[k])
		}
	}
}
