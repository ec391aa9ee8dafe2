//go:build race

package ssh

// raceEnabled shrinks the floods: the race detector makes crypto ~10x slower.
const raceEnabled = true
