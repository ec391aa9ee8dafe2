//go:build fanout_testfield

package store

// In the test build the table of job.Fields has an extra field, Probe,
// stored in column probe: the migration that a field added to the table
// brings with it.
var testMigrations = []string{`ALTER TABLE results ADD COLUMN probe TEXT;`}
