package cli

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job/icmp"
	"github.com/fanout/fanout/store"
)

func init() { register(newPingCmd) }

// pingConcurrency is ping's default -c: a request in flight costs a few
// hundred bytes and no file, so a /18 of silent hosts can wait at once.
const pingConcurrency = 1 << 14

func newPingCmd() *cobra.Command {
	var (
		count    int
		interval time.Duration
		socket   string
		payload  int
		f        *sweepFlags
	)
	cmd := &cobra.Command{
		Use:   "ping [flags] TARGETS...",
		Short: "Send ICMP echo requests natively (IPv4 and IPv6)",
		Long: `Send --count ICMP echo requests to each target, --interval apart, each
waiting --timeout for its reply, like ping -c N -i I -W T per host, all hosts
at once from one socket per address family. A target is up when at least one
reply came (fping's rule); results carry sent, received, loss and RTT
min/avg/max.

Replies are counted only when a keyed check value in their payload verifies:
another process's replies, late or duplicate replies and replies from another
address than the one probed are never counted. ICMP errors (unreachable, time
exceeded) quoting a request make the target down, class unreachable; a request
the local route or firewall refuses to send makes it down, class unreachable
(no route) or refused (firewall, prohibit route, broadcast address).

Raw ICMP sockets are used as root or with CAP_NET_RAW, else unprivileged ICMP
datagram sockets where net.ipv4.ping_group_range allows them; when neither
is possible fanout says which of root, setcap or sysctl would fix it, before
sending anything.

--alive prints the live targets one per line (fping -a); --dead the others
(fping -u). -c bounds targets in flight; --rate bounds echo requests per
second.`,
		Example: `  fanout ping 192.168.2.0/24
  fanout ping --alive -q 10.0.0.0/16 | wc -l
  fanout ping --count 3 --interval 1s --timeout 1s @hosts.txt
  fanout ping --rate 10000 --shuffle -o jsonl 10.0.0.0/8`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// --count, --interval and --timeout were checked as they were
			// parsed (flags.go); icmp.New checks what is left.
			cfg := icmp.Config{Count: count, Interval: interval, Timeout: f.timeout, Rate: f.rate, PayloadSize: payload, Socket: socket}
			j, err := icmp.New(cfg)
			if err != nil {
				return usageError(err)
			}
			// Socket permission is known before any traffic: say what fixes it.
			if err := j.Check(); err != nil {
				return usageError(err)
			}
			// --rate counts echo requests, which the job paces itself.
			f.rate = 0
			// The live heap is a few MB plus ~500 bytes per target in flight;
			// without a limit the garbage of a million Results lets the heap
			// (and RSS) double. A soft limit keeps RSS flat. Not when targets
			// come from a file or stdin (held in memory, the heap could
			// exceed it), nor when GOMEMLIMIT is set. --db's writer holds
			// batches of Results on top: without room for them the GC
			// runs more often than the sweep's own garbage calls for.
			if os.Getenv("GOMEMLIMIT") == "" && !listedTargets(args) {
				limit := 16<<20 + int64(f.concurrency)*512
				if f.db != "" {
					limit += int64(store.WriterHeap)
				}
				debug.SetMemoryLimit(limit)
			}
			return runSweep(cmd, f, fanout.Spec{
				Job:        icmp.Kind,
				JobOptions: jobOptions(cfg),
				Targets:    args,
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&count, "count", icmp.DefaultCount, "echo requests per target (ping -c)")
	fl.DurationVar(&interval, "interval", icmp.DefaultInterval, "between a target's echo requests (ping -i)")
	f = addSweepFlags(cmd, sweepDefaults{Timeout: icmp.DefaultTimeout, HostsOnly: true, Refuse: map[string]string{
		"retries": "ping sends --count echo requests per target and does not retry; use --count",
	}})
	fl.StringVar(&socket, "socket", "", "ICMP socket: raw, dgram, or empty to pick (raw when permitted)")
	fl.IntVar(&payload, "payload-size", 0, "echo data bytes (minimum and default 32)")
	fl.Lookup("timeout").Usage = "how long each echo request waits for its reply (ping -W)"
	fl.Lookup("rate").Usage = "echo requests per second (0 = unlimited)"
	c := fl.Lookup("concurrency")
	c.Usage = "targets in flight at most"
	c.DefValue = strconv.Itoa(pingConcurrency)
	f.concurrency = pingConcurrency
	return cmd
}

// listedTargets reports whether targets come from @FILE or stdin.
func listedTargets(args []string) bool {
	for _, a := range args {
		if a == "-" || strings.HasPrefix(a, "@") {
			return true
		}
	}
	return false
}
