package job

import (
	"time"

	"github.com/fanout/fanout/target"
)

// Status is the outcome of a target.
type Status string

const (
	// Up: the target answered as hoped (echo reply, TCP connect, exit 0).
	Up Status = "up"
	// Down: the target answered negatively or not at all (timeout, refused,
	// unreachable, non-zero exit).
	Down Status = "down"
	// Error: the probe itself could not be made (name did not resolve, auth
	// failed, host key rejected, local failure).
	Error Status = "error"
)

// Class says why a target is not up. Empty when it is.
type Class string

const (
	ClassNone        Class = ""
	ClassTimeout     Class = "timeout"
	ClassRefused     Class = "refused"
	ClassUnreachable Class = "unreachable"
	ClassResolve     Class = "resolve"
	ClassAuth        Class = "auth"
	ClassHostKey     Class = "hostkey"
	ClassExit        Class = "exit"
	ClassProto       Class = "proto"
	ClassCanceled    Class = "canceled"
	ClassLocal       Class = "local" // fanout's own side failed (EMFILE, exec not found, ...)
)

// Retryable reports whether a fresh attempt may succeed where this one failed.
func (c Class) Retryable() bool { return c == ClassTimeout || c == ClassRefused }

// Result is the one envelope every job kind fills. Its JSON form is a public
// contract (see README "Output schema"): fields are added, never renamed.
// A field added here is added to the table in fields.go too, which writes
// the JSON and CSV forms, the store's columns and the cluster's wire form
// (TestResultFields, in each of their packages, fails until it is).
type Result struct {
	Index uint64 // the target's index in the sweep's canonical order
	Host  string // the target as given (name or address)
	Addr  string // the address probed, when known
	Port  int    // the port probed, when the job has one

	Job    string // job kind
	Status Status
	Class  Class
	Error  string // human-readable reason, with Class

	RTT    time.Duration // connect / reply time of the (last successful) attempt
	Sent   int           // probes sent (ICMP count, ...), 0 when not applicable
	Recv   int           // replies received
	RTTMin time.Duration
	RTTAvg time.Duration
	RTTMax time.Duration
	// RTTStddev is the population standard deviation of the replies' RTTs
	// (ping --count), as ping(8)'s mdev.
	RTTStddev time.Duration

	ExitCode  *int // exec / ssh
	Stdout    []byte
	Stderr    []byte
	Truncated bool // Stdout or Stderr was cut at the output bound

	Attempts int
	Start    time.Time
	End      time.Time
	Worker   string // which worker ran it (cluster mode), empty locally
}

// For fills the Result's target fields from t.
func For(t target.Target, kind string) Result {
	r := Result{Index: t.Index, Host: t.Name(), Job: kind}
	if t.Addr.IsValid() {
		r.Addr = t.Addr.String()
	}
	if t.Port != 0 {
		r.Port = int(t.Port)
	}
	return r
}

// Loss is the fraction of probes without a reply, or 0 when none were sent.
func (r Result) Loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 1 - float64(r.Recv)/float64(r.Sent)
}

// loss is the Loss field of the JSON and CSV forms: none when nothing was sent.
func (r *Result) loss() (float64, bool) { return r.Loss(), r.Sent > 0 }
