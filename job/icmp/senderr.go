// Send errors: why a request could not leave this machine, what that makes
// of its target, and settling the request at once (failed). Run by the
// sender only.

package icmp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/fanout/fanout/job"
)

// sendError is why an echo request could not leave this machine, and what
// that makes of its target.
type sendError struct {
	v6     bool
	err    error // the errno, without sendmmsg's wrapping
	why    string
	status job.Status
	class  job.Class
}

func (e *sendError) Error() string {
	fam := "IPv4"
	if e.v6 {
		fam = "IPv6"
	}
	if e.why == "" {
		return fmt.Sprintf("send %s echo request: %v", fam, e.err)
	}
	return fmt.Sprintf("send %s echo request: %v (%s)", fam, e.err, e.why)
}

func (e *sendError) Unwrap() error { return e.err }

// sendFailure classifies err, the kernel's refusal to send an echo request
// to dst. The route or a firewall on this machine said no:
//
//   - ENETUNREACH, EHOSTUNREACH (an unreachable route, or none), ENETDOWN,
//     EHOSTDOWN, EADDRNOTAVAIL: down, unreachable; an error of class local
//     when this machine has no address of the family at all;
//   - EPERM (a firewall rule on the output path dropped or rejected it) and
//     EACCES (a prohibit route, or a broadcast address): down, refused;
//   - anything else (EINVAL from a blackhole route, EMSGSIZE, ...): an
//     error, class local.
//
// It runs on the sender only.
func (s *sweep) sendFailure(v6 bool, dst netip.Addr, err error) *sendError {
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	e := &sendError{v6: v6, err: err, status: job.Error, class: job.ClassLocal}
	switch {
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETDOWN), errors.Is(err, syscall.EHOSTDOWN),
		errors.Is(err, syscall.EADDRNOTAVAIL):
		if !s.machineHas(v6) {
			e.why = "this machine has no " + famName(v6) + " address"
			if v6 {
				e.why += "; is net.ipv6.conf.all.disable_ipv6 set?"
			}
			return e
		}
		e.status, e.class = job.Down, job.ClassUnreachable
	case errors.Is(err, syscall.EPERM):
		e.status, e.class = job.Down, job.ClassRefused
		e.why = "a firewall rule on this machine dropped or rejected it"
	case errors.Is(err, syscall.EACCES):
		e.status, e.class = job.Down, job.ClassRefused
		e.why = "a prohibit route, or a broadcast address"
	case errors.Is(err, syscall.EINVAL):
		if v6 && dst.Zone() == "" && (dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast()) {
			e.why = "a link-local address needs a zone, as in fe80::1%eth0"
		} else {
			e.why = "a blackhole route?"
		}
	}
	return e
}

// failed records that request o could not leave: its target's request is
// resolved now, with err, rather than timed out later.
func (s *sweep) failed(o outgoing, err *sendError) {
	s.stats.sendErrors.Add(1)
	var out []job.Result
	s.mu.Lock()
	if sl := &s.slots[o.slot]; sl.live && sl.t.Index == o.p.index && !testSet(s.resolvedBits(o.slot), o.p.num) {
		if sl.sendErr == nil {
			sl.sendErr = err
		}
		sl.fails++
		out = s.settle(o.slot, out)
	}
	s.mu.Unlock()
	s.deliver(out)
}

// machineHas reports whether any interface of this machine has an address
// of the family, asked once per sweep; true when it cannot tell.
func (s *sweep) machineHas(v6 bool) bool {
	fam := family(v6)
	if s.hasAddr[fam] == 0 {
		s.hasAddr[fam] = 1
		if addrs, err := net.InterfaceAddrs(); err == nil && !anyOfFamily(addrs, v6) {
			s.hasAddr[fam] = -1
		}
	}
	return s.hasAddr[fam] > 0
}

func anyOfFamily(addrs []net.Addr, v6 bool) bool {
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if ok && (n.IP.To4() == nil) == v6 {
			return true
		}
	}
	return false
}

func famName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}
