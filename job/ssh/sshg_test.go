package ssh

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fanout/fanout/job/ssh/internal/sshconfig"
	"github.com/fanout/fanout/target"
)

// sshgKeys are the keywords fanout resolves, compared with ssh -G's.
var sshgKeys = []string{"host", "user", "hostname", "port", "batchmode", "hashknownhosts", "identitiesonly",
	"stricthostkeychecking", "hostkeyalias", "identityfile", "globalknownhostsfile", "userknownhostsfile",
	"connecttimeout", "proxyjump", "proxycommand", "kexalgorithms"}

// TestSSHGCorpus resolves every config of testdata/sshg for its hosts
// (the "# hosts:" line: targets as fanout takes them) with fanout's
// PrintConfig and with the real `ssh -G -F FILE`, and wants the same
// values on every keyword fanout uses, or fanout refusing the host with an
// error naming the file and line ("# refuse:" lists the hosts expected to
// be refused). A case where ssh fails must fail in fanout too.
func TestSSHGCorpus(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no ssh client (openssh-client) installed")
	}
	files, _ := filepath.Glob("testdata/sshg/*.conf")
	if len(files) < 60 {
		t.Fatalf("%d configs in testdata/sshg, want at least 60", len(files))
	}
	home, name, uid := passwdEnv()
	env := Env{Home: home, User: name, UID: uid}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".conf"), func(t *testing.T) {
			t.Parallel()
			// @TESTDATA@ stands for this directory (Include paths).
			dir, _ := filepath.Abs(filepath.Dir(file))
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			abs := filepath.Join(t.TempDir(), filepath.Base(file))
			if err := os.WriteFile(abs, bytes.ReplaceAll(data, []byte("@TESTDATA@"), []byte(dir)), 0o644); err != nil {
				t.Fatal(err)
			}
			hosts, refuse := corpusHeader(t, abs)
			for _, h := range hosts {
				tg := parseTarget(t, h)
				var out bytes.Buffer
				ferr := PrintConfig(&out, Config{SSHConfig: abs}, env, []target.Target{tg})
				args := []string{"-G", "-F", abs}
				if tg.Port != 0 {
					args = append(args, "-p", strconv.Itoa(int(tg.Port)))
				}
				dest := tg.Name()
				if tg.User != "" {
					dest = tg.User + "@" + dest
				}
				cmd := exec.Command(sshBin, append(args, dest)...)
				cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
				var serr bytes.Buffer
				cmd.Stderr = &serr
				sout, xerr := cmd.Output()
				switch {
				case ferr != nil:
					if !strings.Contains(ferr.Error(), abs) || !strings.Contains(ferr.Error(), " line ") {
						t.Errorf("%s: fanout refused without naming file and line: %v", h, ferr)
					}
					if xerr == nil && !slices.Contains(refuse, h) {
						t.Errorf("%s: fanout refused (%v) where ssh -G resolved it, and the case does not list it under # refuse:", h, ferr)
					}
					continue
				case xerr != nil:
					t.Errorf("%s: ssh -G failed (%v: %s), fanout resolved it:\n%s", h, xerr, strings.TrimSpace(serr.String()), out.String())
					continue
				case slices.Contains(refuse, h):
					t.Errorf("%s: listed under # refuse:, but fanout resolved it", h)
				}
				compareSSHG(t, h, parseSSHG(sout), parseSSHG(out.Bytes()))
			}
		})
	}
}

// corpusHeader reads the "# hosts:" and "# refuse:" lines of a case.
func corpusHeader(t *testing.T, file string) (hosts, refuse []string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(l, "# hosts:"); ok {
			hosts = append(hosts, strings.Fields(v)...)
		}
		if v, ok := strings.CutPrefix(l, "# refuse:"); ok {
			refuse = append(refuse, strings.Fields(v)...)
		}
	}
	if len(hosts) == 0 {
		t.Fatalf("%s: no # hosts: line", file)
	}
	return hosts, refuse
}

func parseTarget(t *testing.T, spec string) target.Target {
	set, err := target.Parse([]string{spec}, target.ParseOptions{Takes: target.Takes{Port: true, User: true}, Job: Kind})
	if err != nil || set.Len() != 1 {
		t.Fatalf("target %q: %v", spec, err)
	}
	return set.At(0)
}

// parseSSHG reads ssh -G output: keyword -> values, in order.
func parseSSHG(out []byte) map[string][]string {
	m := map[string][]string{}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, " ")
		if k != "" {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// compareSSHG wants fanout's values equal to ssh's on the keywords fanout
// prints. identityfile is compared when the config names some (ssh lists
// its defaults otherwise). kexalgorithms differ in their defaults (fanout
// prefers what x/crypto does fastest): the same value must have been
// taken, so ssh's list, without what fanout lacks, is fanout's when the
// config gives a plain list, and agrees on the names a +, - or ^ value
// names.
func compareSSHG(t *testing.T, host string, ssh, fan map[string][]string) {
	t.Helper()
	for _, k := range sshgKeys {
		got, want := fan[k], ssh[k]
		switch k {
		case "identityfile":
			if len(got) == 0 {
				continue
			}
		case "kexalgorithms":
			continue // below
		case "globalknownhostsfile":
			// This test binary points fanout's default away (no test
			// reads the machine's /etc/ssh/ssh_known_hosts).
			if len(defaultGlobalKnownHosts) == 0 && strings.Join(got, "") == "none" && strings.Join(want, "") == "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2" {
				continue
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: %s: fanout %q, ssh -G %q", host, k, got, want)
		}
	}
	if len(fan["kexalgorithms"]) != 1 || len(ssh["kexalgorithms"]) != 1 {
		t.Errorf("%s: kexalgorithms: fanout %q, ssh %q", host, fan["kexalgorithms"], ssh["kexalgorithms"])
		return
	}
	f, s := strings.Split(fan["kexalgorithms"][0], ","), strings.Split(ssh["kexalgorithms"][0], ",")
	if slices.Equal(s, defaultOpenSSHKex) {
		if !slices.Equal(f, DefaultKex) {
			t.Errorf("%s: kexalgorithms: ssh has its default, fanout %q is not fanout's", host, f)
		}
		return
	}
	var supported []string
	for _, n := range s {
		if _, err := sshconfig.KexList(n); err == nil {
			supported = append(supported, n)
		}
	}
	if slices.Equal(f, supported) {
		return
	}
	// A +, - or ^ form: fanout applied it to its own default.
	for _, n := range supported {
		if !slices.Contains(defaultOpenSSHKex, n) && !slices.Contains(f, n) {
			t.Errorf("%s: kexalgorithms: ssh added %s, fanout %q lacks it", host, n, f)
		}
	}
	for _, n := range defaultOpenSSHKex {
		if !slices.Contains(s, n) && slices.Contains(f, n) {
			t.Errorf("%s: kexalgorithms: ssh removed %s, fanout %q has it", host, n, f)
		}
	}
	if len(s) > 0 && len(supported) > 0 && s[0] == supported[0] && !slices.Contains(defaultOpenSSHKex[:1], s[0]) && f[0] != s[0] {
		t.Errorf("%s: kexalgorithms: ssh puts %s first, fanout %q does not", host, s[0], f)
	}
}

// defaultOpenSSHKex is the installed ssh's default KexAlgorithms.
var defaultOpenSSHKex = func() []string {
	out, err := exec.Command("ssh", "-G", "-F", "none", "h").Output()
	if err != nil {
		return nil
	}
	v := parseSSHG(out)["kexalgorithms"]
	if len(v) != 1 {
		return nil
	}
	return strings.Split(v[0], ",")
}()
