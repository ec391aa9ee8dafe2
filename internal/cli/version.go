package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Version is set at link time (-ldflags "-X github.com/fanout/fanout/internal/cli.Version=v1.2.3");
// otherwise the module version and VCS commit from the build info are shown.
var Version = ""

func init() { register(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print fanout's version, commit and Go version",
		Long: `Print fanout's version: the module version (as installed with go install
...@VERSION, or the pseudo-version of the commit it was built from) and the
commit when built from a git clone, then the Go version and platform.
'fanout --version' prints the first line only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "fanout %s\n%s %s/%s\n", buildOf(readBuildInfo()), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// build is what the binary knows of where it came from.
type build struct {
	version  string // module version, or "devel"
	commit   string // VCS revision, "" when not stamped (go build -buildvcs=false, no git clone)
	time     string // commit time, RFC 3339
	modified bool   // built from a tree with changes not committed
}

func readBuildInfo() *debug.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return bi
}

// buildOf reads bi (nil: none), under the link-time Version when set.
func buildOf(bi *debug.BuildInfo) build {
	b := build{version: "devel"}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.commit = s.Value
			case "vcs.time":
				b.time = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if Version != "" {
		b.version = Version
	}
	return b
}

// String is the line of --version: "v1.2.3", or
// "v0.0.0-20260102150405-0123456789ab (commit 0123456789ab, 2026-01-02T15:04:05Z, modified)".
func (b build) String() string {
	if b.commit == "" {
		return b.version
	}
	var parts []string
	parts = append(parts, "commit "+short(b.commit))
	if b.time != "" {
		parts = append(parts, b.time)
	}
	if b.modified {
		parts = append(parts, "modified")
	}
	return fmt.Sprintf("%s (%s)", b.version, strings.Join(parts, ", "))
}

// short is a commit's first 12 hex digits, as in Go's pseudo-versions.
func short(rev string) string { return rev[:min(len(rev), 12)] }

// version is the short form recorded with a stored sweep.
func version() string { return buildOf(readBuildInfo()).stored() }

// stored is the module version, else devel-COMMIT (-dirty when modified),
// else devel.
func (b build) stored() string {
	if b.version != "devel" || b.commit == "" {
		return b.version
	}
	v := "devel-" + short(b.commit)
	if b.modified {
		v += "-dirty"
	}
	return v
}
