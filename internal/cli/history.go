package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/report"
	"github.com/fanout/fanout/store"
)

func init() { register(newHistoryCmd) }

// historySpan is one stretch of a host's timeline (the jsonl form).
type historySpan struct {
	Host      string     `json:"host"`
	Port      int        `json:"port,omitempty"`
	Status    job.Status `json:"status"`
	Class     job.Class  `json:"class,omitempty"`
	From      uint64     `json:"from_round"`
	To        uint64     `json:"to_round"`
	Rounds    int        `json:"rounds"`
	Start     string     `json:"start"`
	End       string     `json:"end"`
	RTTMinMs  *float64   `json:"rtt_min_ms,omitempty"`
	RTTAvgMs  *float64   `json:"rtt_avg_ms,omitempty"`
	RTTMaxMs  *float64   `json:"rtt_max_ms,omitempty"`
	LastError string     `json:"error,omitempty"`
}

func newHistoryCmd() *cobra.Command {
	var (
		watchID int64
		port    int
		format  string
	)
	cmd := &cobra.Command{
		Use:   "history FILE HOST",
		Short: "A host's timeline in a watch recorded with --db: when it went down and came back, with RTTs",
		Long: `Print HOST's timeline over the rounds a watch kept in FILE (fanout watch --db
FILE): one line per stretch of rounds in one state, with the rounds, the time
it began and ended, and the RTT (min/avg/max) while it was up. HOST is the
target as given or its address; a host polled on several ports has a
timeline per port (--port picks one). Retention (--keep, --keep-rounds)
decides how far back it goes.`,
		Example: `  fanout history watch.db web1.example.com
  fanout history watch.db 10.0.0.7 --watch 2 -o jsonl`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "jsonl" {
				return usageErrorf("--output %q: want text or jsonl", format)
			}
			st, err := openDB(args[0])
			if err != nil {
				return err
			}
			defer st.Close()
			w, err := st.PickWatch(watchID)
			if err != nil {
				return usageError(err)
			}
			host := args[1]
			if h, p, err := net.SplitHostPort(host); err == nil && port == 0 {
				if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
					host, port = h, n
				}
			}
			spans, err := st.History(cmd.Context(), w.ID, host, port)
			if err != nil {
				return err
			}
			if len(spans) == 0 {
				return usageErrorf("%s: watch %d has no result for %s in its kept rounds (%d to %d)",
					st.Path(), w.ID, output.Safe(args[1]), w.First, w.Last)
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			enc := json.NewEncoder(out)
			for _, sp := range spans {
				if format == "jsonl" {
					if err := enc.Encode(spanJSON(sp)); err != nil {
						return err
					}
					continue
				}
				name := output.Safe(sp.Host)
				if sp.Port != 0 {
					name = net.JoinHostPort(name, strconv.Itoa(sp.Port))
				}
				state := string(sp.Status)
				if sp.Class != "" {
					state += "/" + string(sp.Class)
				}
				rounds := fmt.Sprintf("round %d", sp.From)
				if sp.To != sp.From {
					rounds = fmt.Sprintf("rounds %d-%d", sp.From, sp.To)
				}
				line := fmt.Sprintf("%-21s  %-16s  %-15s  %s → %s", name, output.Safe(state), rounds, when(sp.Start), when(sp.End))
				if sp.Status == job.Up && sp.RTTMax > 0 {
					line += fmt.Sprintf("  rtt %s/%s/%s", report.Short(sp.RTTMin), report.Short(sp.RTTAvg()), report.Short(sp.RTTMax))
				} else if sp.LastErr != "" {
					line += "  " + output.Safe(abbrev(sp.LastErr, 80))
				}
				fmt.Fprintln(out, line)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&watchID, "watch", 0, "the watch (0 = the file's only watch)")
	fl.IntVar(&port, "port", 0, "only this port's timeline (0 = every port)")
	fl.StringVarP(&format, "output", "o", "text", "text or jsonl")
	return cmd
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func spanJSON(sp store.Span) historySpan {
	ms := func(d time.Duration) *float64 {
		if d <= 0 {
			return nil
		}
		v := float64(d.Microseconds()) / 1e3
		return &v
	}
	h := historySpan{Host: sp.Host, Port: sp.Port, Status: sp.Status, Class: sp.Class, From: sp.From, To: sp.To,
		Rounds: sp.Rounds, LastError: sp.LastErr, RTTMinMs: ms(sp.RTTMin), RTTAvgMs: ms(sp.RTTAvg()), RTTMaxMs: ms(sp.RTTMax)}
	if !sp.Start.IsZero() {
		h.Start = sp.Start.UTC().Format(time.RFC3339Nano)
	}
	if !sp.End.IsZero() {
		h.End = sp.End.UTC().Format(time.RFC3339Nano)
	}
	return h
}
