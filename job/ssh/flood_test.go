package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// A hostile server: it answers every exec request with a flood of the kind
// its mode says, and never an exit status, so that only the command timeout
// or the end of the flood ends the session.
type floodMode string

const (
	floodStdout   floodMode = "stdout"   // big writes on stdout
	floodStderr   floodMode = "stderr"   // big writes on stderr
	floodTiny     floodMode = "tiny"     // one byte a packet, stdout and stderr
	floodRequests floodMode = "requests" // channel and global requests, big payloads, no reply awaited
	floodChannels floodMode = "channels" // channel opens towards the client, big payloads
	floodStall    floodMode = "stall"    // channel opens, from a server that stops reading
)

type floodServer struct {
	ln    net.Listener
	cfg   *ssh.ServerConfig
	mode  floodMode
	total int64 // bytes (or requests) a session sends
}

// FloodEnv, set, makes the test binary a flood server (FloodServerMain):
// "MODE TOTAL". The server runs in a process of its own, so that the heap
// the test measures is the client's alone.
const FloodEnv = "FANOUT_FLOOD_SERVER"

// FloodServerMain serves floods on 127.0.0.1 as FloodEnv says, prints the
// port, and exits when its stdin closes (the test is over or gone).
func FloodServerMain() {
	var mode string
	var total int64
	if _, err := fmt.Sscan(os.Getenv(FloodEnv), &mode, &total); err != nil {
		fmt.Fprintln(os.Stderr, "flood server:", err)
		os.Exit(2)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		panic(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
	}
	cfg.AddHostKey(signer)
	lc := net.ListenConfig{}
	if floodMode(mode) == floodStall {
		// A small receive window from the start: the client's answers
		// fill it soon once this server stops reading.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s := &floodServer{ln: ln, cfg: cfg, mode: floodMode(mode), total: total}
	go s.accept()
	fmt.Println(s.port())
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// startFlood starts a flood server process; it returns the port.
func startFlood(t testing.TB, mode floodMode, total int64) int {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", FloodEnv, mode, total))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	var port int
	if _, err := fmt.Fscan(out, &port); err != nil {
		cmd.Process.Kill()
		t.Fatalf("flood server: %v", err)
	}
	return port
}

func (s *floodServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *floodServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.serve(c)
	}
}

// stallConn stops reading (blocks) once stall is closed, until the
// connection is closed: a peer that no longer reads what it is sent.
type stallConn struct {
	net.Conn
	stall chan struct{}
}

func (c *stallConn) Read(p []byte) (int, error) {
	select {
	case <-c.stall:
		var one [1]byte
		// Block until the client closes: then the read fails.
		for {
			if _, err := c.Conn.Read(one[:0]); err != nil {
				return 0, err
			}
			time.Sleep(10 * time.Millisecond)
		}
	default:
		return c.Conn.Read(p)
	}
}

func (s *floodServer) serve(raw net.Conn) {
	defer raw.Close()
	c := &stallConn{Conn: raw, stall: make(chan struct{})}
	conn, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for req := range creqs {
				if req.Type == "exec" {
					_ = req.Reply(true, nil)
					go s.flood(conn, ch, c)
				} else if req.WantReply {
					_ = req.Reply(false, nil)
				}
			}
		}()
	}
}

// flood sends the session's flood, then closes the channel (no exit status).
func (s *floodServer) flood(conn *ssh.ServerConn, ch ssh.Channel, c *stallConn) {
	defer ch.Close()
	big := make([]byte, 32<<10)
	payload := make([]byte, 200<<10)
	switch s.mode {
	case floodStdout, floodStderr:
		var dst io.Writer = ch
		if s.mode == floodStderr {
			dst = ch.Stderr()
		}
		for n := int64(0); n < s.total; n += int64(len(big)) {
			if _, err := dst.Write(big); err != nil {
				return
			}
		}
	case floodTiny:
		one := []byte{'x'}
		for n := int64(0); n < s.total; n++ {
			dst := io.Writer(ch)
			if n%2 == 1 {
				dst = ch.Stderr()
			}
			if _, err := dst.Write(one); err != nil {
				return
			}
		}
	case floodRequests:
		for n := int64(0); n < s.total; n++ {
			if _, err := ch.SendRequest("flood@test", false, payload); err != nil {
				return
			}
			if _, _, err := conn.SendRequest("flood@test", false, payload); err != nil {
				return
			}
		}
	case floodChannels, floodStall:
		// x/crypto lets a peer have one request awaiting its reply at a
		// time, but any number of channel opens awaiting their answer.
		if s.mode == floodStall {
			close(c.stall) // from now on the client's answers pile up
		}
		extra := payload[:64<<10]
		sem := make(chan struct{}, 64) // bounds this server's own memory
		var wg sync.WaitGroup
		for n := int64(0); n < s.total; n++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.mode == floodChannels {
					defer func() { <-sem }()
				} else {
					// Unanswered forever: release once the open is sent.
					go func() { time.Sleep(time.Millisecond); <-sem }()
				}
				if c, _, err := conn.OpenChannel("x11", extra); err == nil {
					c.Close()
				}
			}()
		}
		if s.mode == floodChannels {
			wg.Wait()
		} else {
			_ = conn.Wait()
		}
	}
}

// liveHeap is the heap live after a collection (/gc/heap/live:bytes: what
// the collection marked, not what was allocated since, which a flood makes
// large and which the next collection frees).
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestFloodBounded: sessions whose server floods them hold a bounded heap
// (their output bound, the channel window, a constant), and say truncated.
// The server runs in a process of its own, so that the heap is the client's.
func TestFloodBounded(t *testing.T) {
	const (
		sessions  = 8
		maxOutput = 64 << 10
	)
	// Floods big enough to fill every buffer many times over; the race
	// detector makes crypto ~10x slower, so it gets smaller ones.
	data, tiny, msgs, stall := int64(100<<20), int64(1<<20), int64(1000), 20*time.Second
	if raceEnabled {
		data, tiny, msgs, stall = 8<<20, 64<<10, 100, 10*time.Second
	}
	tests := []struct {
		mode      floodMode
		total     int64
		truncated bool
		timeout   time.Duration // 0: the flood ends by itself
	}{
		{floodStdout, data, true, 0},
		{floodStderr, data, true, 0},
		{floodTiny, tiny, tiny/2 > maxOutput, 0}, // half on each stream
		{floodRequests, msgs, false, 0},
		{floodChannels, msgs, false, 0},
		{floodStall, 1 << 20, false, stall},
	}
	home := newHome(t, "")
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			port := startFlood(t, tt.mode, tt.total)
			env := home.env()
			if tt.mode == floodStall {
				// Small socket buffers: the client's answers fill them soon.
				env.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
						return c.Control(func(fd uintptr) {
							_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
						})
					}}
					return d.DialContext(ctx, network, addr)
				}
			}
			j := newJob(t, Config{Command: "flood", HostKey: HostKeyOff, MaxOutput: maxOutput, CommandTimeout: tt.timeout}, env)
			base := liveHeap()
			var peak atomic.Uint64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					if h := liveHeap(); h > peak.Load() {
						peak.Store(h)
					}
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			rs := make([]job.Result, sessions)
			for i := range rs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rs[i] = j.Run(ctx, target.Target{Index: uint64(i), Addr: netip.MustParseAddr("127.0.0.1"), Port: uint16(port)})
				}()
			}
			wg.Wait()
			close(stop)
			<-sampled
			if ctx.Err() != nil {
				t.Fatalf("sessions still running after 5 minutes")
			}
			grew := int64(peak.Load()) - int64(base)
			// Each session may hold its output (both streams), the channel's
			// window and the packets x/crypto reads ahead (transportQueue);
			// the rest is a constant.
			bound := int64(sessions*(2*maxOutput+channelWindow+transportQueue) + 16<<20)
			t.Logf("%d sessions: live heap %.1f MB before, peak %+.1f MB (bound %d MB)",
				sessions, float64(base)/(1<<20), float64(grew)/(1<<20), bound>>20)
			if grew > bound {
				t.Errorf("heap grew by %d MB during the flood, bound %d MB", grew>>20, bound>>20)
			}
			for i, r := range rs {
				if tt.truncated && (!r.Truncated || len(r.Stdout)+len(r.Stderr) == 0) {
					t.Errorf("session %d: truncated %v, %d+%d bytes kept (%s/%s %s)", i, r.Truncated, len(r.Stdout), len(r.Stderr), r.Status, r.Class, r.Error)
				}
				if len(r.Stdout) > maxOutput || len(r.Stderr) > maxOutput {
					t.Errorf("session %d: kept %d+%d bytes, bound %d each", i, len(r.Stdout), len(r.Stderr), maxOutput)
				}
			}
		})
	}
}

// channelWindow is the receive window x/crypto gives every channel, and
// transportQueue what it reads ahead of the connection's dispatch: 16
// packets of up to 256 KB.
const (
	channelWindow  = 2 << 20
	transportQueue = 16 * 256 << 10
)
