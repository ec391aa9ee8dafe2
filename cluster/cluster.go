// Package cluster spreads a sweep over many machines through NATS JetStream:
// an embedded server (Server), workers that pull index ranges and run them
// with the local engine (Worker), and a submitter that puts the sweep's Spec
// into a KV bucket, publishes its tasks and streams the results back
// (Submit, Collect). Queueing, redelivery, membership and deduplication are
// JetStream's; this package only names the streams and moves Results.
//
// Layout on the server:
//
//	KV fanout_sweeps       key <sweep>: the Spec and its task layout
//	KV fanout_workers      key <worker>: heartbeat, expires after WorkerTTL
//	stream FANOUT_TASKS    fanout.tasks.<sweep>.<chunk>, work queue, one
//	                       durable pull consumer "workers"
//	stream FANOUT_RESULTS  fanout.results.<sweep>.<chunk>.<batch>, one message
//	                       per subject, first writer wins (permanent dedup)
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of what the cluster keeps on the server.
const (
	SweepsBucket   = "fanout_sweeps"
	WorkersBucket  = "fanout_workers"
	TasksStream    = "FANOUT_TASKS"
	ResultsStream  = "FANOUT_RESULTS"
	WorkerConsumer = "workers"

	tasksPrefix   = "fanout.tasks."
	resultsPrefix = "fanout.results."
)

// DefaultPort is where `fanout server` listens unless told otherwise.
const DefaultPort = 4222

// DefaultURL is the server a command talks to when given no --server.
const DefaultURL = "nats://127.0.0.1:4222"

// Timing defaults. AckWait bounds how long a task held by a dead worker
// waits before another worker gets it; live workers extend it with
// in-progress acks every AckWait/3.
const (
	DefaultAckWait = 30 * time.Second
	WorkerTTL      = 15 * time.Second
	heartbeatEvery = 5 * time.Second
	resultsMaxAge  = 7 * 24 * time.Hour // MaxRetention: the streams' MaxAge
)

// Credentials authenticate a client (worker, submitter, status) or, on the
// server side, say what clients must present.
type Credentials struct {
	Token    string // shared secret; env FANOUT_TOKEN
	NkeySeed string // file holding an nkey user seed; env FANOUT_NKEY_SEED
	TLSCert  string // certificate file (server: its own; client: client cert)
	TLSKey   string // its key
	TLSCA    string // CA file (client: to verify the server; server: to verify clients)
}

// FromEnv fills empty fields from FANOUT_TOKEN, FANOUT_NKEY_SEED,
// FANOUT_TLS_CERT, FANOUT_TLS_KEY and FANOUT_TLS_CA.
func (c Credentials) FromEnv() Credentials {
	fill := func(p *string, env string) {
		if *p == "" {
			*p = os.Getenv(env)
		}
	}
	fill(&c.Token, "FANOUT_TOKEN")
	fill(&c.NkeySeed, "FANOUT_NKEY_SEED")
	fill(&c.TLSCert, "FANOUT_TLS_CERT")
	fill(&c.TLSKey, "FANOUT_TLS_KEY")
	fill(&c.TLSCA, "FANOUT_TLS_CA")
	return c
}

// Authenticated reports whether clients must prove who they are.
func (c Credentials) Authenticated() bool { return c.Token != "" || c.NkeySeed != "" }

// GenToken returns a fresh random token (256 bits, hex).
func GenToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Connect dials the NATS server at url with creds. The connection reconnects
// forever (a restarted server is picked up again) and logs asynchronous
// errors, which is where permission errors surface.
func Connect(ctx context.Context, serverURL string, creds Credentials, name string, logf func(string, ...any)) (*nats.Conn, error) {
	if logf == nil {
		logf = log.Printf
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				logf("nats: %s: %v", sub.Subject, err)
				return
			}
			logf("nats: %v", err)
		}),
	}
	if creds.Token != "" {
		opts = append(opts, nats.Token(creds.Token))
	}
	if creds.NkeySeed != "" {
		o, err := nats.NkeyOptionFromSeed(creds.NkeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %q: %w", creds.NkeySeed, err)
		}
		opts = append(opts, o)
	}
	if creds.TLSCA != "" {
		opts = append(opts, nats.RootCAs(creds.TLSCA))
	}
	if creds.TLSCert != "" || creds.TLSKey != "" {
		opts = append(opts, nats.ClientCert(creds.TLSCert, creds.TLSKey))
	}
	nc, err := nats.Connect(serverURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", serverURL, err)
	}
	return nc, nil
}

// setup holds the buckets and streams every party needs.
type setup struct {
	js      jetstream.JetStream
	sweeps  jetstream.KeyValue
	workers jetstream.KeyValue
	tasks   jetstream.Stream
	results jetstream.Stream
}

// ensure creates (or finds, unchanged) the buckets and streams. Workers,
// submitters and status all call it, so no start order is required. A
// JetStream cluster that just started answers nothing until it has a meta
// leader, so each attempt is short and is repeated until ctx is done.
func ensure(ctx context.Context, nc *nats.Conn) (*setup, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := ensureOnce(actx, nc)
		cancel()
		if err == nil || ctx.Err() != nil {
			return s, err
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code != 503 {
			return nil, err // a real refusal (permissions, config), not "not ready"
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func ensureOnce(ctx context.Context, nc *nats.Conn) (*setup, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &setup{js: js}
	s.sweeps, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SweepsBucket, Description: "fanout sweeps: spec and task layout",
		Storage: jetstream.FileStorage, History: 1, TTL: resultsMaxAge,
		// Per-key TTLs: each sweep's record expires with its retention.
		LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", SweepsBucket, err)
	}
	s.workers, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: WorkersBucket, Description: "fanout worker heartbeats",
		Storage: jetstream.FileStorage, History: 1, TTL: WorkerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", WorkersBucket, err)
	}
	s.tasks, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: TasksStream, Description: "fanout tasks: (sweep, lo, hi)",
		Subjects: []string{tasksPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute,
		// Tasks expire with their sweep's retention (per-message TTL), and
		// within MaxRetention whatever their publisher said.
		AllowMsgTTL: true, MaxAge: resultsMaxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", TasksStream, err)
	}
	s.results, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ResultsStream, Description: "fanout results, one message per (sweep, chunk, batch)",
		Subjects: []string{resultsPrefix + ">"}, Storage: jetstream.FileStorage,
		// First writer wins per subject: a redelivered task's results are
		// refused for good, not only within the Duplicates window.
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
		MaxAge: resultsMaxAge, Duplicates: 2 * time.Minute,
		AllowMsgTTL: true, // results expire with their sweep's retention
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", ResultsStream, err)
	}
	return s, nil
}

// taskConsumer is the durable pull consumer every worker shares.
func (s *setup) taskConsumer(ctx context.Context, ackWait time.Duration) (jetstream.Consumer, error) {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	c, err := s.js.Consumer(ctx, TasksStream, WorkerConsumer)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	c, err = s.js.CreateConsumer(ctx, TasksStream, jetstream.ConsumerConfig{
		Durable: WorkerConsumer, Description: "fanout workers",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: -1,
		MaxAckPending: -1,
	})
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return s.js.Consumer(ctx, TasksStream, WorkerConsumer)
	}
	return c, err
}

func taskSubject(sweep string, chunk uint64) string {
	return fmt.Sprintf("%s%s.%d", tasksPrefix, sweep, chunk)
}

func resultSubject(sweep string, chunk uint64, batch int) string {
	return fmt.Sprintf("%s%s.%d.%d", resultsPrefix, sweep, chunk, batch)
}

// NewSweepID returns a sweep id: short, sortable by time, valid as a subject
// token and a KV key.
func NewSweepID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s", time.Now().UTC().Format("20060102t150405"), hex.EncodeToString(b))
}

// ValidSweepID reports whether id can name a sweep on the server.
func ValidSweepID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// keySafe makes s usable as a KV key.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// IsLoopback reports whether host (a name or address, possibly empty) stays
// on this machine. An empty host or a wildcard listens everywhere.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitListen parses "HOST:PORT", ":PORT", "HOST" or "PORT".
func splitListen(addr string, defPort int) (string, int, error) {
	if addr == "" {
		return "127.0.0.1", defPort, nil
	}
	if !strings.Contains(addr, ":") || strings.Count(addr, ":") > 1 && !strings.Contains(addr, "]") {
		if p, err := parsePort(addr); err == nil {
			return "127.0.0.1", p, nil
		}
		return addr, defPort, nil
	}
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %v", addr, err)
	}
	p, err := parsePort(ps)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %v", addr, err)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, p, nil
}

func parsePort(s string) (int, error) {
	var p int
	if _, err := fmt.Sscanf(s, "%d", &p); err != nil || p < 0 || p > 65535 || fmt.Sprint(p) != s {
		return 0, fmt.Errorf("port %q: want 0-65535", s)
	}
	return p, nil
}

// parseRoutes parses "nats://host:port,..." into route URLs.
func parseRoutes(s []string) ([]*url.URL, error) {
	var out []*url.URL
	for _, r := range s {
		for _, p := range strings.Split(r, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !strings.Contains(p, "://") {
				p = "nats://" + p
			}
			u, err := url.Parse(p)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("route %q: want nats://HOST:PORT", p)
			}
			out = append(out, u)
		}
	}
	return out, nil
}
