package target

import (
	"io"
	"strings"
)

// Inline replaces the "-" and @FILE entries of specs with the specs they
// contain, so that a stored or submitted list stands alone. Files are read
// one level deep: "-" or @FILE inside a file is an error, as in Parse. The
// specs themselves are not checked; Parse does that.
func Inline(specs []string, stdin io.Reader) ([]string, error) {
	var out []string
	err := eachSpec(specs, &sources{stdin: stdin}, func(spec string) error {
		out = append(out, strings.Clone(spec)) // spec may be a view of a read buffer
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
