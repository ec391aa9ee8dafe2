package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `fanout --version` is the first line of `fanout version`, and
// `fanout completion SHELL` prints a completion script for each shell.
func TestVersionAndCompletion(t *testing.T) {
	t.Parallel()
	long := fanout(t, "", "version")
	flag := fanout(t, "", "--version")
	if long.code != 0 || flag.code != 0 {
		t.Fatalf("exit %d / %d; stderr %q / %q", long.code, flag.code, long.stderr, flag.stderr)
	}
	v := strings.TrimSpace(flag.stdout)
	if !strings.HasPrefix(v, "fanout ") || !strings.HasPrefix(long.stdout, v+"\ngo1.") {
		t.Errorf("--version %q, version %q: want the same version, then the Go version", v, long.stdout)
	}
	for shell, want := range map[string]string{
		"bash": "complete -o", "zsh": "#compdef fanout", "fish": "complete -c fanout",
		"powershell": "Register-ArgumentCompleter -CommandName 'fanout'",
	} {
		r := fanout(t, "", "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, %d bytes without %q; stderr %q", shell, r.code, len(r.stdout), want, r.stderr)
		}
	}
	for _, args := range [][]string{{"completion", "tcsh"}, {"completion"}} {
		if r := fanout(t, "", args...); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "bash, zsh, fish or powershell") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 naming the shells", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}

// go build in a git clone stamps the commit, and --version shows it.
func TestVersionShowsCommit(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout (a source archive): no commit to show (git: %v)", err)
	}
	top, head, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if fi, err := os.Stat(filepath.Join(top, ".git")); err != nil || !fi.IsDir() {
		// go build stamps nothing in a git worktree (.git is a file there).
		t.Skipf("%s is a git worktree, not a clone: go build stamps no commit", top)
	}
	// The test binary's own flags (-race), so that only the link differs;
	// -buildvcs=true against a GOFLAGS=-buildvcs=false in go env.
	bin := filepath.Join(t.TempDir(), "fanout")
	args := []string{"build", "-buildvcs=true", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/fanout/fanout/cmd/fanout")
	if out, err := exec.Command(goTool(), args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := command(t, "", bin, "--version")
	if r.code != 0 || !strings.Contains(r.stdout, "(commit "+head[:12]+", ") {
		t.Errorf("--version: exit %d, %q; want commit %s", r.code, r.stdout, head[:12])
	}
}
