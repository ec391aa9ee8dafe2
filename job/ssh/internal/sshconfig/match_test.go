package sshconfig

import (
	"strings"
	"testing"
)

func TestMatchCriteria(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		system bool
		hosts  string // "" when an error is wanted
		warn   bool
	}{
		{"all", false, "*", false},
		{"final all", false, "*", false},
		{"canonical all", false, never, false},
		{"!canonical host web*", false, "web*", false},
		{"host web*,db?", false, "web* db?", false},
		{"Host \"a*,!ab\"", false, "a* !ab", false},
		{"originalhost web*", false, "web*", false},
		{"!host web*,db*", false, "* !web* !db*", false},
		{"localuser tester host x", false, "x", false},
		{"localuser root,bob host x", false, never, false},
		{"localuser !tester,*", false, never, false},
		{"exec true", false, "", false},
		{"user root", false, "", false},
		{"exec true", true, never, true},
		{"host a host b", true, never, true},
		{"tagged x", true, never, true},
		{"", true, "", false},
		{"host", false, "", false},
	}
	for _, tt := range tests {
		var warn strings.Builder
		cr := &confReader{env: Env{User: "tester", Warn: &warn}, system: tt.system}
		got, err := cr.match("cfg", tt.in, 7)
		switch {
		case tt.hosts == "" && err == nil:
			t.Errorf("Match %s: %q, want an error", tt.in, got)
		case tt.hosts != "" && (err != nil || got != tt.hosts):
			t.Errorf("Match %s (system %v): %q, %v; want %q", tt.in, tt.system, got, err, tt.hosts)
		case err != nil && !strings.Contains(err.Error(), "line 7"):
			t.Errorf("Match %s: error %q names no line", tt.in, err)
		}
		if (warn.Len() > 0) != tt.warn {
			t.Errorf("Match %s (system %v): warning %q", tt.in, tt.system, warn.String())
		}
	}
}
