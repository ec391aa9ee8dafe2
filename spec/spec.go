// Package spec is a sweep in serializable form (Spec): what the CLI builds
// from its flags, what the store records and a resume rebuilds, and what a
// cluster submitter hands to its workers. It knows the job registry, not the
// job kinds.
package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
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
// A "-" or "@FILE" entry of Targets or Excludes is read when the Spec is
// built, through the Lists given to BuildFrom: the CLI reads the file or
// standard input as it parses it, and a store replays the copy it keeps
// beside the Spec (see store.Meta.Lists), so that a list of millions is
// never a []string, nor JSON in the Spec. A Spec submitted to a cluster
// stands alone: the CLI inlines those lists first (Inline), and Build
// refuses them, so that a worker never reads a file a Spec names.
type Spec struct {
	Job        string          `json:"job"`
	JobOptions json.RawMessage `json:"job_options,omitempty"`

	Targets    []string `json:"targets"`
	Excludes   []string `json:"excludes,omitempty"`
	MaxTargets uint64   `json:"max_targets,omitempty"`
	AllowHuge  bool     `json:"allow_huge,omitempty"`
	// SkipNetworkBroadcast leaves out the network and broadcast addresses
	// of IPv4 CIDRs of /30 and wider (target.ParseOptions): the CLI sets it
	// for ping, tcp and ssh unless --all-addresses. A Spec recorded before
	// it existed reads false, and keeps the targets it was swept with.
	SkipNetworkBroadcast bool `json:"skip_network_broadcast,omitempty"`

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

// Lists opens the lines of a "-" or @FILE entry of a Spec's Targets or
// Excludes (spec as written). Build calls it once per such entry, in the
// order they appear, Targets first.
type Lists func(spec string) (io.Reader, error)

// Inline returns the Spec with "-" and @FILE entries of Targets and Excludes
// replaced by the specs they hold (stdin is read for "-"), ready to store or
// submit. Only one of the two lists may read stdin.
func (s Spec) Inline(stdin io.Reader) (Spec, error) {
	return s.InlineFrom(target.OpenList(stdin))
}

// InlineFrom is Inline with the lists read through lists.
func (s Spec) InlineFrom(lists Lists) (Spec, error) {
	if slices.Contains(s.Targets, "-") && slices.Contains(s.Excludes, "-") {
		return s, fmt.Errorf(`"-" given as a target and as an exclude: standard input can be read once`)
	}
	var err error
	if s.Targets, err = target.InlineFrom(s.Targets, lists); err != nil {
		return s, err
	}
	if s.Excludes, err = target.InlineFrom(s.Excludes, lists); err != nil {
		return s, fmt.Errorf("exclude: %w", err)
	}
	return s, nil
}

// Listed counts the "-" and @FILE entries of Targets and Excludes: the
// lists BuildFrom reads.
func (s Spec) Listed() int {
	n := 0
	for _, t := range append(slices.Clip(s.Targets), s.Excludes...) {
		if target.Listed(t) {
			n++
		}
	}
	return n
}

// Set parses the Spec's targets into a Set. stdin is read for "-" (nil when
// there is none).
func (s Spec) Set(stdin io.Reader) (target.Set, error) {
	return s.parse(nil, stdin)
}

// parse parses the Spec's targets as its job kind takes them (a port, a
// user: job.Traits.Takes), lists read through lists, else "-" from stdin.
func (s Spec) parse(lists Lists, stdin io.Reader) (target.Set, error) {
	traits, _ := job.TraitsOf(s.Job)
	return target.Parse(s.Targets, target.ParseOptions{
		Excludes: s.Excludes, MaxTargets: s.MaxTargets, AllowHuge: s.AllowHuge, Stdin: stdin,
		Takes: traits.Takes, Job: s.Job, List: lists, SkipNetworkBroadcast: s.SkipNetworkBroadcast,
	})
}

// Build is everything a sweep of this Spec runs on: its set (expanded by a
// job.Expander such as tcp's host x port product, then held to MaxTargets),
// its order and its job. Targets must already be inlined (Inline): a "-"
// or @FILE entry is refused, never read.
func (s Spec) Build() (target.Set, target.Order, job.Job, error) {
	return s.BuildFrom(nil)
}

// BuildFrom is Build with the "-" and @FILE entries read through lists
// (nil refuses them). The kind's traits say what its targets may carry (a
// port, a user; job.Traits.Takes), and the parser refuses the rest by the
// kind's name.
func (s Spec) BuildFrom(lists Lists) (target.Set, target.Order, job.Job, error) {
	if lists == nil {
		for _, t := range append(slices.Clip(s.Targets), s.Excludes...) {
			if target.Listed(t) {
				return nil, nil, nil, fmt.Errorf("target %q: a list (- or @FILE) must be inlined into the spec before it is built here", t)
			}
		}
	}
	j, err := s.NewJob()
	if err != nil {
		return nil, nil, nil, err
	}
	set, err := s.SetFor(j, lists)
	if err != nil {
		return nil, nil, nil, err
	}
	order, err := s.Order(set.Len())
	if err != nil {
		return nil, nil, nil, err
	}
	return set, order, j, nil
}

// SetFor is the set BuildFrom builds, for the job j built from this Spec
// (a watch re-reads its @FILE lists each round, with the job it keeps).
func (s Spec) SetFor(j job.Job, lists Lists) (target.Set, error) {
	set, err := s.parse(lists, nil)
	if err != nil {
		return nil, err
	}
	x, _ := j.(job.Expander)
	if set, err = s.expand(set, x); err != nil {
		return nil, err
	}
	if c, ok := j.(job.Checker); ok {
		if err := c.Check(set); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// Visit is Build without the job: the set and order a sweep of this Spec
// visits, for those who only read its Results (a cluster collector), so that
// no job is built where it will not run (an ssh job reads keys). The Spec
// must stand alone (see Standalone): no file is read.
func (s Spec) Visit() (target.Set, target.Order, error) {
	if err := s.Standalone(); err != nil {
		return nil, nil, err
	}
	set, err := s.Set(nil)
	if err != nil {
		return nil, nil, err
	}
	x, err := job.NewExpander(s.Job, s.JobOptions)
	if err != nil {
		return nil, nil, err
	}
	if set, err = s.expand(set, x); err != nil {
		return nil, nil, err
	}
	order, err := s.Order(set.Len())
	if err != nil {
		return nil, nil, err
	}
	return set, order, nil
}

// expand applies a job kind's Expander (tcp: host x port) to set, held to
// MaxTargets.
func (s Spec) expand(set target.Set, x job.Expander) (target.Set, error) {
	if x == nil {
		return set, nil
	}
	hosts := set.Len()
	set = x.Expand(set)
	max := s.MaxTargets
	if max == 0 {
		max = target.DefaultMaxTargets
	}
	if n := set.Len(); n < hosts || n > max {
		return nil, fmt.Errorf("%w: %d hosts make %d %s targets, more than the limit of %d; raise it with --max-targets N",
			target.ErrTooMany, hosts, n, s.Job, max)
	}
	return set, nil
}

// Standalone reports an error naming the first target or exclude that
// reads a file or standard input ("@FILE", "-"): a Spec from elsewhere (a
// cluster's bus, a database) must carry its targets, never name a file of
// the machine that reads it.
func (s Spec) Standalone() error {
	for _, list := range [][]string{s.Targets, s.Excludes} {
		for _, t := range list {
			if t == "-" || strings.HasPrefix(t, "@") {
				return fmt.Errorf("target %q reads a local file or standard input: a stored or submitted spec must carry its targets (Spec.Inline)", t)
			}
		}
	}
	return nil
}

// stdinOption is the job option that holds bytes sent to every target
// (ssh --stdin): a secret as often as not, so it is kept out of what is
// stored (SplitStdin) and only its digest stays, under stdinDigestOption.
const (
	stdinOption       = "stdin"
	stdinDigestOption = "stdin_sha256"
)

// SplitStdin returns the Spec with its job's stdin bytes taken out of the
// options and replaced by their SHA-256 (hex, option "stdin_sha256"), and the
// bytes; a Spec without stdin comes back as it is, with nil. What is stored
// (a database, a cluster's sweeps bucket) is the split Spec; JoinStdin puts
// the bytes back, checking them against the digest.
func (s Spec) SplitStdin() (Spec, []byte, error) {
	m, ok, err := s.optionMap()
	if err != nil || !ok {
		return s, nil, err
	}
	raw, has := m[stdinOption]
	if !has || string(raw) == "null" {
		return s, nil, nil
	}
	var b []byte
	if err := json.Unmarshal(raw, &b); err != nil {
		return s, nil, fmt.Errorf("%s options: stdin: %w", s.Job, err)
	}
	if b == nil {
		b = []byte{}
	}
	sum := sha256.Sum256(b)
	delete(m, stdinOption)
	m[stdinDigestOption], _ = json.Marshal(hex.EncodeToString(sum[:]))
	if s.JobOptions, err = json.Marshal(m); err != nil {
		return s, nil, err
	}
	return s, b, nil
}

// StdinDigest is the SHA-256 (hex) of the stdin a split Spec was run with,
// or "" when it has none.
func (s Spec) StdinDigest() string {
	m, ok, err := s.optionMap()
	if err != nil || !ok {
		return ""
	}
	var d string
	_ = json.Unmarshal(m[stdinDigestOption], &d)
	return d
}

// JoinStdin puts stdin bytes back into a split Spec. They must be the bytes
// its digest names: anything else is an error saying so.
func (s Spec) JoinStdin(b []byte) (Spec, error) {
	want := s.StdinDigest()
	if want == "" {
		return s, fmt.Errorf("the sweep (%s) was not run with stdin", s.Job)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		return s, fmt.Errorf("stdin: SHA-256 %s, but the sweep was run with %s: not the same bytes", got, want)
	}
	m, _, err := s.optionMap()
	if err != nil {
		return s, err
	}
	if b == nil {
		b = []byte{}
	}
	m[stdinOption], _ = json.Marshal(b)
	if s.JobOptions, err = json.Marshal(m); err != nil {
		return s, err
	}
	return s, nil
}

// optionMap is JobOptions as an object's fields; false when there are none.
func (s Spec) optionMap() (map[string]json.RawMessage, bool, error) {
	if len(s.JobOptions) == 0 || string(s.JobOptions) == "null" {
		return nil, false, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(s.JobOptions, &m); err != nil {
		return nil, false, fmt.Errorf("%s options: %w", s.Job, err)
	}
	return m, m != nil, nil
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
func (s Spec) NewJob() (job.Job, error) { return job.New(s.Job, s.JobOptions) }

// EngineOptions are the Spec's engine bounds.
func (s Spec) EngineOptions() engine.Options {
	return engine.Options{Concurrency: s.Concurrency, Rate: s.Rate, Timeout: s.Timeout, Retries: s.Retries, Backoff: s.Backoff}
}
