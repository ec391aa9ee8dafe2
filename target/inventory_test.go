package target

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExpandHostRange(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"web", "web"},
		{"web[01:03].x", "web01.x web02.x web03.x"},
		{"n[8:10]", "n8 n9 n10"},
		{"n[1:10:4]", "n1 n5 n9"},
		{"db-[a:c]", "db-a db-b db-c"},
		{"x[1:2]y[a:b]", "x1ya x1yb x2ya x2yb"},
		{"n[:2]", "n0 n1 n2"},
		{"n[1:9:4]-[08:09]", "n1-08 n1-09 n5-08 n5-09 n9-08 n9-09"},
	}
	for _, tt := range tests {
		got, err := expandHostRange(tt.in)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("expandHostRange(%q) = %q, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"n[1:", "n[3:1]", "n[01:100]", "n[1:2:0]", "n[a:3]", "n[1]", "n[1:2:3:4]", "n[0:999999999]x[0:999999999]"} {
		if got, err := expandHostRange(bad); err == nil {
			t.Errorf("expandHostRange(%q) = %d hosts, want an error", bad, len(got))
		}
	}
}

func TestInventoryFormat(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, data, want string }{
		{"hosts.ini", "web1\n", "ini"},
		{"hosts.YML", "", "yaml"},
		{"x.yaml", "", "yaml"},
		{"hosts", "# c\n\n[web]\nweb1\n", "ini"},
		{"hosts", "; c\n[web:children]\n", "ini"},
		{"hosts", "---\nall:\n", "yaml"},
		{"hosts", "all:\n  hosts:\n", "yaml"},
		{"hosts", "web1\n[web]\n", ""},
		{"hosts", "[::1]\n", ""},
		{"hosts", "web[01-20]\n", ""},
		{"hosts", "[1-3]x\n", ""},
		{"hosts", "host:22\n", ""},
		{"hosts", "", ""},
	}
	for _, tt := range tests {
		if got := inventoryFormat(tt.name, []byte(tt.data)); got != tt.want {
			t.Errorf("inventoryFormat(%q, %q) = %q, want %q", tt.name, tt.data, got, tt.want)
		}
	}
}

// The hosts of an inventory reach Parse with their address, port and user,
// each kept when the job takes it.
func TestInventoryTargets(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddr
	file := "@testdata/inventory/ranges.ini"
	tests := []struct {
		takes Takes
		want  map[string]Target // by Name; the others checked for count only
	}{
		{takesAll, map[string]Target{
			"edge1":             {Host: "edge1", Addr: a("127.0.0.7"), Port: 2222, User: "admin"},
			"edge2":             {Host: "edge2", Addr: a("127.0.0.8"), Port: 2022, User: "ops"},
			"edge3.example.net": {Host: "edge3.example.net", User: "admin"},
			"edge6":             {Host: "edge6", Addr: a("fd00::6"), Port: 22, User: "admin"},
			"127.0.0.5":         {Addr: a("127.0.0.5"), Port: 2201, User: "admin"},
			"fd00::5":           {Addr: a("fd00::5"), User: "admin"},
			"db-f.example.com":  {Host: "db-f.example.com", User: "dba"},
		}},
		{Takes{}, map[string]Target{ // ping: the address only
			"edge1":     {Host: "edge1", Addr: a("127.0.0.7")},
			"edge6":     {Host: "edge6", Addr: a("fd00::6")},
			"127.0.0.5": {Addr: a("127.0.0.5")},
			"n10":       {Host: "n10"},
		}},
		{Takes{VarPort: true}, map[string]Target{ // tcp: the port too
			"edge1":     {Host: "edge1", Addr: a("127.0.0.7"), Port: 2222},
			"127.0.0.5": {Addr: a("127.0.0.5"), Port: 2201},
			"n10":       {Host: "n10"},
		}},
	}
	for _, tt := range tests {
		s, err := Parse([]string{file}, ParseOptions{Takes: tt.takes})
		if err != nil {
			t.Fatalf("Parse(%s, %+v): %v", file, tt.takes, err)
		}
		if s.Len() != 44 {
			t.Errorf("Parse(%s): %d targets, want 44", file, s.Len())
		}
		got := map[string]Target{}
		for i := uint64(0); i < s.Len(); i++ {
			tg := s.At(i)
			tg.Index = 0
			got[tg.Name()] = tg
			// Every target's Spec reads back to it.
			r, err := Parse([]string{tg.Spec()}, ParseOptions{Takes: takesAll})
			if err != nil || r.Len() != 1 || r.At(0) != tg {
				t.Errorf("Parse(%q) = %v, %v; want %+v", tg.Spec(), r, err, tg)
			}
		}
		for name, want := range tt.want {
			if got[name] != want {
				t.Errorf("takes %+v: %s = %+v, want %+v", tt.takes, name, got[name], want)
			}
		}
	}
	// Inline writes the host lines, which Parse reads as it read the file.
	specs, err := Inline([]string{file}, nil)
	if err != nil || len(specs) != 44 || specs[len(specs)-1] != "edge6 ansible_host=fd00::6 ansible_port=22 ansible_user=admin" {
		t.Errorf("Inline(%s) = %d specs, %v; last %q", file, len(specs), err, specs[len(specs)-1])
	}
	// An exclude by name or by address removes an aliased host.
	s, err := Parse([]string{file}, ParseOptions{Excludes: []string{"edge1", "127.0.0.8"}})
	if err != nil || s.Len() != 42 {
		t.Errorf("Parse(%s) without edge1 and 127.0.0.8: %v, %v", file, s, err)
	}
}

func TestInventoryBad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct{ name, data, want string }{
		{"a.ini", "[web\n", `a.ini:1: section "[web": want [group], [group:vars] or [group:children]`},
		{"a.ini", "[web:other]\n", `a.ini:1: section "[web:other]": want [group], [group:vars] or [group:children] (a group name is letters, digits, '_' and '-')`},
		{"a.ini", "[web]\nh1 ansible_port\n", `a.ini:2: "ansible_port": want key=value after the host`},
		{"a.ini", "[web]\nh1 ansible_user='x\n", `a.ini:2: "h1 ansible_user='x": unclosed quote`},
		{"a.ini", "[web]\nh1:99999\n", `a.ini:2: host "h1:99999": port 99999 out of range (want 1-65535)`},
		{"a.ini", "[web]\nn[3:1]\n", `a.ini:2: host "n[3:1]": range end before start`},
		{"a.ini", "[a:children]\nb\n[b:children]\na\n", `a.ini: group a: a cycle of children`},
		{"a.ini", "[a:children]\na\n", `a.ini:2: group a is its own child`},
		{"a.ini", "[web:vars]\nnovalue\n", `a.ini:2: "novalue" in [web:vars]: want key=value`},
		{"a.ini", "[web]\nh1 ansible_user='a b'\n", `host h1: ansible_user "a b" has a space`},
		{"a.yml", "all: [1, 2]\n", `a.yml:1: group all: want a mapping of hosts, vars and children`},
		{"a.yml", "all:\n  hosts: [h1]\n", `a.yml:2: hosts of all: want a mapping of host: vars`},
		{"a.yml", "all:\n  other: 1\n", `a.yml:2: group all: "other" is not hosts, vars or children`},
		{"a.yml", "all:\n  hosts:\n  - x\n  :\n", `a.yml: yaml: ...`},
		{"a.txt", "web1\n", `a.txt: not an Ansible inventory ...`},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name)
		if err := os.WriteFile(p, []byte(tt.data), 0o600); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(p)
		inv, err := ReadInventory(f, tt.name)
		f.Close()
		if err == nil {
			_, err = inv.Hosts("")
		}
		if err == nil || !matches(err.Error(), tt.want) {
			t.Errorf("inventory %s %q: error %v\nwant %s", tt.name, tt.data, err, tt.want)
		}
	}
	// Through Parse, the error names the file.
	p := filepath.Join(dir, "b.ini")
	os.WriteFile(p, []byte("[web]\nh1 ansible_port=x\n"), 0o600)
	if _, err := Parse([]string{"@" + p}, ParseOptions{Takes: takesAll}); err == nil || !strings.Contains(err.Error(), `b.ini: host parse "h1 ansible_port=x": ansible_port: port "x" is not a number (want 1-65535)`) {
		t.Errorf("Parse(@%s): %v", p, err)
	}
}

// ansibleList is ansible-inventory --list of file: hostvars and groups.
type ansibleList struct {
	hostvars map[string]map[string]any
	groups   map[string]struct{ Hosts, Children []string }
}

func ansibleInventory(t *testing.T, file string) ansibleList {
	t.Helper()
	out, err := exec.Command("ansible-inventory", "-i", file, "--list").Output()
	if err != nil {
		t.Fatalf("ansible-inventory -i %s --list: %v", file, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("ansible-inventory -i %s --list: %v\n%s", file, err, out)
	}
	l := ansibleList{groups: map[string]struct{ Hosts, Children []string }{}}
	for k, v := range raw {
		if k == "_meta" {
			var m struct{ Hostvars map[string]map[string]any }
			if err := json.Unmarshal(v, &m); err != nil {
				t.Fatal(err)
			}
			l.hostvars = m.Hostvars
			continue
		}
		var g struct{ Hosts, Children []string }
		if err := json.Unmarshal(v, &g); err != nil {
			t.Fatal(err)
		}
		l.groups[k] = g
	}
	return l
}

// members is the hosts of group g and its descendants in l.
func (l ansibleList) members(g string, into map[string]bool) {
	for _, h := range l.groups[g].Hosts {
		into[h] = true
	}
	for _, c := range l.groups[g].Children {
		l.members(c, into)
	}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// hostNames is the names of host lines.
func hostNames(lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Fields(l)[0])
	}
	slices.Sort(out)
	return out
}

// Every inventory of the corpus reads as ansible-inventory --list reads
// it: the same groups with the same hosts and children, the same
// ansible_host, ansible_port and ansible_user per host, and the same hosts
// for --limit GROUP.
func TestInventoryMatchesAnsible(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		t.Skip("ansible-inventory not installed: apt-get install ansible")
	}
	files, _ := filepath.Glob("testdata/inventory/*")
	if len(files) < 8 {
		t.Fatalf("corpus: %d inventories", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			want := ansibleInventory(t, file)
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := ReadInventory(f, file)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			for name, g := range want.groups {
				ours := inv.groups[name]
				if ours == nil {
					t.Errorf("group %s: missing", name)
					continue
				}
				var hosts, children []string
				for _, h := range ours.hosts {
					hosts = append(hosts, h.name)
				}
				for _, c := range ours.children {
					children = append(children, c.name)
				}
				if name == "all" {
					hosts = nil // ansible lists all's hosts under ungrouped
				}
				if !slices.Equal(hosts, g.Hosts) {
					t.Errorf("group %s: hosts %q, ansible %q", name, hosts, g.Hosts)
				}
				slices.Sort(children)
				wantChildren := slices.Sorted(slices.Values(g.Children))
				if !slices.Equal(children, wantChildren) {
					t.Errorf("group %s: children %q, ansible %q", name, children, wantChildren)
				}
				all := map[string]bool{}
				want.members(name, all)
				lines, err := inv.Hosts(name)
				if err != nil {
					t.Fatal(err)
				}
				if got := hostNames(lines); !slices.Equal(got, sortedKeys(all)) {
					t.Errorf("Hosts(%q) = %q, ansible %q", name, got, sortedKeys(all))
				}
			}
			everyone := map[string]bool{}
			want.members("all", everyone)
			lines, err := inv.Hosts("")
			if err != nil {
				t.Fatal(err)
			}
			if got := hostNames(lines); !slices.Equal(got, sortedKeys(everyone)) {
				t.Errorf("hosts %q, ansible %q", got, sortedKeys(everyone))
			}
			for _, h := range inv.hosts {
				v := inv.vars(h)
				for _, k := range []string{varHost, varPort, varUser} {
					w := ""
					if x, ok := want.hostvars[h.name][k]; ok {
						w = fmt.Sprint(x)
					}
					if v[k] != w {
						t.Errorf("host %s: %s = %q, ansible %q", h.name, k, v[k], w)
					}
				}
			}
		})
	}
}

// --limit patterns select the hosts ansible PATTERN --list-hosts lists.
func TestInventoryLimitMatchesAnsible(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ansible"); err != nil {
		t.Skip("ansible not installed: apt-get install ansible")
	}
	for _, tt := range []struct{ file, limit string }{
		{"basic.yml", "webservers:&all:!bar.example.com"},
		{"basic.yml", "dbservers,solo"},
		{"children.ini", "zone:!rack1"},
		{"children.ini", "dc*"},
		{"nested.yaml", "app:&cache"},
		{"ranges.ini", "web:!n*:!db-?.example.com"},
	} {
		t.Run(tt.file+" "+tt.limit, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join("testdata/inventory", tt.file)
			out, err := exec.Command("ansible", tt.limit, "-i", file, "--list-hosts").Output()
			if err != nil {
				t.Fatalf("ansible %s -i %s --list-hosts: %v", tt.limit, file, err)
			}
			var want []string
			for _, l := range strings.Split(string(out), "\n")[1:] {
				if l = strings.TrimSpace(l); l != "" {
					want = append(want, l)
				}
			}
			slices.Sort(want)
			f, _ := os.Open(file)
			inv, err := ReadInventory(f, file)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			lines, err := inv.Hosts(tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := hostNames(lines); !slices.Equal(got, want) {
				t.Errorf("Hosts(%q) = %q\nansible lists %q", tt.limit, got, want)
			}
		})
	}
}
