package cli

import (
	"runtime/debug"
	"testing"
)

// buildOf reads the module version and the commit from the build info as
// go install @VERSION, go build in a git clone and -buildvcs=false leave them.
func TestBuildOf(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-01-02T15:04:05Z"}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name          string
		bi            *debug.BuildInfo
		line, version string
	}{
		{"go install @v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3", "v1.2.3"},
		{"go build in a clone",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260102150405-0123456789ab"}, Settings: vcs(rev, "false")},
			"v0.0.0-20260102150405-0123456789ab (commit 0123456789ab, 2026-01-02T15:04:05Z)", "v0.0.0-20260102150405-0123456789ab"},
		{"go build in a modified clone",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260102150405-0123456789ab+dirty"}, Settings: vcs(rev, "true")},
			"v0.0.0-20260102150405-0123456789ab+dirty (commit 0123456789ab, 2026-01-02T15:04:05Z, modified)", "v0.0.0-20260102150405-0123456789ab+dirty"},
		{"stamped commit, no module version", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")},
			"devel (commit 0123456789ab, 2026-01-02T15:04:05Z, modified)", "devel-0123456789ab-dirty"},
		{"-buildvcs=false", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel", "devel"},
		{"no build info", nil, "devel", "devel"},
	}
	for _, tt := range tests {
		b := buildOf(tt.bi)
		if got := b.String(); got != tt.line {
			t.Errorf("%s: --version %q, want %q", tt.name, got, tt.line)
		}
		// What a stored sweep records, from the same build info.
		v := b.stored()
		if v != tt.version {
			t.Errorf("%s: stored version %q, want %q", tt.name, v, tt.version)
		}
	}
}
