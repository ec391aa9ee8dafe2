// Package job defines what every job kind shares: the Job interface, the
// Result envelope that every kind fills, and the registry that rebuilds a job
// from its kind name and JSON options (how a cluster worker or a resumed sweep
// gets the same job back) and holds each kind's Traits (what the rest of
// fanout knows of a kind without building its job).
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

// Traits are what fanout needs to know about a job kind without building
// its job (which may read keys or ask a passphrase): how a cluster cuts its
// sweeps into tasks, how many files a target in flight holds, how its
// Results read, what its targets may carry, and whether a cluster worker
// runs it by default. Each kind registers its own with Register, so that
// nothing outside the kind keeps a table keyed by its name.
type Traits struct {
	// TaskSize bounds the targets of one cluster task, {min, max}: many
	// cheap probes (a task has a fixed cost: a fetch, a results message,
	// an ack), few slow commands. Both at least 1, min <= max.
	TaskSize [2]uint64
	// FDsPerTarget is the open files one target in flight holds, so that
	// -c is fitted under ulimit -n; 0: none of its own (ICMP shares one
	// socket per sweep).
	FDsPerTarget int
	// PrintsOutput: the kind runs a command and its Results carry that
	// command's output (text output says ok/failed and quotes its last
	// line), even when no exit code came back.
	PrintsOutput bool
	// Local: the kind runs commands of the spec's on the machine that runs
	// it. A cluster worker refuses it unless its operator allows it.
	Local bool
	// LendsIdentity: the kind logs in elsewhere with the files and keys of
	// the machine that runs it. A cluster worker refuses it unless its
	// operator allows it, and then runs it only with its own files
	// (WorkerOptions.Confine).
	LendsIdentity bool
	// Takes is what the kind's targets may carry besides a host (a port,
	// a user); target.Parse refuses the rest by the kind's name.
	Takes target.Takes
	// Expander, when set, builds the kind's Expander from its options alone,
	// without the job (a cluster collector checking Results need not build
	// an ssh job); the kind's Job must expand its set the same way.
	Expander func(options json.RawMessage) (Expander, error)
}

// check reports what makes t unfit to register.
func (t Traits) check() error {
	if lo, hi := t.TaskSize[0], t.TaskSize[1]; lo < 1 || hi < lo {
		return fmt.Errorf("TaskSize %v: want {min, max} with 1 <= min <= max", t.TaskSize)
	}
	if t.FDsPerTarget < 0 {
		return fmt.Errorf("FDsPerTarget %d: want 0 or more", t.FDsPerTarget)
	}
	return nil
}

// kind is one registered job kind.
type kind struct {
	traits Traits
	new    Factory
}

var (
	registryMu sync.RWMutex
	registry   = map[string]kind{}
)

// Register makes a job kind available by name, with its traits. It is
// meant to be called from the kind package's init; registering a name
// twice, or with traits that do not check (a zero Traits: no TaskSize),
// panics.
func Register(name string, t Traits, f Factory) {
	if err := t.check(); err != nil {
		panic("job: kind " + name + ": " + err.Error())
	}
	if f == nil {
		panic("job: kind " + name + ": no Factory")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("job: kind registered twice: " + name)
	}
	registry[name] = kind{traits: t, new: f}
}

// New rebuilds a job of the named kind from its JSON options.
func New(name string, options json.RawMessage) (Job, error) {
	registryMu.RLock()
	k, ok := registry[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown job kind %q (known: %v)", name, Kinds())
	}
	return k.new(options)
}

// TraitsOf is the registered traits of the named kind; false when no such
// kind is registered.
func TraitsOf(name string) (Traits, bool) {
	registryMu.RLock()
	k, ok := registry[name]
	registryMu.RUnlock()
	return k.traits, ok
}

// PrintsOutput reports whether Results of the named kind carry a command's
// output (Traits.PrintsOutput); false for a kind not registered.
func PrintsOutput(name string) bool {
	t, _ := TraitsOf(name)
	return t.PrintsOutput
}

// NewExpander is the named kind's Expander for options (Traits.Expander),
// or nil when the kind does not expand its set.
func NewExpander(name string, options json.RawMessage) (Expander, error) {
	t, _ := TraitsOf(name)
	if t.Expander == nil {
		return nil, nil
	}
	return t.Expander(options)
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
