package cli_test

import (
	"strings"
	"testing"
)

// `fanout --version` names the same version as `fanout version`, and
// `fanout completion SHELL` prints a completion script for each shell.
func TestVersionAndCompletion(t *testing.T) {
	t.Parallel()
	long := fanout(t, "", "version")
	flag := fanout(t, "", "--version")
	if long.code != 0 || flag.code != 0 {
		t.Fatalf("exit %d / %d; stderr %q / %q", long.code, flag.code, long.stderr, flag.stderr)
	}
	v := strings.TrimSpace(flag.stdout)
	if !strings.HasPrefix(v, "fanout ") || !strings.HasPrefix(long.stdout, v+" (") {
		t.Errorf("--version %q, version %q: want the same version", v, long.stdout)
	}
	for shell, want := range map[string]string{"bash": "complete -o", "zsh": "#compdef fanout", "fish": "complete -c fanout"} {
		r := fanout(t, "", "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, %d bytes without %q; stderr %q", shell, r.code, len(r.stdout), want, r.stderr)
		}
	}
}
