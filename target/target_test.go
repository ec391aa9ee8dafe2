package target

import (
	"fmt"
	"testing"
)

var sinkTarget Target
var sinkIndex uint64

func BenchmarkAt(b *testing.B) {
	var many []string
	for i := 0; i < 1000; i++ {
		many = append(many, fmt.Sprintf("10.%d.%d.0/25", i/256, i%256)) // 1000 disjoint intervals
	}
	for _, bc := range []struct {
		name  string
		specs []string
	}{
		{"slash8", []string{"10.0.0.0/8"}},
		{"1000ranges", many},
		{"ipv6", []string{"fd00::/104"}},
		{"names", []string{"web[0000-9999].example.com"}},
	} {
		s, err := Parse(bc.specs, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n := s.Len()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var i uint64
			for b.Loop() {
				sinkTarget = s.At(i)
				i += 7919
				if i >= n {
					i -= n
				}
			}
		})
	}
}

func BenchmarkShuffleAt(b *testing.B) {
	// 1<<22+1 is the worst case for cycle-walking: the domain is 2^23.
	for _, n := range []uint64{256, 1 << 16, 1 << 24, 1<<22 + 1, 1 << 40} {
		o := Shuffle(n, 1)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			var k uint64
			for b.Loop() {
				sinkIndex = o.At(k)
				if k++; k == n {
					k = 0
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, specs := range [][]string{{"10.0.0.0/8"}, {"10.[0-3].[0-255].[0-255]"}, {"web[0000-9999].example.com"}} {
		b.Run(specs[0], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(specs, ParseOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
