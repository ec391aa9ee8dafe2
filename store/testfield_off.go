//go:build !fanout_testfield

package store

// testMigrations: none outside the test build (see testfield_on.go).
var testMigrations []string
