package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fanout/fanout/internal/lab"
)

// TestInventoryTCP: tcp without -p checks each inventory host on its
// ansible_port, at its ansible_host, and shows it by its inventory name;
// --limit selects groups; a host without a port, or --limit alone, is a
// usage error before anything is sent.
func TestInventoryTCP(t *testing.T) {
	t.Parallel()
	var ports []string
	accepted := make(chan struct{}, 100)
	for range 2 {
		ln := lab.ClosingListenerFunc(t, "127.0.0.1:0", func() { accepted <- struct{}{} })
		ports = append(ports, strconv.Itoa(lab.Port(ln)))
	}
	dir := t.TempDir()
	ini := filepath.Join(dir, "hosts.ini")
	os.WriteFile(ini, []byte(fmt.Sprintf(`[web]
web[1:2] ansible_host=127.0.0.1 ansible_port=%s

[db]
db1 ansible_host=127.0.0.1 ansible_port=%s ansible_user=postgres

[other]
noport ansible_host=127.0.0.1
`, ports[0], ports[1])), 0o600)
	yml := filepath.Join(dir, "inventory") // YAML told by its content
	os.WriteFile(yml, []byte(fmt.Sprintf("---\nall:\n  children:\n    web:\n      hosts:\n        w1: {ansible_host: 127.0.0.1, ansible_port: %s}\n", ports[0])), 0o600)

	for _, tt := range []struct {
		args []string
		want []string // host port
	}{
		{[]string{"--inventory", ini, "--limit", "web,db"}, []string{"db1 " + ports[1], "web1 " + ports[0], "web2 " + ports[0]}},
		{[]string{"--inventory", ini, "--limit", "all:!other:!web"}, []string{"db1 " + ports[1]}},
		{[]string{"@" + yml}, []string{"w1 " + ports[0]}},
		{[]string{"-p", ports[1], "--inventory", ini, "--limit", "web"}, []string{"web1 " + ports[1], "web2 " + ports[1]}},
	} {
		args := append([]string{"tcp", "-o", "jsonl", "-q"}, tt.args...)
		r := fanout(t, "", args...)
		if r.code != 0 {
			t.Fatalf("fanout %q: exit %d, stderr %s", args, r.code, r.stderr)
		}
		var got []string
		for _, res := range results(t, r.stdout) {
			if res.Addr != "127.0.0.1" {
				t.Errorf("fanout %q: %s probed at %q, want its ansible_host 127.0.0.1", args, res.Host, res.Addr)
			}
			got = append(got, fmt.Sprintf("%s %d", res.Host, res.Port))
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("fanout %q: %q, want %q", args, got, tt.want)
		}
	}
	for len(accepted) > 0 {
		<-accepted
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--inventory", ini}, "tcp: no port for noport: give -p PORTS (as in -p 22,80,443), or targets from an inventory with ansible_port"},
		{[]string{"127.0.0.1"}, "no ports given: want -p PORTS"},
		{[]string{"-p", ports[0], "--limit", "web", "127.0.0.1"}, `--limit "web": selects hosts of --inventory FILE, which is not given`},
		{[]string{"--inventory", ini, "--limit", "nosuch"}, `--inventory ` + ini + ` --limit "nosuch": no hosts selected (groups: all, ungrouped, web, db, other)`},
		{[]string{"--inventory", filepath.Join(dir, "missing.ini")}, "--inventory: open "},
	} {
		args := append([]string{"tcp"}, tt.args...)
		r := fanout(t, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("fanout %q: exit %d, stderr %q; want 2 and %q", args, r.code, r.stderr, tt.want)
		}
	}
	if len(accepted) > 0 {
		t.Errorf("%d connections accepted by refused sweeps", len(accepted))
	}
}

// TestInventorySSH: ssh connects to an inventory host's ansible_host, on
// its ansible_port, as its ansible_user, and shows it by its name.
func TestInventorySSH(t *testing.T) {
	t.Parallel()
	flags, dir := sshFleet(t)
	port := flags[len(flags)-1]
	flags = flags[:len(flags)-2] // no -p: the inventory's port
	inv := filepath.Join(dir, "hosts.yml")
	os.WriteFile(inv, []byte(fmt.Sprintf(`all:
  vars:
    ansible_port: %s
  children:
    web:
      hosts:
        web1: {ansible_host: 127.2.0.1}
        web2: {ansible_host: 127.2.0.2, ansible_user: deploy}
`, port)), 0o600)
	r := fanout(t, "", append(flags, "-o", "jsonl", "--inventory", inv, "--limit", "web", "--", "hostname")...)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	var got []string
	for _, res := range results(t, r.stdout) {
		got = append(got, fmt.Sprintf("%s %s %d %s", res.Host, res.Addr, res.Port, strings.TrimSpace(string(res.Stdout))))
	}
	slices.Sort(got)
	want := []string{"web1 127.2.0.1 " + port + " 127.2.0.1", "web2 127.2.0.2 " + port + " 127.2.0.2"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
