package fanout

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/fanout/fanout/engine"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Spec is a whole sweep in serializable form: what the CLI builds from its
// flags, what the store records (and resume rebuilds the sweep from), and what
// a cluster submitter hands to workers. Same Spec, same targets in the same
// order, same job.
//
// Targets must not contain "-" or "@FILE" once a Spec is stored or submitted:
// the CLI inlines those lists first (Inline), so the Spec stands alone.
type Spec struct {
	Job        string          `json:"job"`
	JobOptions json.RawMessage `json:"job_options,omitempty"`

	Targets    []string `json:"targets"`
	Excludes   []string `json:"excludes,omitempty"`
	MaxTargets uint64   `json:"max_targets,omitempty"`
	AllowHuge  bool     `json:"allow_huge,omitempty"`

	Shuffle bool   `json:"shuffle,omitempty"`
	Seed    uint64 `json:"seed,omitempty"`
	ShardI  uint64 `json:"shard_i,omitempty"` // 1-based; 0 with ShardN 0 means no sharding
	ShardN  uint64 `json:"shard_n,omitempty"`

	Concurrency int           `json:"concurrency,omitempty"`
	Rate        float64       `json:"rate,omitempty"`
	Timeout     time.Duration `json:"timeout_ns,omitempty"`
	Retries     int           `json:"retries,omitempty"`
	Backoff     time.Duration `json:"backoff_ns,omitempty"`
}

// Inline returns the Spec with "-" and @FILE entries of Targets and Excludes
// replaced by the specs they hold (stdin is read for "-"), ready to store or
// submit. Only one of the two lists may read stdin.
func (s Spec) Inline(stdin io.Reader) (Spec, error) {
	if slices.Contains(s.Targets, "-") && slices.Contains(s.Excludes, "-") {
		return s, fmt.Errorf(`"-" given as a target and as an exclude: standard input can be read once`)
	}
	var err error
	if s.Targets, err = target.Inline(s.Targets, stdin); err != nil {
		return s, err
	}
	if s.Excludes, err = target.Inline(s.Excludes, stdin); err != nil {
		return s, fmt.Errorf("exclude: %w", err)
	}
	return s, nil
}

// Set parses the Spec's targets into a Set. stdin is read for "-" (nil when
// there is none).
func (s Spec) Set(stdin io.Reader) (target.Set, error) {
	return target.Parse(s.Targets, target.ParseOptions{
		Excludes: s.Excludes, MaxTargets: s.MaxTargets, AllowHuge: s.AllowHuge, Stdin: stdin,
	})
}

// Build is everything a sweep of this Spec runs on: its set (expanded by a
// job.Expander such as tcp's host x port product, then held to MaxTargets),
// its order and its job. Targets must already be inlined (Inline).
func (s Spec) Build() (target.Set, target.Order, Job, error) {
	set, err := s.Set(nil)
	if err != nil {
		return nil, nil, nil, err
	}
	j, err := s.NewJob()
	if err != nil {
		return nil, nil, nil, err
	}
	if x, ok := j.(job.Expander); ok {
		hosts := set.Len()
		set = x.Expand(set)
		max := s.MaxTargets
		if max == 0 {
			max = target.DefaultMaxTargets
		}
		if n := set.Len(); n < hosts || n > max {
			return nil, nil, nil, fmt.Errorf("%w: %d hosts make %d %s targets, more than the limit of %d; raise it with --max-targets N",
				target.ErrTooMany, hosts, n, j.Kind(), max)
		}
	}
	order, err := s.Order(set.Len())
	if err != nil {
		return nil, nil, nil, err
	}
	return set, order, j, nil
}

// Order is the visiting order of a Set of n targets under this Spec.
func (s Spec) Order(n uint64) (target.Order, error) {
	var o target.Order = target.Identity(n)
	if s.Shuffle {
		o = target.Shuffle(n, s.Seed)
	}
	if s.ShardN > 0 || s.ShardI > 0 {
		if s.ShardI < 1 || s.ShardI > s.ShardN {
			return nil, fmt.Errorf("shard %d/%d: want i/n with 1 <= i <= n", s.ShardI, s.ShardN)
		}
		o = target.Shard(o, s.ShardI-1, s.ShardN)
	}
	return o, nil
}

// NewJob rebuilds the Spec's job from the registry.
func (s Spec) NewJob() (Job, error) { return job.New(s.Job, s.JobOptions) }

// EngineOptions are the Spec's engine bounds.
func (s Spec) EngineOptions() engine.Options {
	return engine.Options{Concurrency: s.Concurrency, Rate: s.Rate, Timeout: s.Timeout, Retries: s.Retries, Backoff: s.Backoff}
}
