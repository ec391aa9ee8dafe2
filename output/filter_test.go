package output

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
)

// Filtered makes inline, gathered and per-host-file writers honour --alive
// and --dead like the line formats.
func TestFilteredWriters(t *testing.T) {
	t.Parallel()
	rs := []job.Result{
		{Index: 0, Host: "alpha", Status: job.Up, Stdout: []byte("hi\n")},
		{Index: 1, Host: "bad", Status: job.Down, Class: job.ClassExit, ExitCode: exitCode(3), Stdout: []byte("hi\n")},
		{Index: 2, Host: "err", Status: job.Error, Class: job.ClassAuth, Error: "no key accepted"},
		{Index: 3, Host: "omega", Status: job.Up, Stdout: []byte("hi\n")},
	}
	alive, dead := []string{"alpha", "omega"}, []string{"bad", "err"}
	for _, f := range []struct {
		name         string
		filter       Filter
		shown, gone  []string
		gatherHeader string
	}{
		{"alive", Filter{Alive: true}, alive, dead, " (2)"},
		{"dead", Filter{Dead: true}, dead, alive, "bad (1) [exit status 3]"},
		{"both", Filter{Alive: true, Dead: true}, append(alive, dead...), nil, " (2)"},
	} {
		t.Run("inline "+f.name, func(t *testing.T) {
			var out bytes.Buffer
			w := Filtered(NewInline(&out, nil), f.filter)
			writeAll(t, w, rs)
			checkHosts(t, out.String(), f.shown, f.gone)
		})
		t.Run("gather "+f.name, func(t *testing.T) {
			var out bytes.Buffer
			w := Filtered(NewGather(&out), f.filter)
			writeAll(t, w, rs)
			checkHosts(t, out.String(), f.shown, f.gone)
			if !strings.Contains(out.String(), f.gatherHeader+"\n") {
				t.Errorf("no header %q:\n%s", f.gatherHeader, out.String())
			}
		})
		t.Run("outdir "+f.name, func(t *testing.T) {
			dir := t.TempDir()
			o, err := NewOutDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, Filtered(o, f.filter), rs)
			for _, h := range f.shown {
				if _, err := os.Stat(filepath.Join(dir, h+".stdout")); err != nil {
					t.Errorf("%s kept but: %v", h, err)
				}
			}
			for _, h := range f.gone {
				if _, err := os.Stat(filepath.Join(dir, h+".stdout")); err == nil {
					t.Errorf("%s.stdout written despite the filter", h)
				}
			}
		})
	}
}

func writeAll(t *testing.T, w Writer, rs []job.Result) {
	t.Helper()
	for _, r := range rs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkHosts(t *testing.T, out string, shown, gone []string) {
	t.Helper()
	for _, h := range shown {
		if !strings.Contains(out, h) {
			t.Errorf("%s missing:\n%s", h, out)
		}
	}
	for _, h := range gone {
		if strings.Contains(out, h) {
			t.Errorf("%s shown despite the filter:\n%s", h, out)
		}
	}
}
