package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --alive and --dead filter ssh's own outputs (inline, --gather, --outdir)
// as they filter text, jsonl and csv. In the fleet 127.2.0.7 exits 3.
func TestSSHAliveDeadFilterEveryOutput(t *testing.T) {
	t.Parallel()
	flags, dir := sshFleet(t)
	targets := []string{"127.2.0.[5-8]", "--", "hostname"}
	up := []string{"127.2.0.5", "127.2.0.6", "127.2.0.8"}
	tests := []struct {
		name   string
		args   []string
		shown  []string // hosts whose output must appear
		hidden []string // hosts that must not appear anywhere
	}{
		{"inline alive", []string{"--alive"}, up, []string{"127.2.0.7"}},
		{"inline dead", []string{"--dead"}, []string{"127.2.0.7"}, up},
		{"gather alive", []string{"--gather", "--alive"}, up, []string{"127.2.0.7"}},
		{"gather dead", []string{"--gather", "--dead"}, []string{"127.2.0.7"}, up},
		{"outdir alive", []string{"--outdir", "OUT", "--alive"}, up, []string{"127.2.0.7"}},
		{"outdir dead", []string{"--outdir", "OUT", "--dead"}, []string{"127.2.0.7"}, up},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out"+string(rune('a'+i)))
			args := append([]string{}, flags...)
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "OUT", out))
			}
			r := fanout(t, "", append(args, targets...)...)
			if r.code != 1 {
				t.Fatalf("exit %d (want 1: 127.2.0.7 exits 3), stderr %s", r.code, r.stderr)
			}
			// The per-host notes go to stderr; the summary names no host.
			printed := r.stdout + r.stderr
			outdir := strings.Contains(tt.name, "outdir")
			for _, h := range tt.shown {
				if !strings.Contains(printed, h) {
					t.Errorf("%s missing from the output:\nstdout %s\nstderr %s", h, r.stdout, r.stderr)
				}
				if _, err := os.Stat(filepath.Join(out, h+".stdout")); outdir && err != nil {
					t.Errorf("%s.stdout: %v", h, err)
				}
			}
			for _, h := range tt.hidden {
				if strings.Contains(printed, h) {
					t.Errorf("%s printed despite the filter:\nstdout %s\nstderr %s", h, r.stdout, r.stderr)
				}
				for _, ext := range []string{".stdout", ".stderr"} {
					if _, err := os.Stat(filepath.Join(out, h+ext)); err == nil {
						t.Errorf("--outdir wrote %s%s despite the filter", h, ext)
					}
				}
			}
		})
	}
}
