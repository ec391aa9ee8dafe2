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
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/internal/backoff"
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
	Token    string // shared secret, at least MinTokenLen characters; env FANOUT_TOKEN
	NkeySeed string // file holding an nkey user seed; env FANOUT_NKEY_SEED
	User     string // a users-file user with a password; env FANOUT_USER
	Password string // that user's password; env FANOUT_PASSWORD (never a flag: ps shows flags)
	TLSCert  string // certificate file (server: its own; client: client cert)
	TLSKey   string // its key
	TLSCA    string // CA file (client: to verify the server; server: to verify clients)
}

// MinTokenLen is the shortest token accepted, so that a typo or a
// placeholder is not taken for a credential.
const MinTokenLen = 16

// FromEnv fills empty fields from FANOUT_TOKEN, FANOUT_NKEY_SEED,
// FANOUT_USER, FANOUT_PASSWORD, FANOUT_TLS_CERT, FANOUT_TLS_KEY and
// FANOUT_TLS_CA. A token, nkey seed or user already given wins over the
// environment's of another kind.
func (c Credentials) FromEnv() Credentials {
	fill := func(p *string, env string) {
		if *p == "" {
			*p = os.Getenv(env)
		}
	}
	if c.Token == "" && c.NkeySeed == "" && c.User == "" {
		fill(&c.Token, "FANOUT_TOKEN")
		fill(&c.NkeySeed, "FANOUT_NKEY_SEED")
		fill(&c.User, "FANOUT_USER")
	}
	if c.User != "" {
		fill(&c.Password, "FANOUT_PASSWORD")
	}
	fill(&c.TLSCert, "FANOUT_TLS_CERT")
	fill(&c.TLSKey, "FANOUT_TLS_KEY")
	fill(&c.TLSCA, "FANOUT_TLS_CA")
	return c
}

// Authenticated reports whether clients must prove who they are.
func (c Credentials) Authenticated() bool { return c.Token != "" || c.NkeySeed != "" }

func (c Credentials) checkToken() error {
	if c.Token != "" && len(c.Token) < MinTokenLen {
		return fmt.Errorf("token too short (%d of at least %d characters; make one with: fanout server --gen-token)", len(c.Token), MinTokenLen)
	}
	return nil
}

// Check refuses client credentials that cannot work: a short token, a user
// without a password or the reverse, a certificate without its key.
func (c Credentials) Check() error {
	if err := c.checkToken(); err != nil {
		return err
	}
	switch {
	case c.User != "" && c.Password == "":
		return fmt.Errorf("user %q: no password (set FANOUT_PASSWORD)", c.User)
	case c.Password != "" && c.User == "":
		return errors.New("a password (FANOUT_PASSWORD) without a user name (--cluster-user or FANOUT_USER)")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("a TLS client certificate needs both --tls-cert and --tls-key")
	}
	n := 0
	for _, s := range []string{c.Token, c.NkeySeed, c.User} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return errors.New("give one of a token, an nkey seed or a user, not several")
	}
	return nil
}

// GenToken returns a fresh random token (256 bits, hex).
func GenToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// reconnectRetry spaces reconnections: from 250 ms, doubling up to 5 s,
// jittered (the one rule of internal/backoff) so that many workers do not
// knock on a restarted server at the same instant.
var reconnectRetry = backoff.Policy{Base: 250 * time.Millisecond, Max: 5 * time.Second}

// logEvery bounds how often one connection problem is logged.
const logEvery = time.Minute

// Connect dials the NATS server at url with creds. Without credentials, a
// loopback url whose server made its own (LocalSeedFile) gets those. The
// connection reconnects forever with backoff (a restarted server is picked
// up again, even after it refused these credentials for a while) and logs
// connection trouble and asynchronous errors, which is where permission
// errors surface, each distinct line at most once a minute.
func Connect(ctx context.Context, serverURL string, creds Credentials, name string, logf func(string, ...any)) (*nats.Conn, error) {
	if logf == nil {
		logf = log.Printf
	}
	if err := creds.Check(); err != nil {
		return nil, err
	}
	if err := CheckServers(serverURL); err != nil {
		return nil, err
	}
	creds, err := creds.local(serverURL)
	if err != nil {
		return nil, err
	}
	say := QuietRepeats(logf, logEvery)
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectRetry.Delay), // nats counts attempts from 1
		// Without it nats.go gives up for good on the second refusal of
		// the same server, and a worker never resumes after the server
		// comes back with its credentials.
		nats.IgnoreAuthErrorAbort(),
		nats.RetryOnFailedConnect(false),
		nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			switch {
			case isAuthError(err):
				say("nats: %s refuses these credentials (%v); retrying with backoff until it accepts them", redact(serverURL), err)
			case errors.Is(err, nats.ErrPermissionViolation):
				// "Permissions Violation for Publish to "$KV.fanout_sweeps.x""
				what := strings.TrimPrefix(err.Error(), nats.ErrPermissionViolation.Error()+": ")
				say("refused by the server, not allowed for these credentials (their role): %s", what)
			case sub != nil:
				say("nats: %s: %v", sub.Subject, err)
			default:
				say("nats: %v", err)
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				say("nats: disconnected from %s (%v); reconnecting", redact(serverURL), err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			say("nats: cannot reach %s (%v); retrying with backoff", redact(serverURL), err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			say("nats: connected again to %s", nc.ConnectedUrlRedacted())
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
	if creds.User != "" {
		opts = append(opts, nats.UserInfo(creds.User, creds.Password))
	}
	if creds.TLSCA != "" {
		opts = append(opts, nats.RootCAs(creds.TLSCA))
	}
	if creds.TLSCert != "" || creds.TLSKey != "" {
		opts = append(opts, nats.ClientCert(creds.TLSCert, creds.TLSKey))
	}
	nc, err := nats.Connect(serverURL, opts...)
	if err != nil {
		return nil, connectError(serverURL, err)
	}
	_, tlsErr := nc.TLSConnectionState()
	if what := clearTextSecret(nc.ConnectedUrl(), tlsErr == nil, creds); what != "" {
		logf("warning: %s went to %s in clear text: anyone on the path can read it and use it. Use TLS (server --tls-cert/--tls-key, clients --tls-ca), or an nkey seed, which never crosses the wire", what, redact(nc.ConnectedUrl()))
	}
	return nc, nil
}

// clearTextSecret names the secret creds sent over a connection to
// connected (a URL) that was not TLS and left this machine; "" if none.
func clearTextSecret(connected string, isTLS bool, creds Credentials) string {
	if isTLS {
		return ""
	}
	u, err := url.Parse(connected)
	if err != nil || IsLoopback(u.Hostname()) {
		return ""
	}
	switch {
	case creds.Token != "":
		return "the token"
	case creds.Password != "":
		return fmt.Sprintf("the password of user %q", creds.User)
	}
	return ""
}

// CheckServers checks a server URL, or several separated by commas (the
// servers of one cluster: a client connects to one of them and moves to
// another when it fails), each nats:// or tls:// with a host.
func CheckServers(list string) error {
	n := 0
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n++
		s := p
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.Path != "" && u.Path != "/" {
			return fmt.Errorf("server %q: want nats://HOST:PORT (several: nats://a:4222,nats://b:4222)", redact(p))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("server %q: scheme %q, want nats:// or tls://", redact(p), u.Scheme)
		}
	}
	if n == 0 {
		return fmt.Errorf("server %q: no URL, want nats://HOST:PORT", list)
	}
	return nil
}

// connectError says what to do about a failed connection.
func connectError(serverURL string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	switch {
	case isAuthError(err):
		return fmt.Errorf("connect %s: the server refused these credentials (%w): give the cluster's token (--token or FANOUT_TOKEN), nkey seed (--nkey-seed or FANOUT_NKEY_SEED) or user (--cluster-user, FANOUT_PASSWORD)", redact(serverURL), err)
	case errors.As(err, &unknownCA) || errors.As(err, &verify) || errors.As(err, &hostname):
		return fmt.Errorf("connect %s: the server requires TLS and its certificate is not trusted here (%w): give the CA that signed it with --tls-ca FILE (or FANOUT_TLS_CA); nothing was sent in clear text", redact(serverURL), err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("connect %s: this client requires TLS (a tls:// URL or --tls-ca) and the server does not offer it: nothing was sent", redact(serverURL))
	}
	return fmt.Errorf("connect %s: %w (is a fanout server running there? see fanout server --help)", redact(serverURL), err)
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
}

// redact drops the passwords from a URL, or a comma-separated list of
// them, for messages.
func redact(s string) string {
	if strings.Contains(s, ",") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redact(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// local fills in the credentials a server on this machine made for itself
// (LocalSeedFile) when none are given and url is on loopback.
func (c Credentials) local(serverURL string) (Credentials, error) {
	if c.Token != "" || c.NkeySeed != "" || c.User != "" || strings.Contains(serverURL, ",") {
		return c, nil
	}
	if !strings.Contains(serverURL, "://") {
		serverURL = "nats://" + serverURL
	}
	u, err := url.Parse(serverURL)
	if err != nil || u.User != nil || !IsLoopback(u.Hostname()) {
		return c, nil
	}
	port := DefaultPort
	if p := u.Port(); p != "" {
		if port, err = parsePort(p); err != nil {
			return c, nil
		}
	}
	path := LocalSeedFile("", port)
	if _, err := os.Lstat(path); err != nil {
		return c, nil
	}
	if err := checkPrivate(path); err != nil {
		return c, err
	}
	c.NkeySeed = path
	return c, nil
}

// QuietRepeats wraps logf so that a line logged again within every is
// held back, and counted in the next one that gets through: a lasting
// problem (a server down, credentials refused) logs one line a minute, not
// one per retry.
func QuietRepeats(logf func(string, ...any), every time.Duration) func(string, ...any) {
	type seen struct {
		at   time.Time
		held int
	}
	var mu sync.Mutex
	last := map[string]*seen{}
	return func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		now := time.Now()
		mu.Lock()
		for k, v := range last { // bounded: forget lines not seen for a while
			if age := now.Sub(v.at); age > every && v.held == 0 || age > 10*every {
				delete(last, k)
			}
		}
		e := last[line]
		if e != nil && now.Sub(e.at) < every {
			e.held++
			mu.Unlock()
			return
		}
		held := 0
		if e != nil {
			held = e.held
		}
		last[line] = &seen{at: now}
		mu.Unlock()
		if held > 0 {
			line += fmt.Sprintf(" (%d more times since %s)", held, e.at.Format("15:04:05"))
		}
		logf("%s", line)
	}
}

// setup holds the buckets and streams every party needs.
type setup struct {
	js       jetstream.JetStream
	replicas int // copies of each stream and bucket asked for (0: the server's default)
	sweeps   jetstream.KeyValue
	workers  jetstream.KeyValue
	tasks    jetstream.Stream
	results  jetstream.Stream
	// watches (watch.go)
	watches  jetstream.KeyValue
	rounds   jetstream.Stream
	wresults jetstream.Stream
	events   jetstream.Stream
}

// ensure finds the buckets and streams every party needs, creating those
// that are missing when these credentials may (a fanout server creates them
// at start, so a worker or submitter of a role that may not can still come
// first; it then waits for them). A JetStream cluster that just started
// answers nothing until it has a meta leader, so each attempt is short and
// is repeated until ctx is done.
func ensure(ctx context.Context, nc *nats.Conn) (*setup, error) {
	return ensureMode(ctx, nc, false, 0)
}

// ensureMode is ensure; with update, existing buckets and streams are
// brought to the current configuration (the server does it at start), with
// replicas copies of each (0: the server's default, one; a client that
// creates a missing one leaves the count to the servers, which bring it to
// theirs).
func ensureMode(ctx context.Context, nc *nats.Conn, update bool, replicas int) (*setup, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := ensureOnce(actx, nc, update, replicas)
		cancel()
		if err == nil || ctx.Err() != nil {
			return s, err
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code != 503 && apiErr.ErrorCode != jetstream.JSErrCodeStreamNotFound {
			return nil, err // a real refusal (permissions, config), not "not ready"
		}
		// Not found right after "already in use": another party (a server
		// of the cluster setting up) is creating it, and its replicas are
		// not placed yet. Try again.
		backoff.Sleep(ctx, 200*time.Millisecond) // a poll until JetStream is ready
	}
}

func ensureOnce(ctx context.Context, nc *nats.Conn, update bool, replicas int) (*setup, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &setup{js: js, replicas: replicas}
	s.sweeps, err = bucket(ctx, js, update, jetstream.KeyValueConfig{
		Bucket: SweepsBucket, Description: "fanout sweeps: spec and task layout",
		Storage: jetstream.FileStorage, History: 1, TTL: resultsMaxAge,
		// Per-key TTLs: each sweep's record expires with its retention.
		LimitMarkerTTL: time.Minute, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", SweepsBucket, err)
	}
	s.workers, err = bucket(ctx, js, update, jetstream.KeyValueConfig{
		Bucket: WorkersBucket, Description: "fanout worker heartbeats",
		Storage: jetstream.FileStorage, History: 1, TTL: WorkerTTL, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", WorkersBucket, err)
	}
	s.tasks, err = stream(ctx, js, update, jetstream.StreamConfig{
		Name: TasksStream, Description: "fanout tasks: (sweep, lo, hi)",
		Subjects: []string{tasksPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute,
		// Tasks expire with their sweep's retention (per-message TTL), and
		// within MaxRetention whatever their publisher said.
		AllowMsgTTL: true, MaxAge: resultsMaxAge, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", TasksStream, err)
	}
	s.results, err = stream(ctx, js, update, jetstream.StreamConfig{
		Name: ResultsStream, Description: "fanout results, one message per (sweep, chunk, batch)",
		Subjects: []string{resultsPrefix + ">"}, Storage: jetstream.FileStorage,
		// First writer wins per subject: a redelivered task's results are
		// refused for good, not only within the Duplicates window.
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
		MaxAge: resultsMaxAge, Duplicates: 2 * time.Minute,
		AllowMsgTTL: true, // results expire with their sweep's retention
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", ResultsStream, err)
	}
	if err := s.ensureWatch(ctx, update); err != nil {
		return nil, err
	}
	return s, nil
}

// bucket finds the KV bucket of cfg, or creates it when missing (with
// update: creates or updates it).
func bucket(ctx context.Context, js jetstream.JetStream, update bool, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if update {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, notCreated(err)
	}
	return kv, nil
}

// stream finds the stream of cfg, or creates it when missing (with update:
// creates or updates it).
func stream(ctx context.Context, js jetstream.JetStream, update bool, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if update {
		return js.CreateOrUpdateStream(ctx, cfg)
	}
	st, err := js.Stream(ctx, cfg.Name)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	st, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, notCreated(err)
	}
	return st, nil
}

// notCreated explains a create that got no answer: the usual cause is a
// role that may not create it (the server drops the request).
func notCreated(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("not on the server yet, and no answer to creating it (%w): only an admin may create it; fanout server does at start", err)
	}
	return err
}

// taskConsumer is the durable pull consumer every worker shares. A cluster
// still placing its replicas answers 503 ("insufficient resources"): that
// is tried again until ctx is done, as ensure does.
func (s *setup) taskConsumer(ctx context.Context, ackWait time.Duration) (jetstream.Consumer, error) {
	for {
		c, err := s.taskConsumerOnce(ctx, ackWait)
		var apiErr *jetstream.APIError
		if err == nil || ctx.Err() != nil || !errors.As(err, &apiErr) || apiErr.Code != 503 {
			return c, err
		}
		backoff.Sleep(ctx, 200*time.Millisecond) // a poll until the replicas are placed
	}
}

func (s *setup) taskConsumerOnce(ctx context.Context, ackWait time.Duration) (jetstream.Consumer, error) {
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
		return "", 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	p, err := parsePort(ps)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %w", addr, err)
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
