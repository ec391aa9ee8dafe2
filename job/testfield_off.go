//go:build !fanout_testfield

package job

// testFields: none outside the test build (see testfield_on.go).
var testFields []Field
