// Spares: the tables a sweep grows to its peak in flight (slots, bitsets,
// the timeout and resend queues, the intake's queues, the socket buffers)
// are left to the next sweep of the same Job, so that a watch's rounds
// reuse them rather than each growing its own anew: a round's garbage
// stays small, and the heap's peak does not drift with the rounds.

package icmp

// spare is what a finished sweep leaves its Job.
type spare struct {
	slots    []slot
	bits     []uint64
	free     []uint32
	timeouts ring[timeout]
	resends  ring[resend]
	queue    []item // the intake's queue and the sender's, swapped as it takes
	items    []item
	send     *sendBufs
	recv     [2]*recvBufs // per family
}

// takeSpare hands the Job's spare to a new sweep, or an empty one when
// there is none (the first sweep, or another sweep of this Job runs).
func (j *Job) takeSpare() *spare {
	j.spareMu.Lock()
	defer j.spareMu.Unlock()
	sp := j.spare
	j.spare = nil
	if sp == nil {
		sp = new(spare)
	}
	return sp
}

// putSpare keeps what the finished sweep s grew, emptied, for the next
// one; of two sweeps that ran at once, the one that grew more is kept. No
// goroutine of s may run any more.
func (j *Job) putSpare(s *sweep) {
	sp := s.spare
	clear(s.slots) // targets' names, errors: not kept alive by a spare
	sp.slots, sp.bits, sp.free = s.slots[:0], s.bits[:0], s.free[:0]
	sp.timeouts, sp.resends = s.timeouts, s.resends
	sp.timeouts.head, sp.timeouts.n = 0, 0
	sp.resends.head, sp.resends.n = 0, 0
	sp.queue = clearItems(s.in.q)
	sp.items = clearItems(sp.items)
	for _, rb := range sp.recv {
		if rb != nil {
			rb.out = rb.out[:cap(rb.out)]
			clear(rb.out)
			rb.out = rb.out[:0]
		}
	}
	j.spareMu.Lock()
	defer j.spareMu.Unlock()
	if j.spare == nil || cap(j.spare.slots) < cap(sp.slots) {
		j.spare = sp
	}
}

func clearItems(q []item) []item {
	q = q[:cap(q)]
	clear(q)
	return q[:0]
}

// use gives the new sweep s the spare's tables.
func (sp *spare) use(s *sweep) {
	s.spare = sp
	s.slots, s.bits, s.free = sp.slots, sp.bits, sp.free
	s.timeouts, s.resends = sp.timeouts, sp.resends
	s.in.q = sp.queue
}
