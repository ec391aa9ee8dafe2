package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/report"
)

func init() { register(newReportCmd) }

func newReportCmd() *cobra.Command {
	var sweep, html string
	cmd := &cobra.Command{
		Use:   "report FILE [--sweep ID] [--html OUT.html]",
		Short: "Summarize a stored sweep: in the terminal, or as one self-contained HTML page",
		Long: `Summarize one sweep stored with --db FILE (--sweep defaults to the last).

With --html OUT.html, write one self-contained page (no network fetches): summary
counts, an RTT histogram, error classes, the slowest and the failing hosts, and
for IPv4 sweeps a Hilbert-curve map of the address space (neighbouring subnets
stay neighbours; up in green, down in red; a /8 shows one cell per /24).
Without it, print the summary, the RTT histogram and the slowest hosts.
For a round of a watch (--sweep W:N, W:last), both add each target's uptime
over the watch's kept rounds (the last 1,000 at most), least available first.`,
		Example: `  fanout report scan.db --html scan.html
  fanout report scan.db --sweep 2
  fanout report watch.db --sweep 1:last --html watch.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openDB(args[0])
			if err != nil {
				return err
			}
			defer st.Close()
			sw, err := pickSweep(st, sweep)
			if err != nil {
				return err
			}
			r, err := report.Build(cmd.Context(), st, sw.ID)
			if err != nil {
				return err
			}
			if html == "" {
				out := cmd.OutOrStdout()
				printStored(out, st.Path(), r.Sweep, r.Counts)
				r.RTT.WriteText(out, 40)
				if u := r.Uptime; u != nil {
					fmt.Fprintf(out, "uptime over %d rounds of watch %d: %.2f%% of %d targets' results up\n", u.Rounds, u.Watch, 100*u.Overall, u.Targets)
					for _, x := range u.Lowest[:min(5, len(u.Lowest))] {
						name := output.Safe(x.Host)
						if x.Port != 0 {
							name += fmt.Sprintf(":%d", x.Port)
						}
						fmt.Fprintf(out, "  %-24s %6.2f%% (%d of %d rounds up)\n", name, 100*float64(x.Up)/float64(max(x.Rounds, 1)), x.Up, x.Rounds)
					}
				}
				if len(r.Slowest) > 0 {
					fmt.Fprintln(out, "slowest:")
					for _, s := range r.Slowest[:min(5, len(r.Slowest))] {
						fmt.Fprintf(out, "  %-24s %s\n", output.Safe(s.Host), report.Short(s.RTT))
					}
				}
				return nil
			}
			// Written beside the target and renamed: a failed report never
			// leaves half a page behind.
			tmp, err := os.CreateTemp(filepath.Dir(html), ".fanout-report-*.html")
			if err != nil {
				return usageError(fmt.Errorf("--html: %w", err))
			}
			defer os.Remove(tmp.Name())
			if err := r.WriteHTML(tmp); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("--html %s: %w", html, err)
			}
			if err := os.Chmod(tmp.Name(), 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), html); err != nil {
				return fmt.Errorf("--html %s: %w", html, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (sweep %d: %d targets, %d up)\n", html, sw.ID, r.Counts.Done, r.Counts.Up)
			return nil
		},
	}
	cmd.Flags().StringVar(&sweep, "sweep", "", "sweep id (default: the last sweep in FILE)")
	cmd.Flags().StringVar(&html, "html", "", "write the report as a self-contained HTML page to this file")
	return cmd
}
