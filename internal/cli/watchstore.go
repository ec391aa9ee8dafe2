package cli

// What `fanout watch` records and serves beside its rounds: the history in
// --db (store.OpenWatch, with retention --keep and --keep-rounds) and the
// Prometheus metrics (--metrics, --metrics-targets). The watch command adds
// these flags with addWatchStoreFlags and addMetricsFlags, and opens both
// before its first round: a bad file or an address in use is a usage error,
// before any traffic.

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/watch/metrics"
)

// Bounds of the watch's history and metrics flags.
const (
	maxKeepRounds     = 1 << 23 // the store's sweeps per file
	maxMetricsTargets = 1 << 24
)

// watchStoreFlags are the retention flags of a watch's --db.
type watchStoreFlags struct {
	keep       keepValue
	keepRounds int
}

// addWatchStoreFlags adds --keep and --keep-rounds (a watch's --db is the
// job commands' --db flag).
func addWatchStoreFlags(fs *pflag.FlagSet, f *watchStoreFlags) {
	fs.Var(&f.keep, "keep", "with --db: prune rounds older than this (30m, 36h, 7d, 2w; 0 = keep them)")
	fs.IntVar(&f.keepRounds, "keep-rounds", 0, "with --db: keep only the newest N rounds (0 = no limit)")
}

// openWatchStore opens the watch's history in db: the recorder (a
// watch.Observer) and the watch's next round number. Its complaints (a full
// disk) go to stderr, once per round.
func (f *watchStoreFlags) openWatchStore(db string, spec fanout.Spec, every time.Duration, stderr io.Writer) (*store.WatchRecorder, uint64, error) {
	return f.openWatchStoreLists(db, spec, every, stderr, nil)
}

// openWatchStoreLists is openWatchStore for a spec that reads lists: lists
// gives the ones round n polled (store.WatchOptions.Lists).
func (f *watchStoreFlags) openWatchStoreLists(db string, spec fanout.Spec, every time.Duration, stderr io.Writer, lists func(uint64) ([]io.Reader, error)) (*store.WatchRecorder, uint64, error) {
	rec, next, err := store.OpenWatch(db, spec, every, store.WatchOptions{
		Keep: time.Duration(f.keep), KeepRounds: f.keepRounds, Version: version(), Lists: lists,
		OnError: func(_ uint64, err error) { fmt.Fprintf(stderr, "fanout: %v\n", err) },
	})
	if err != nil {
		return nil, 0, usageError(fmt.Errorf("--db: %w", err))
	}
	return rec, next, nil
}

// keepValue is --keep: a duration that also takes days and weeks.
type keepValue time.Duration

func (k *keepValue) String() string {
	if *k == 0 {
		return "0"
	}
	return time.Duration(*k).String()
}

func (k *keepValue) Type() string { return "age" }

func (k *keepValue) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return &flagError{name: "keep", value: s, why: err.Error()}
	}
	*k = keepValue(d)
	return nil
}

// parseAge reads a duration with an optional unit of d (24h) or w (7d)
// beside Go's (h, m, s, ms): "7d", "36h", "1w2d", "90m"; "0" is none.
func parseAge(s string) (time.Duration, error) {
	const want = "want a duration with a unit: s, m, h, d (days) or w (weeks), as 90m, 36h, 7d, 2w (0 = keep every round)"
	if s == "0" {
		return 0, nil
	}
	if s == "" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%s", want)
	}
	var total float64
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || unit == "" {
			return 0, fmt.Errorf("%s", want)
		}
		var per time.Duration
		switch unit {
		case "w":
			per = 7 * 24 * time.Hour
		case "d":
			per = 24 * time.Hour
		default:
			d, err := time.ParseDuration("1" + unit)
			if err != nil {
				return 0, fmt.Errorf("unknown unit %q: %s", unit, want)
			}
			per = d
		}
		total += v * float64(per)
	}
	if math.IsNaN(total) || total > float64(100*365*24*time.Hour) {
		return 0, fmt.Errorf("%s, of at most 100 years", want)
	}
	if total < float64(time.Second) {
		return 0, fmt.Errorf("%s, of 1s or more", want)
	}
	return time.Duration(total), nil
}

// metricsFlags are --metrics and --metrics-targets.
type metricsFlags struct {
	addr    string
	targets int
}

// addMetricsFlags adds --metrics and --metrics-targets.
func addMetricsFlags(fs *pflag.FlagSet, f *metricsFlags) {
	fs.StringVar(&f.addr, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics from the first round on (127.0.0.1:9108, :9108)")
	fs.IntVar(&f.targets, "metrics-targets", metrics.DefaultMaxTargets, "per-target series (fanout_up, fanout_rtt_seconds) for watches of at most N targets (0 = none)")
}

// listen starts serving the metrics (nil without --metrics): an address in
// use is a usage error, before the first round.
func (f *metricsFlags) listen() (*metrics.Exporter, error) {
	if f.addr == "" {
		return nil, nil
	}
	e, err := metrics.Listen(f.addr, metrics.Options{MaxTargets: f.targets})
	if err != nil {
		return nil, usageError(fmt.Errorf("--metrics: %w", err))
	}
	return e, nil
}
