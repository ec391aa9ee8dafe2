package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// pingResults are 1024 Results as an ICMP task's flush carries them.
func pingResults() []job.Result {
	start := time.Now()
	rs := make([]job.Result, 1024)
	for i := range rs {
		a := fmt.Sprintf("127.0.%d.%d", i>>8, i&255)
		rs[i] = job.Result{Index: uint64(i), Host: a, Addr: a, Job: "ping", Status: job.Up, RTT: 31 * time.Microsecond,
			Sent: 1, Recv: 1, RTTMin: 31 * time.Microsecond, RTTAvg: 31 * time.Microsecond, RTTMax: 31 * time.Microsecond,
			Attempts: 1, Start: start, End: start.Add(31 * time.Microsecond), Worker: "pinger"}
	}
	return rs
}

// BenchmarkWire: the worker's encode and the submitter's decode of one
// flush of ICMP Results (per op: 1024 Results).
func BenchmarkWire(b *testing.B) {
	rs := pingResults()
	msg, _, _ := encodeBatch(rs, 1<<20)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, n, _ := encodeBatch(rs, 1<<20); n != len(rs) {
				b.Fatal(n)
			}
		}
		b.ReportMetric(float64(len(msg))/float64(len(rs)), "B/result")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if out, err := decodeBatch(msg); err != nil || len(out) != len(rs) {
				b.Fatal(len(out), err)
			}
		}
	})
}
