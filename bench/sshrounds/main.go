// Command sshrounds runs one ssh job over the same hosts several rounds back
// to back, as fanout watch ssh does (the job built once, kept across
// rounds), and prints per round: wall time, hosts up, this process's CPU
// per host-round, and the whole machine's busy time per host-round (from
// /proc/stat: sshd's share included). bench/ssh-reuse.sh runs it against a
// real sshd, with connections kept and with -reconnect.
//
//	sshrounds [-c N] [-rounds 5] [-reconnect] -F CONFIG @HOSTS -- COMMAND...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	jobssh "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/target"
)

func main() {
	conc := flag.Int("c", 1000, "sessions in flight")
	rounds := flag.Int("rounds", 5, "rounds (1-100)")
	reconnect := flag.Bool("reconnect", false, "connect anew each round (no kept connections)")
	config := flag.String("F", "", "ssh config file")
	flag.Parse()
	args := flag.Args()
	dash := -1
	for i, a := range args {
		if a == "--" {
			dash = i
			break
		}
	}
	if dash < 1 || dash == len(args)-1 || *rounds < 1 || *rounds > 100 || *conc < 1 {
		fmt.Fprintln(os.Stderr, "usage: sshrounds [-c N] [-rounds 1-100] [-reconnect] -F CONFIG TARGETS... -- COMMAND...")
		os.Exit(2)
	}
	j, err := jobssh.New(jobssh.Config{
		Command:         strings.Join(args[dash+1:], " "),
		SSHConfig:       *config,
		NoAgent:         true,
		KeepConnections: !*reconnect,
		MaxConnections:  *conc,
	}, jobssh.DefaultEnv())
	if err != nil {
		fmt.Fprintln(os.Stderr, "sshrounds:", err)
		os.Exit(2)
	}
	defer j.Close()
	set, err := target.Parse(args[:dash], target.ParseOptions{Takes: jobssh.Traits.Takes, Job: jobssh.Kind})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sshrounds:", err)
		os.Exit(2)
	}
	n := set.Len()
	mode := "kept connections"
	if *reconnect {
		mode = "-reconnect"
	}
	var first [3]float64 // round 1: wall, client CPU, machine busy (s)
	var rest [3]float64
	for r := 1; r <= *rounds; r++ {
		cpu0, busy0 := procCPU(), machineBusy()
		begin := time.Now()
		up := 0
		err := fanout.Sweep(context.Background(), set, j, fanout.Options{
			Options: engine.Options{Concurrency: *conc},
			OnResult: func(res job.Result) {
				if res.Status == job.Up {
					up++
				}
			},
		})
		wall := time.Since(begin).Seconds()
		cpu, busy := procCPU()-cpu0, machineBusy()-busy0
		if err != nil {
			fmt.Fprintln(os.Stderr, "sshrounds:", err)
			os.Exit(1)
		}
		fmt.Printf("  %-18s round %d: wall %7.2fs  up %d/%d  client cpu %6.3f ms/host  machine busy %6.2f ms/host\n",
			mode, r, wall, up, n, 1000*cpu/float64(n), 1000*busy/float64(n))
		v := [3]float64{wall, cpu, busy}
		for i := range v {
			if r == 1 {
				first[i] = v[i]
			} else {
				rest[i] += v[i] / float64(*rounds-1)
			}
		}
	}
	if *rounds > 1 {
		fmt.Printf("  %-18s rounds 2-%d vs round 1: wall %.3f, client cpu %.3f, machine busy %.3f\n",
			mode, *rounds, rest[0]/first[0], rest[1]/first[1], rest[2]/first[2])
		fmt.Printf("RESULT %s wall=%.3f cpu_ms=%.4f busy_ms=%.4f busy_ratio=%.4f\n",
			strings.ReplaceAll(mode, " ", "_"), rest[0], 1000*rest[1]/float64(n), 1000*rest[2]/float64(n), rest[2]/first[2])
	}
}

// procCPU is this process's user+system CPU so far, in seconds.
func procCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// machineBusy is the whole machine's busy time so far (/proc/stat), in
// seconds: user, nice, system, irq, softirq, steal.
func machineBusy() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		var v float64
		fmt.Sscan(f[i], &v)
		busy += v
	}
	return busy / 100 // USER_HZ
}
