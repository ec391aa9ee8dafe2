//go:build race

package target

// raceEnabled trims the exhaustive checks, which the race detector slows 10x.
const raceEnabled = true
