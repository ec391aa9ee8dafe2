package job

import (
	"encoding/json"
	"math"
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

// wire is the JSON form of Result. Durations are float milliseconds.
type wire struct {
	Index     uint64   `json:"index"`
	Host      string   `json:"host"`
	Addr      string   `json:"addr,omitempty"`
	Port      int      `json:"port,omitempty"`
	Job       string   `json:"job"`
	Status    Status   `json:"status"`
	Class     Class    `json:"class,omitempty"`
	Error     string   `json:"error,omitempty"`
	RTTMs     *float64 `json:"rtt_ms,omitempty"`
	Sent      int      `json:"sent,omitempty"`
	Recv      int      `json:"recv,omitempty"`
	Loss      *float64 `json:"loss,omitempty"`
	RTTMinMs  *float64 `json:"rtt_min_ms,omitempty"`
	RTTAvgMs  *float64 `json:"rtt_avg_ms,omitempty"`
	RTTMaxMs  *float64 `json:"rtt_max_ms,omitempty"`
	RTTSdMs   *float64 `json:"rtt_stddev_ms,omitempty"`
	ExitCode  *int     `json:"exit_code,omitempty"`
	Stdout    *string  `json:"stdout,omitempty"`
	Stderr    *string  `json:"stderr,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`
	Attempts  int      `json:"attempts"`
	Start     string   `json:"start"`
	End       string   `json:"end"`
	Worker    string   `json:"worker,omitempty"`
}

func ms(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	v := math.Round(float64(d)/1e3) / 1e3 // microsecond precision
	return &v
}

func str(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func unms(p *float64) time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(math.Round(*p * 1e6))
}

// MarshalJSON writes the documented JSON form.
func (r Result) MarshalJSON() ([]byte, error) {
	w := wire{
		Index: r.Index, Host: r.Host, Addr: r.Addr, Port: r.Port, Job: r.Job,
		Status: r.Status, Class: r.Class, Error: r.Error,
		RTTMs: ms(r.RTT), Sent: r.Sent, Recv: r.Recv,
		RTTMinMs: ms(r.RTTMin), RTTAvgMs: ms(r.RTTAvg), RTTMaxMs: ms(r.RTTMax), RTTSdMs: ms(r.RTTStddev),
		ExitCode: r.ExitCode, Stdout: str(r.Stdout), Stderr: str(r.Stderr),
		Truncated: r.Truncated, Attempts: r.Attempts,
		Start: r.Start.UTC().Format(time.RFC3339Nano), End: r.End.UTC().Format(time.RFC3339Nano),
		Worker: r.Worker,
	}
	if r.Sent > 0 {
		l := math.Round(r.Loss()*1e4) / 1e4
		w.Loss = &l
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the documented JSON form back.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Result{
		Index: w.Index, Host: w.Host, Addr: w.Addr, Port: w.Port, Job: w.Job,
		Status: w.Status, Class: w.Class, Error: w.Error,
		RTT: unms(w.RTTMs), Sent: w.Sent, Recv: w.Recv,
		RTTMin: unms(w.RTTMinMs), RTTAvg: unms(w.RTTAvgMs), RTTMax: unms(w.RTTMaxMs), RTTStddev: unms(w.RTTSdMs),
		ExitCode: w.ExitCode, Truncated: w.Truncated, Attempts: w.Attempts, Worker: w.Worker,
	}
	if w.Stdout != nil {
		r.Stdout = []byte(*w.Stdout)
	}
	if w.Stderr != nil {
		r.Stderr = []byte(*w.Stderr)
	}
	var err error
	if w.Start != "" {
		if r.Start, err = time.Parse(time.RFC3339Nano, w.Start); err != nil {
			return err
		}
	}
	if w.End != "" {
		if r.End, err = time.Parse(time.RFC3339Nano, w.End); err != nil {
			return err
		}
	}
	return nil
}
