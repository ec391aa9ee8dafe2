package ssh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/job"
)

// A session runs the command in one session channel. It drives the channel
// itself rather than through ssh.Session: the caller's goroutine reads
// stdout then stderr (a goroutine reads stderr meanwhile only when it piles
// up), and the server's requests are answered by one goroutine for all the
// job's sessions, with no per-stream copy buffer.
// A goroutine parked for the whole command keeps its stack (2 KB at least,
// doubled by a deep or wide call chain): with 10,000 sessions in flight,
// every KB a session is 10 MB. So the state lives on the heap, the frames
// that stay parked (RunInto, follow, read, readFrom) are small, the writes
// are made by the short-lived setup goroutine (see Job.begin), and stderr
// gets a goroutine only when it must.

// session is one command's state.
type session struct {
	st       sessionState
	stdout   bounded
	stderr   bounded
	timedOut atomic.Bool
	stopCtx  func() bool
	timer    *time.Timer // the command timeout; nil = none
	conn     ssh.Conn    // set by start with ch
	link     *link       // conn's, for the pool
	key      string      // the pool's key for the host (KeepConnections)
	ch       ssh.Channel
	err      error // from start: the command did not start

	// The bytes read on the connection when the command started; those
	// since, less stdout's, are mostly stderr's (see watchStderr).
	wire     *countingConn
	wireBase int64
	// stderrRead is set by whoever reads stderr: a goroutine started by
	// watchStderr (stderrDone, stderrErr) or, at stdout's end, read.
	stderrRead atomic.Bool
	stderrDone sync.WaitGroup
	stderrErr  error
}

// start opens the session channel and asks for the command. It sets s.ch
// and s.conn once the channel is open (before the poller sees s); a nil
// s.ch means r is filled already.
func (j *Job) start(ctx context.Context, l *link, s *session, r *job.Result) error {
	ch, creqs, err := l.conn.OpenChannel("session", nil)
	if err != nil {
		fail(r, fmt.Errorf("open session: %w", err))
		return err
	}
	return j.exec(ctx, l, s, ch, creqs)
}

// exec starts the command on the open session channel ch.
func (j *Job) exec(ctx context.Context, l *link, s *session, ch ssh.Channel, creqs <-chan *ssh.Request) error {
	s.ch, s.conn, s.link = ch, l.conn, l
	s.stdout.max, s.stderr.max = j.cfg.MaxOutput, j.cfg.MaxOutput
	st := &s.st
	st.status, st.chans, st.reqs, st.creqs = -1, l.chans, l.reqs, creqs
	st.poller, st.sess = &j.poll, s
	s.wire, s.wireBase = l.wire, l.wire.read.Load()
	j.poll.add(st)
	nudge := s.nudge
	s.wire.nudge.Store(&nudge)

	// The deadline and the command timeout cut the connection: every read
	// then returns, and the session is closed with it.
	s.stopCtx = context.AfterFunc(ctx, func() { l.conn.Close() })
	if d := j.cfg.CommandTimeout; d > 0 {
		s.timer = time.AfterFunc(d, func() { s.timedOut.Store(true); l.conn.Close() })
	}

	ok, err := ch.SendRequest("exec", true, j.execReq)
	if err == nil && !ok {
		err = errors.New("the server refused to run the command")
	}
	if err == nil {
		if j.cfg.Stdin != nil {
			go func() {
				_, _ = ch.Write(j.cfg.Stdin)
				_ = ch.CloseWrite()
			}()
		} else {
			_ = ch.CloseWrite() // EOF when the command already ended: fine
		}
	}
	return err
}

// read reads stdout to the channel's end, then stderr, unless a goroutine
// started by watchStderr reads it: a host that fills the channel's window
// with stderr would stall stdout. Most commands print little on stderr, and
// a goroutine per session only for it would be 2 KB of stack and more while
// the command runs.
func (s *session) read(ch ssh.Channel) error {
	err := s.stdout.readFrom(ch)
	var err2 error
	if s.stderrRead.CompareAndSwap(false, true) {
		err2 = s.stderr.readFrom(ch.Stderr())
	} else {
		s.stderrDone.Wait()
		err2 = s.stderrErr
	}
	if err == nil {
		err = err2
	}
	return err
}

// stderrPile is how many bytes the connection may bring that stdout did
// not take (stderr, mostly, and a little framing) before stderr gets a
// reader of its own; far below the window x/crypto grants (2 MB).
const stderrPile = 64 << 10

// nudge is called by the connection's reader as bytes come (countingConn):
// when what was read is not all stdout's, it polls the session at once, so
// that a server flooding it with stderr or requests is served as fast as it
// sends, not every pollEvery with x/crypto's buffers filling meanwhile (the
// channel's window, 2 MB; its queues, up to 16 MB).
func (s *session) nudge() {
	if s.wire.read.Load()-s.wireBase-s.stdout.took.Load()-s.stderr.took.Load() >= stderrPile {
		s.st.poll()
	}
}

// watchStderr, called by the poller, starts a goroutine reading stderr
// when it piles up while stdout is read.
func (s *session) watchStderr() {
	if s.stderrRead.Load() || s.wire.read.Load()-s.wireBase-s.stdout.took.Load() < stderrPile {
		return
	}
	s.stderrDone.Add(1) // before the swap: read waits only once it fails
	if !s.stderrRead.CompareAndSwap(false, true) {
		s.stderrDone.Done()
		return
	}
	go s.readStderr()
}

func (s *session) readStderr() {
	defer s.stderrDone.Done()
	s.stderrErr = s.stderr.readFrom(s.ch.Stderr())
}

// finish waits for the exit status, closes the session and fills r.
func (j *Job) finish(ctx context.Context, s *session, ch ssh.Channel, err error, r *job.Result) {
	s.st.stop(err == nil) // the exit status comes before the channel closes
	s.wire.nudge.Store(nil)
	ch.Close()
	// The command did not start, so read did not run: a stderr reader the
	// poller started meanwhile (it starts none once stopped) ends with the
	// connection, before its bytes are taken.
	if s.err != nil && !s.stderrRead.CompareAndSwap(false, true) {
		s.conn.Close()
		s.stderrDone.Wait()
	}
	s.stopCtx()
	if s.timer != nil {
		s.timer.Stop()
	}
	r.Stdout, r.Stderr = s.stdout.bytes(), s.stderr.bytes()
	r.Truncated = s.stdout.truncated || s.stderr.truncated
	switch {
	case ctx.Err() != nil:
		fail(r, ctxErr(ctx, "command"))
		return
	case s.timedOut.Load():
		fail(r, &timeoutError{what: "command", after: j.cfg.CommandTimeout})
		return
	case err != nil:
		fail(r, fmt.Errorf("session: %w", err))
		return
	}
	status, signal, msg := s.st.status, s.st.signal, s.st.msg // polling has stopped
	switch {
	case status == 0:
		code := 0
		r.ExitCode, r.Status = &code, job.Up
	case status > 0:
		r.ExitCode = &status
		r.Status, r.Class, r.Error = job.Down, job.ClassExit, "exit status "+strconv.Itoa(status)
	case signal != "":
		code := 128 + signalNumber(signal)
		r.ExitCode = &code
		r.Status, r.Class, r.Error = job.Down, job.ClassExit, "killed by signal "+signal
		if msg != "" {
			r.Error += ": " + msg
		}
	default:
		fail(r, errors.New("the server sent no exit status"))
	}
}

// pollEvery is how often the server's requests are answered while the
// command runs. A keepalive waits that long at most (OpenSSH allows
// ClientAliveInterval × ClientAliveCountMax, seconds); x/crypto queues 16
// requests of each kind meanwhile.
const pollEvery = 500 * time.Millisecond

// A hostile server may send requests and channel opens without end, each
// up to x/crypto's packet bound (256 KB). Two things keep what a session
// holds for them bounded. maxReplies bounds the replies (and refusals of
// channels) in flight: each is written by a goroutine, so that the poller
// never waits on one host, and a server that stops reading would otherwise
// pile up a goroutine, and its request, per request it sends; past the
// bound, messages stay queued and the connection stalls, as flow control
// would. And a poll that finds floodPoll messages queued (an honest server
// sends an exit status, and a keepalive every few seconds at most) gives
// the session a goroutine of its own (drain) that takes them as they come:
// x/crypto's queues then stay nearly empty instead of full (16 messages
// each of the session's requests, the connection's and its channel opens,
// and 16 packets under them: up to 16 MB).
const (
	maxReplies = 4
	floodPoll  = 8
)

// sessionState is what the server told about the session, and the queues
// of its requests (a nil queue has ended).
type sessionState struct {
	mu      sync.Mutex
	status  int // -1 until exit-status
	signal  string
	msg     string
	chans   <-chan ssh.NewChannel // channel opens on the connection: refused
	reqs    <-chan *ssh.Request   // global requests: "no"
	creqs   <-chan *ssh.Request   // the session's: exit-status, exit-signal; others "no"
	poller  *poller
	sess    *session // the session st belongs to
	stopped bool

	// slots holds a token per reply in flight (made on the first).
	slots chan struct{}
	// draining: a goroutine of its own serves the session (drain);
	// quit ends it early, drained closes when it returns.
	draining bool
	quit     chan struct{}
	drained  chan struct{}
}

// poller answers the requests of every running session of a job, every
// pollEvery, from one goroutine that runs while sessions do: no goroutine
// (nor timer) per session waits for requests that seldom come.
type poller struct {
	mu       sync.Mutex
	sessions map[*sessionState]struct{}
	stop     chan struct{} // non-nil while a loop runs; closed when the last session ends
}

func (p *poller) add(st *sessionState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions == nil {
		p.sessions = map[*sessionState]struct{}{}
	}
	p.sessions[st] = struct{}{}
	if p.stop == nil {
		p.stop = make(chan struct{})
		go p.loop(p.stop)
	}
}

// remove forgets st; the last session's end stops the loop at once, so no
// goroutine of the job outlives its last Run.
func (p *poller) remove(st *sessionState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.sessions, st)
	if len(p.sessions) == 0 && p.stop != nil {
		close(p.stop)
		p.stop = nil
	}
}

// loop polls the sessions every pollEvery until stop is closed.
func (p *poller) loop(stop <-chan struct{}) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var batch []*sessionState
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for st := range p.sessions {
			batch = append(batch, st)
		}
		p.mu.Unlock()
		for _, st := range batch {
			st.poll()
		}
		clear(batch) // ended sessions must not stay reachable
		batch = batch[:0]
	}
}

// poll answers what is queued without waiting, as far as reply slots
// allow, and hands a flooded session to a goroutine of its own.
func (st *sessionState) poll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopped {
		return
	}
	if !st.draining {
		n := 0
		for (st.slots == nil || len(st.slots) < cap(st.slots)) && st.serve(false, nil) {
			n++
		}
		if n >= floodPoll {
			st.draining = true
			st.quit, st.drained = make(chan struct{}), make(chan struct{})
			go st.drain()
		}
	}
	st.sess.watchStderr()
}

// drain serves st's messages as they come until the session's channel
// closes (which brings its exit status first) or quit.
func (st *sessionState) drain() {
	defer close(st.drained)
	for st.creqs != nil && st.serve(true, st.quit) {
	}
}

// stop ends the polling; with wait, it then serves requests until the
// session's end, which brings its exit status.
func (st *sessionState) stop(wait bool) {
	st.mu.Lock() // waits for a poll under way
	st.stopped = true
	draining := st.draining
	st.mu.Unlock()
	st.poller.remove(st)
	if draining {
		if !wait {
			close(st.quit)
		}
		<-st.drained
		return
	}
	// Only this goroutine touches st from here on.
	for wait && st.creqs != nil && st.serve(true, nil) {
	}
}

// serve handles one queued message, waiting for it when block is set (until
// quit). It reports whether it handled one (false: nothing queued, every
// queue ended, or quit). Its caller holds st.mu, or is the one goroutine
// serving st (drain, or stop once polling has stopped). Without block, a
// reply slot must be free.
func (st *sessionState) serve(block bool, quit <-chan struct{}) bool {
	if st.chans == nil && st.reqs == nil && st.creqs == nil {
		return false
	}
	var (
		nc   ssh.NewChannel
		req  *ssh.Request
		ok   bool
		from int // 0 channel opens, 1 global requests, 2 the session's
	)
	if block {
		select {
		case nc, ok = <-st.chans:
		case req, ok = <-st.reqs:
			from = 1
		case req, ok = <-st.creqs:
			from = 2
		case <-quit:
			return false
		}
	} else {
		select {
		case nc, ok = <-st.chans:
		case req, ok = <-st.reqs:
			from = 1
		case req, ok = <-st.creqs:
			from = 2
		default:
			return false
		}
	}
	switch {
	case !ok && from == 0:
		st.chans = nil
	case !ok && from == 1:
		st.reqs = nil
	case !ok:
		st.creqs = nil
	case from == 0:
		if slots, ok := st.slot(quit); ok {
			go reject(nc, slots) // a write can block on one host: never the poller
		}
	default:
		if from == 2 {
			st.record(req)
		}
		if req.WantReply {
			if slots, ok := st.slot(quit); ok {
				req.Payload = nil // not needed to answer: do not keep it meanwhile
				go refuse(req, slots)
			}
		}
	}
	return true
}

// slot takes a reply slot, waiting for one (until quit) where the caller
// may wait; false means the message goes unanswered: the session is ending.
func (st *sessionState) slot(quit <-chan struct{}) (chan struct{}, bool) {
	if st.slots == nil {
		st.slots = make(chan struct{}, maxReplies)
	}
	select {
	case st.slots <- struct{}{}:
		return st.slots, true
	case <-quit:
		return nil, false
	}
}

func reject(nc ssh.NewChannel, slots <-chan struct{}) {
	_ = nc.Reject(ssh.Prohibited, "fanout accepts no channel")
	<-slots
}

func refuse(req *ssh.Request, slots <-chan struct{}) {
	_ = req.Reply(false, nil)
	<-slots
}

// record notes an exit status or signal.
func (st *sessionState) record(req *ssh.Request) {
	switch req.Type {
	case "exit-status":
		if len(req.Payload) >= 4 {
			st.status = int(binary.BigEndian.Uint32(req.Payload))
		}
	case "exit-signal":
		var sig struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}
		if ssh.Unmarshal(req.Payload, &sig) == nil {
			st.signal, st.msg = sig.Signal, sig.Error
		}
	}
}

func signalNumber(s string) int {
	n := map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9,
		"SEGV": 11, "PIPE": 13, "ALRM": 14, "TERM": 15, "USR1": 10, "USR2": 12}[s]
	return n
}

// bounded keeps the first max bytes of a stream and counts the rest.
type bounded struct {
	buf       []byte
	max       int
	truncated bool
	took      atomic.Int64 // bytes read, kept or not
}

// discardPool holds the buffers the bytes past the bound are read into.
var discardPool = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

// readFrom reads r to EOF into b, growing b.buf as data comes (most
// commands print a few bytes, many nothing: a small buffer first, held
// while the command runs, doubled when full).
func (b *bounded) readFrom(r io.Reader) error {
	for {
		if len(b.buf) < b.max {
			if len(b.buf) == cap(b.buf) {
				b.buf = slices.Grow(b.buf, min(max(32, cap(b.buf)), b.max-len(b.buf)))
			}
			n, err := r.Read(b.buf[len(b.buf):min(cap(b.buf), b.max)])
			b.buf = b.buf[:len(b.buf)+n]
			b.took.Add(int64(n))
			if err != nil {
				return eof(err)
			}
			continue
		}
		// Past the bound: keep draining, a blocked remote would hang.
		p := discardPool.Get().(*[]byte)
		n, err := r.Read(*p)
		discardPool.Put(p)
		b.took.Add(int64(n))
		if n > 0 {
			b.truncated = true
		}
		if err != nil {
			return eof(err)
		}
	}
}

func eof(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

func (b *bounded) bytes() []byte {
	if b.buf == nil {
		return []byte{}
	}
	return b.buf
}
