// Package job defines what every job kind shares: the Job interface, the
// Result envelope that every kind fills, and the registry that rebuilds a job
// from its kind name and JSON options (how a cluster worker or a resumed sweep
// gets the same job back).
package job

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/fanout/fanout/target"
)

// Job runs one attempt against one target. The attempt's deadline comes from
// ctx. A per-target failure is a Result, never a panic or an error return.
type Job interface {
	// Kind is the registered name of the job kind ("exec", "tcp", "ping", "ssh").
	Kind() string
	// Run makes one attempt at t. It must return promptly once ctx is done,
	// having closed every socket and killed every process it started.
	Run(ctx context.Context, t target.Target) Result
}

// BatchConfig is what the engine tells a batch job about the sweep.
type BatchConfig struct {
	Timeout     time.Duration // per attempt (per probe for ICMP)
	Retries     int           // extra attempts for retryable failures
	Concurrency int           // targets in flight at most (the engine enforces it too)
	Rate        float64       // targets started per second, 0 = unlimited (the engine enforces it)
}

// Batcher is implemented by job kinds that are faster handling many targets
// at once (ICMP: one socket, one sender, one receiver). The engine prefers it.
//
// The engine sends each target on in only after it has a concurrency slot and
// a rate token for it, and closes in when no target is left or ctx is done.
// The job calls emit exactly once per target it received, from any goroutine;
// the engine frees that target's slot when it does. RunBatch returns after
// emitting a Result for every target received, or when ctx is done (targets
// received but not emitted then count as interrupted).
type Batcher interface {
	RunBatch(ctx context.Context, in <-chan target.Target, cfg BatchConfig, emit func(Result)) error
}

// Expander is a job kind that visits several targets per host (tcp: one per
// port). Its product set is what a sweep indexes, shards and resumes.
type Expander interface {
	Expand(target.Set) target.Set
}

// Taker is a job kind whose targets may carry more than a host: a port
// (host:22, [fe80::1%eth0]:22) or a user (user@host), as target.Takes
// says. Parse refuses what a kind does not take, naming the kind; a kind
// without Takes takes hosts, addresses, CIDRs, ranges and node-sets only.
type Taker interface {
	Takes() target.Takes
}

// Checker is a job kind that checks a sweep's targets before anything is
// sent (tcp without -p: every target carries a port). Spec.Build calls it
// on the expanded set; an error is a usage error.
type Checker interface {
	Check(target.Set) error
}

// Factory builds a job from its JSON options (the kind's own Config struct).
type Factory func(options json.RawMessage) (Job, error)

// DecodeOptions reads a kind's JSON options into its Config v, refusing
// fields the kind does not know (a typo, or a newer submitter than this
// worker) rather than silently ignoring them. Empty options leave v as is.
func DecodeOptions(kind string, options json.RawMessage, v any) error {
	if len(options) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(options))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%s options %s: %w", kind, options, err)
	}
	return nil
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a job kind available by name. It is meant to be called from
// the kind package's init; registering a name twice panics.
func Register(kind string, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic("job: kind registered twice: " + kind)
	}
	registry[kind] = f
}

// New rebuilds a job of the named kind from its JSON options.
func New(kind string, options json.RawMessage) (Job, error) {
	registryMu.RLock()
	f, ok := registry[kind]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown job kind %q (known: %v)", kind, Kinds())
	}
	return f(options)
}

// expanders build the Expander of the kinds that have one from their
// options alone, without the job: what knows a sweep's targets (a cluster
// collector checking Results) need not build an ssh job, which reads keys.
var expanders = map[string]func(options json.RawMessage) (Expander, error){}

// RegisterExpander says how kind's Expander is built from its options (the
// kind's Job must expand its set the same way). Meant for the kind's init.
func RegisterExpander(kind string, f func(options json.RawMessage) (Expander, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	expanders[kind] = f
}

// NewExpander is kind's Expander for options, or nil when kind does not
// expand its set.
func NewExpander(kind string, options json.RawMessage) (Expander, error) {
	registryMu.RLock()
	f, ok := expanders[kind]
	registryMu.RUnlock()
	if !ok {
		return nil, nil
	}
	return f(options)
}

// Kinds lists the registered job kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	ks := make([]string, 0, len(registry))
	for k := range registry {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
