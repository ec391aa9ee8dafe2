package output

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fanout/fanout/job"
)

// OutDir writes each target's stdout and stderr to DIR/HOST.stdout and
// DIR/HOST.stderr, as `pssh -o DIR -e DIR` does. A rerun overwrites them.
type OutDir struct {
	dir string
}

// NewOutDir creates dir when needed and checks it can be written, so that a
// bad --outdir fails before the sweep.
func NewOutDir(dir string) (*OutDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--outdir %s: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".fanout-probe-*")
	if err != nil {
		return nil, fmt.Errorf("--outdir %s: cannot write there: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &OutDir{dir: dir}, nil
}

var _ Writer = (*OutDir)(nil)

// Write writes r's two files.
func (o *OutDir) Write(r job.Result) error {
	base := filepath.Join(o.dir, FileName(r.Host))
	if err := os.WriteFile(base+".stdout", r.Stdout, 0o644); err != nil {
		return err
	}
	return os.WriteFile(base+".stderr", r.Stderr, 0o644)
}

// Close does nothing: every file is complete when Write returns.
func (o *OutDir) Close() error { return nil }

// FileName is host made safe as a file name: path separators and a
// leading dot replaced.
func FileName(host string) string {
	s := strings.NewReplacer("/", "_", "\x00", "_").Replace(host)
	if s == "" || s[0] == '.' {
		s = "_" + s
	}
	return s
}
