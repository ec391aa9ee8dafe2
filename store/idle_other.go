//go:build !linux

package store

// idlePriority is Linux only: elsewhere commits run at normal priority.
func idlePriority() (int, bool) { return 0, false }

func normalPriority(int) bool { return false }
