// Package tcp is the "tcp" job kind: a TCP connect check.
//
// Each (host, port) pair is its own target with its own Result: the CLI
// expands the host set by the configured ports with Expand (index =
// hostIndex*len(ports) + portIndex), and Run dials the target's Port. A
// target without a port gets the job's first configured port.
//
// Outcome: status up when the connection is established (RTT = connect time);
// down with class refused (RST), timeout (no answer before the deadline) or
// unreachable (ICMP host/network unreachable); error with class resolve for a
// name that does not resolve, canceled on cancel, local for fanout's own
// failures (out of file descriptors or ephemeral ports).
//
// The connection is closed at once with SO_LINGER 0 (a reset): a sweep of many
// ports would otherwise leave a TIME_WAIT socket per port on this machine.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Kind is the registered name of this job kind.
const Kind = "tcp"

// Config is the tcp job's options, as the registry receives them in JSON.
type Config struct {
	// Ports the sweep checks on every host (see Expand).
	Ports []int `json:"ports"`
}

// Job is a TCP connect check. It is safe for concurrent use.
type Job struct {
	cfg   Config
	ports []uint16
}

var _ job.Job = (*Job)(nil)

// Traits are tcp's: tasks of 128 to 1024 connects, one socket per target
// in flight, a host without a port or user (the ports are the job's, -p,
// for every host: the job expands its set to host x port).
var Traits = job.Traits{
	TaskSize: [2]uint64{128, 1024}, FDsPerTarget: 1,
	// An inventory's ansible_port is a host's port when there is no -p.
	Takes:    target.Takes{VarPort: true, Note: "its ports come from -p"},
	Expander: job.DecodedExpander(Kind, New),
}

func init() {
	job.Register(Kind, Traits, job.Decoded(Kind, New))
}

// New checks cfg: each port in 1-65535. Without ports, every target must
// carry its own (an inventory's ansible_port; see Check).
func New(cfg Config) (*Job, error) {
	j := &Job{cfg: cfg}
	for _, p := range cfg.Ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("tcp: port %d out of range 1-65535", p)
		}
		j.ports = append(j.ports, uint16(p))
	}
	return j, nil
}

// Kind implements job.Job.
func (j *Job) Kind() string { return Kind }

// Check implements job.Checker: without ports of its own (-p), the job
// connects to the port each target carries, and every target must carry
// one.
func (j *Job) Check(set target.Set) error {
	if len(j.ports) > 0 {
		return nil
	}
	for i := uint64(0); i < set.Len(); i++ {
		if t := set.At(i); t.Port == 0 {
			return fmt.Errorf("tcp: no port for %s: give -p PORTS (as in -p 22,80,443), or targets from an inventory with ansible_port", t.Name())
		}
	}
	return nil
}

// Config returns the options the job was built from.
func (j *Job) Config() Config { return j.cfg }

// Ports returns the configured ports.
func (j *Job) Ports() []uint16 { return append([]uint16(nil), j.ports...) }

// Expand is Expand(set, j.Ports()): the (host, port) targets the job visits.
func (j *Job) Expand(set target.Set) target.Set { return Expand(set, j.ports) }

// Run implements job.Job: one connect attempt to t.Addr (or t.Host resolved)
// on t.Port.
func (j *Job) Run(ctx context.Context, t target.Target) job.Result {
	start := time.Now()
	if t.Port == 0 && len(j.ports) == 0 {
		r := job.For(t, Kind)
		r.Start, r.End = start, time.Now()
		r.Status, r.Class, r.Error = job.Error, job.ClassLocal, "no port: give -p PORTS, or a target that carries one"
		return r
	}
	if t.Port == 0 {
		t.Port = j.ports[0]
	}
	addr, err := job.Resolve(ctx, t)
	if err != nil {
		return job.ResolveFailed(ctx, t, Kind, start, err)
	}
	t.Addr = addr
	r := job.For(t, Kind)
	r.Start = start
	if s, c, done := job.CtxOutcome(ctx); done {
		r.Status, r.Class, r.Error, r.End = s, c, "not started: "+ctx.Err().Error(), time.Now()
		return r
	}
	var d net.Dialer
	ap := netip.AddrPortFrom(addr, t.Port)
	dialStart := time.Now()
	conn, err := d.DialContext(ctx, "tcp", ap.String())
	r.End = time.Now()
	if err != nil {
		r.Status, r.Class = classify(ctx, err)
		r.Error = err.Error()
		if r.Class == job.ClassTimeout && ctx.Err() != nil {
			r.Error = job.TimedOut(ctx, "connect to "+ap.String())
		}
		return r
	}
	r.RTT = r.End.Sub(dialStart)
	r.Status = job.Up
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
	return r
}

// classify maps a dial error to a status and class. The kernel's answer
// comes first: a refusal that arrives as the deadline passes (or as the
// sweep is cancelled) is still a refusal; the context only explains an
// error that carries no errno.
func classify(ctx context.Context, err error) (job.Status, job.Class) {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED, syscall.ECONNRESET:
			return job.Down, job.ClassRefused
		case syscall.ETIMEDOUT:
			return job.Down, job.ClassTimeout
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN:
			return job.Down, job.ClassUnreachable
		case syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM,
			syscall.EACCES, syscall.EPERM:
			return job.Error, job.ClassLocal
		}
	}
	if s, c, done := job.CtxOutcome(ctx); done {
		return s, c
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return job.Down, job.ClassTimeout
	}
	return job.Error, job.ClassLocal
}

// ParsePorts reads a port list: numbers and ranges separated by commas
// ("22,80,443,8000-8010"). Duplicates are dropped; the order is kept.
func ParsePorts(s string) ([]uint16, error) {
	var ports []uint16
	seen := make(map[uint16]bool)
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("ports %q: empty item (want e.g. 22,80,443,8000-8010)", s)
		}
		loS, hiS, isRange := strings.Cut(item, "-")
		lo, err := port(s, loS)
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = port(s, hiS); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, fmt.Errorf("ports %q: range %s is backwards", s, item)
			}
		}
		for p := lo; ; p++ {
			if !seen[uint16(p)] {
				seen[uint16(p)] = true
				ports = append(ports, uint16(p))
			}
			if p == hi {
				break
			}
		}
	}
	return ports, nil
}

func port(input, s string) (int, error) {
	s = strings.TrimSpace(s)
	p, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("ports %q: %q is not a port number", input, s)
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("ports %q: port %d out of range 1-65535", input, p)
	}
	return p, nil
}

// Expand is the lazy product of set and ports: target i is host
// i/len(ports) on port ports[i%len(ports)], so all ports of a host are
// visited together in canonical order (a shuffled order spreads them). With
// no ports, set is returned as it is.
func Expand(set target.Set, ports []uint16) target.Set {
	if len(ports) == 0 {
		return set
	}
	return product{set, append([]uint16(nil), ports...)}
}

type product struct {
	set   target.Set
	ports []uint16
}

func (p product) Len() uint64 { return p.set.Len() * uint64(len(p.ports)) }

func (p product) At(i uint64) target.Target {
	n := uint64(len(p.ports))
	t := p.set.At(i / n)
	t.Index = i
	t.Port = p.ports[i%n]
	return t
}
