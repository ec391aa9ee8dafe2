package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job/tcp"
)

func init() { register(newTCPCmd) }

func newTCPCmd() *cobra.Command {
	var ports string
	var f *sweepFlags
	cmd := &cobra.Command{
		Use:   "tcp [-p PORTS] [flags] TARGETS...",
		Short: "Check that TCP ports accept connections",
		Long: `Connect to each port of each target. A target port is up when the connection
is accepted (it is closed at once); down with class refused (RST), timeout
(no answer within --timeout) or unreachable (ICMP error, no route).

Every (target, port) pair is its own result; the set of pairs counts against
--max-targets. Without -p, each host of an Ansible inventory (@hosts.ini,
--inventory) is checked on its ansible_port; a target without one is a
usage error.`,
		Example: `  fanout tcp -p 22 192.168.2.0/24
  fanout tcp -p 22,80,443,8000-8010 --alive 192.168.2.0/24
  fanout tcp -p 443 --rate 500 --timeout 2s -o jsonl @hosts.txt
  fanout tcp --inventory hosts.yml --limit web   # each host's ansible_port`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg tcp.Config
			if ports != "" || !inventoryTargets(args, f) {
				if ports == "" {
					return usageErrorf("no ports given: want -p PORTS, as in -p 22,80,443 or -p 8000-8010 (without -p, only an inventory's hosts, which carry ansible_port)")
				}
				ps, err := tcp.ParsePorts(ports)
				if err != nil {
					return usageError(err)
				}
				cfg.Ports = make([]int, len(ps))
				for i, p := range ps {
					cfg.Ports[i] = int(p)
				}
			}
			return runSweep(cmd, f, fanout.Spec{
				Job:        tcp.Kind,
				JobOptions: jobOptions(cfg),
				Targets:    args,
			})
		},
	}
	cmd.Flags().StringVarP(&ports, "ports", "p", "", "ports to connect to: 22,80,443 and ranges 8000-8010")
	f = addSweepFlags(cmd, sweepDefaults{Timeout: 2 * time.Second, HostsOnly: true})
	return cmd
}
