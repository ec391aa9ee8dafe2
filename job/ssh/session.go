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

// exec runs the command in one session channel of l. It drives the channel
// itself rather than through ssh.Session: one goroutine serves the
// connection's requests and the session's, one reads stderr, and the
// caller's reads stdout, with no per-stream copy buffer. With 10,000
// sessions in flight, that is the difference between 100 KB and a few tens
// of KB per session.
func (j *Job) exec(ctx context.Context, l *link, r job.Result) job.Result {
	st := &sessionState{status: -1, done: make(chan struct{})}
	ch, creqs, err := l.conn.OpenChannel("session", nil)
	if err != nil {
		go serve(l, nil, st)
		return fail(r, fmt.Errorf("open session: %w", err))
	}
	go serve(l, creqs, st)
	defer ch.Close()

	// The deadline and the command timeout cut the connection: every read
	// below then returns, and the session is closed with it.
	var timedOut atomic.Bool
	stopCtx := context.AfterFunc(ctx, func() { l.conn.Close() })
	defer stopCtx()
	if d := j.cfg.CommandTimeout; d > 0 {
		tm := time.AfterFunc(d, func() { timedOut.Store(true); l.conn.Close() })
		defer tm.Stop()
	}

	ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{j.cfg.Command}))
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
	stdout := &bounded{max: j.cfg.MaxOutput}
	stderr := &bounded{max: j.cfg.MaxOutput}
	if err == nil {
		errDone := make(chan error, 1)
		go func() { errDone <- stderr.readFrom(ch.Stderr()) }()
		err = stdout.readFrom(ch)
		if err2 := <-errDone; err == nil {
			err = err2
		}
		if err == nil {
			<-st.done // the exit status comes before the channel closes
		}
	}
	r.Stdout, r.Stderr = stdout.bytes(), stderr.bytes()
	r.Truncated = stdout.truncated || stderr.truncated
	switch {
	case ctx.Err() != nil:
		return fail(r, ctxErr(ctx, "command"))
	case timedOut.Load():
		return fail(r, &timeoutError{what: "command", after: j.cfg.CommandTimeout})
	case err != nil:
		return fail(r, fmt.Errorf("session: %w", err))
	}
	st.mu.Lock()
	status, signal, msg := st.status, st.signal, st.msg
	st.mu.Unlock()
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
		return fail(r, errors.New("the server sent no exit status"))
	}
	return r
}

// sessionState is what the server told about the session.
type sessionState struct {
	mu     sync.Mutex
	status int // -1 until exit-status
	signal string
	msg    string
	done   chan struct{} // closed when the session's requests end
}

// serve answers what the server sends on the connection (global requests,
// channel opens: refused) and the session's requests (exit-status,
// exit-signal; keepalives get "no"), until the connection ends.
func serve(l *link, creqs <-chan *ssh.Request, st *sessionState) {
	chans, reqs := l.chans, l.reqs
	if creqs == nil {
		close(st.done)
	}
	for chans != nil || reqs != nil || creqs != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			_ = nc.Reject(ssh.Prohibited, "fanout accepts no channel")
		case req, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		case req, ok := <-creqs:
			if !ok {
				creqs = nil
				close(st.done)
				continue
			}
			st.mu.Lock()
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
			st.mu.Unlock()
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
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
}

// discardPool holds the buffers the bytes past the bound are read into.
var discardPool = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

// readFrom reads r to EOF into b, growing b.buf as data comes (most
// commands print a few bytes: no fixed buffer per stream).
func (b *bounded) readFrom(r io.Reader) error {
	for {
		if len(b.buf) < b.max {
			if len(b.buf) == cap(b.buf) {
				b.buf = slices.Grow(b.buf, min(max(256, cap(b.buf)), b.max-len(b.buf)))
			}
			n, err := r.Read(b.buf[len(b.buf):min(cap(b.buf), b.max)])
			b.buf = b.buf[:len(b.buf)+n]
			if err != nil {
				return eof(err)
			}
			continue
		}
		// Past the bound: keep draining, a blocked remote would hang.
		p := discardPool.Get().(*[]byte)
		n, err := r.Read(*p)
		discardPool.Put(p)
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
