//go:build fanout_testfield

package job_test

import (
	"testing"

	"github.com/fanout/fanout/job"
)

// TestTestFieldInTable: the test build's table has the extra field, so the
// field tests of this build (here, output, store, cluster) are about it.
func TestTestFieldInTable(t *testing.T) {
	fs := job.Fields()
	if f := fs[len(fs)-1]; f.Name != "Probe" || f.JSON != "probe" || f.Column != "probe" || f.Kind != job.KindString {
		t.Fatalf("last field of the test build's table: %+v, want Probe", f)
	}
}
