// Package icmp is the "ping" job kind: native ICMP echo sweeps, IPv4 and
// IPv6, one socket per address family, one sender, one receiver per socket
// and a reaper, with state only for targets in flight.
//
// Replies are counted only when the keyed check value in their payload
// verifies (see packet.go), so stray, late, duplicate, forged or another
// process's replies never are; they are classified in Stats instead.
package icmp

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Kind is the registered name of this job kind.
const Kind = "ping"

// Defaults, as ping(8) has them.
const (
	DefaultCount    = 1
	DefaultInterval = time.Second
	DefaultTimeout  = time.Second
	// MaxCount bounds --count so a probe number fits the payload field.
	MaxCount = 65535
)

// Config is the job's JSON options.
type Config struct {
	Count    int           `json:"count,omitempty"`       // echo requests per target; 0 = 1
	Interval time.Duration `json:"interval_ns,omitempty"` // between a target's requests; 0 = 1s
	// Timeout is how long each request waits for its reply; 0 takes the
	// engine's per-attempt timeout, else 1s.
	Timeout     time.Duration `json:"timeout_ns,omitempty"`
	Rate        float64       `json:"rate,omitempty"`         // echo requests per second; 0 = unlimited
	PayloadSize int           `json:"payload_size,omitempty"` // echo data bytes; 0 = 32 (the minimum)
	Socket      string        `json:"socket,omitempty"`       // "" (automatic), "raw" or "dgram"
}

// Job sends ICMP echo requests. It implements job.Job and job.Batcher.
type Job struct {
	cfg   Config
	stats counters

	spareMu sync.Mutex
	spare   *spare // what the last sweep grew, for the next (spare.go)
}

var (
	_ job.Job     = (*Job)(nil)
	_ job.Batcher = (*Job)(nil)
)

// Traits are ping's: large tasks (one socket per sweep sends them fast),
// no file per target, a host or address only.
var Traits = job.Traits{TaskSize: [2]uint64{4096, 4096}}

func init() {
	job.Register(Kind, Traits, func(options json.RawMessage) (job.Job, error) {
		var c Config
		if err := job.DecodeOptions(Kind, options, &c); err != nil {
			return nil, err
		}
		return New(c)
	})
}

// New validates c and returns the job.
func New(c Config) (*Job, error) {
	switch {
	case c.Count < 0 || c.Count > MaxCount:
		return nil, fmt.Errorf("ping count %d: want 1 to %d", c.Count, MaxCount)
	case c.Interval < 0:
		return nil, fmt.Errorf("ping interval %v: must not be negative", c.Interval)
	case c.Timeout < 0:
		return nil, fmt.Errorf("ping timeout %v: must not be negative", c.Timeout)
	case c.Rate < 0:
		return nil, fmt.Errorf("ping rate %v: must not be negative", c.Rate)
	case c.PayloadSize != 0 && (c.PayloadSize < minPayload || c.PayloadSize > 65000):
		return nil, fmt.Errorf("ping payload size %d: want %d to 65000 bytes", c.PayloadSize, minPayload)
	case c.Socket != SocketAuto && c.Socket != SocketRaw && c.Socket != SocketDgram:
		return nil, fmt.Errorf("ping socket %q: want %q, %q or empty (automatic)", c.Socket, SocketRaw, SocketDgram)
	}
	if c.Count == 0 {
		c.Count = DefaultCount
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = minPayload
	}
	return &Job{cfg: c}, nil
}

// Kind is "ping".
func (j *Job) Kind() string { return Kind }

// Config is the job's configuration with defaults filled in.
func (j *Job) Config() Config { return j.cfg }

// Check reports, before any traffic, whether this job can open its IPv4
// socket; the error (a *SocketError) says what would fix it.
func (j *Job) Check() error { return Check(j.cfg.Socket) }

// Stats classifies every ICMP message the job's sweeps received, and what
// they sent. Only Replies were counted toward a target.
type Stats struct {
	Sent        uint64 // echo requests written
	SendErrors  uint64 // echo requests the kernel refused to send
	Replies     uint64 // verified replies counted toward a target
	Duplicate   uint64 // verified replies to a request already answered
	Late        uint64 // verified replies after their request timed out or their target finished
	WrongSource uint64 // verified replies from another address than the one probed
	Unreachable uint64 // ICMP errors (unreachable, time exceeded) quoting one of our requests
	Foreign     uint64 // ICMP messages that are not ours (other processes, forged, mangled)
}

type counters struct {
	sent, sendErrors, replies, duplicate, late, wrongSource, unreachable, foreign atomic.Uint64
}

// Stats returns the counters summed over every sweep this job ran.
func (j *Job) Stats() Stats {
	c := &j.stats
	return Stats{
		Sent: c.sent.Load(), SendErrors: c.sendErrors.Load(), Replies: c.replies.Load(),
		Duplicate: c.duplicate.Load(), Late: c.late.Load(), WrongSource: c.wrongSource.Load(),
		Unreachable: c.unreachable.Load(), Foreign: c.foreign.Load(),
	}
}

// Run pings one target (Count requests) through the batch machinery.
func (j *Job) Run(ctx context.Context, t target.Target) job.Result {
	in := make(chan target.Target, 1)
	in <- t
	close(in)
	var (
		r   job.Result
		got bool
	)
	start := time.Now()
	cfg := job.BatchConfig{Concurrency: 1}
	if d, ok := ctx.Deadline(); ok && j.cfg.Timeout == 0 {
		// The attempt's deadline bounds the wait for a single reply.
		cfg.Timeout = time.Until(d)
	}
	err := j.RunBatch(ctx, in, cfg, func(res job.Result) { r, got = res, true })
	if got {
		return r
	}
	r = job.For(t, Kind)
	r.Start, r.End, r.Attempts = start, time.Now(), 1
	if st, c, done := job.CtxOutcome(ctx); done {
		r.Status, r.Class, r.Error = st, c, ctx.Err().Error()
		return r
	}
	r.Status, r.Class = job.Error, job.ClassLocal
	if err != nil {
		r.Error = err.Error()
	}
	return r
}
