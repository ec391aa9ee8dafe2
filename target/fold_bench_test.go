package target

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkFold folds what a gathered sweep may hold: a /16 of addresses
// (four numbers a name) and 100,000 scattered names of two numbers.
func BenchmarkFold(b *testing.B) {
	var slash16, scattered []string
	for i := range 1 << 16 {
		slash16 = append(slash16, fmt.Sprintf("10.0.%d.%d", i>>8, i&255))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 100000 {
		scattered = append(scattered, fmt.Sprintf("r%dn%d", rng.IntN(2000), rng.IntN(200)))
	}
	for _, c := range []struct {
		name  string
		names []string
	}{{"slash16", slash16}, {"scattered", scattered}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				Fold(c.names)
			}
		})
	}
}
