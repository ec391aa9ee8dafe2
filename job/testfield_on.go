//go:build fanout_testfield

package job

import "sync"

// In the test build (go test -tags fanout_testfield) the table has one more
// field, Probe, so that the tests of every form (JSON here, CSV in output,
// the store, the cluster's wire) show that a field added to the table
// reaches it. Result has no room for it: its value lives beside the
// Result, keyed by index (tests give each Result an index of its own).
var testFields = []Field{{Name: "Probe", JSON: "probe", Column: "probe", at: probeOf}}

var probes sync.Map // index -> *string

func probeOf(r *Result) any {
	if p, ok := probes.Load(r.Index); ok {
		return p
	}
	p, _ := probes.LoadOrStore(r.Index, new(string))
	return p
}
