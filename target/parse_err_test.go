package target

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// A target file that cannot be read fails Parse with an error that names it
// and wraps the cause (errors.Is), with the default reader and OpenList.
func TestParseFileErrorsWrapTheirCause(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		spec string
		opts ParseOptions
		want error
	}{
		{"@" + filepath.Join(dir, "missing"), ParseOptions{}, fs.ErrNotExist},
		{"@" + dir, ParseOptions{}, syscall.EISDIR},
		{"@" + filepath.Join(dir, "missing"), ParseOptions{List: OpenList(nil)}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		_, err := Parse([]string{tt.spec}, tt.opts)
		if !errors.Is(err, tt.want) {
			t.Errorf("Parse(%q): %v, want an error wrapping %v", tt.spec, err, tt.want)
		}
	}
}
