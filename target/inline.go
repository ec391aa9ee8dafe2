package target

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Inline replaces the "-" and @FILE entries of specs with the specs they
// contain, so that a stored or submitted list stands alone. Files are read
// one level deep: "-" or @FILE inside a file is an error, as in Parse. The
// specs themselves are not checked; Parse does that.
func Inline(specs []string, stdin io.Reader) ([]string, error) {
	return inline(specs, &sources{stdin: stdin})
}

// InlineFrom is Inline with the lists of "-" and @FILE entries read
// through list, as ParseOptions.List.
func InlineFrom(specs []string, list func(spec string) (io.Reader, error)) ([]string, error) {
	return inline(specs, &sources{list: list})
}

func inline(specs []string, in *sources) ([]string, error) {
	var out []string
	err := eachSpec(specs, in, func(spec string) error {
		out = append(out, strings.Clone(spec)) // spec may be a view of a read buffer
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Listed reports whether spec is read from a list: "-" or @FILE.
func Listed(spec string) bool { return spec == "-" || strings.HasPrefix(spec, "@") }

// OpenList is the ParseOptions.List that reads as Parse does by default:
// "-" from stdin, @FILE from the file system.
func OpenList(stdin io.Reader) func(spec string) (io.Reader, error) {
	return func(spec string) (io.Reader, error) {
		if spec == "-" {
			if stdin == nil {
				return nil, errors.New("no standard input to read targets from")
			}
			return io.NopCloser(stdin), nil // never closed by Parse
		}
		f, err := os.Open(spec[1:])
		if err != nil {
			return nil, fmt.Errorf("open: %w", pathErr(err))
		}
		return f, nil
	}
}
