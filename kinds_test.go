package fanout_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/exec"
	_ "github.com/fanout/fanout/job/icmp"
	_ "github.com/fanout/fanout/job/ssh"
	_ "github.com/fanout/fanout/job/tcp"
)

// A job kind's facts live in its registration (job.Traits): nothing outside
// job/ keys a table or a test on a kind's name, which a new kind would
// silently miss. Allowed: the kind's own CLI verb (internal/cli/<kind>.go),
// the lab (internal/lab: ssh channel and ip-netns words), test files (kind
// names as data), and "tcp" as a network name (net.Listen("tcp", ...)).
func TestNoKindNameOutsideItsKind(t *testing.T) {
	t.Parallel()
	kinds := job.Kinds()
	for _, k := range []string{"exec", "ssh", "ping", "tcp"} {
		if !slices.Contains(kinds, k) {
			t.Fatalf("kind %q not registered (kinds: %v): the walk checks the built-in kinds", k, kinds)
		}
	}
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch path {
			case ".git", "job", "internal/lab":
				return filepath.SkipDir
			}
			if strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		own := ""
		if filepath.Dir(path) == filepath.Join("internal", "cli") {
			own = strings.TrimSuffix(filepath.Base(path), ".go")
		}
		network := map[*ast.BasicLit]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if isNetCall(n.Fun) && len(n.Args) > 0 {
					if lit, ok := n.Args[0].(*ast.BasicLit); ok {
						network[lit] = true
					}
				}
			case *ast.BasicLit:
				if n.Kind != token.STRING || network[n] {
					return true
				}
				s, err := strconv.Unquote(n.Value)
				if err != nil || s == own || !slices.Contains(kinds, s) {
					return true
				}
				t.Errorf("%s: job kind %q named outside its kind: ask the registry (job.TraitsOf) or use the kind's Kind constant", fset.Position(n.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d Go files walked: the walk misses some", files)
	}
}

// isNetCall reports whether fun is a function whose first argument is a
// network name ("tcp"): net.Listen, net.Dial, a Dialer's DialContext, ...
func isNetCall(fun ast.Expr) bool {
	name := ""
	switch f := fun.(type) {
	case *ast.Ident:
		name = f.Name
	case *ast.SelectorExpr:
		name = f.Sel.Name
	}
	for _, p := range []string{"Listen", "Dial", "Resolve"} {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}
