//go:build race

package report

// raceEnabled: SQLite (translated C) under the race detector is ~10x slower,
// so tests that only need volume use less of it.
const raceEnabled = true
