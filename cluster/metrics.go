package cluster

// Prometheus metrics of a cluster (prometheus/client_golang): what a worker
// ran (`fanout worker --metrics ADDR`: WorkerMetrics), and the cluster view a
// server can give cheaply (`fanout server --metrics ADDR`: ServerMetrics,
// read from the buckets and streams when scraped, as `fanout watch ls` and
// `fanout status` read them). NATS's own monitoring port (`fanout server
// --monitor ADDR`) is ServerOptions.Monitor.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// MetricsServer serves a registry's metrics at http://ADDR/metrics.
type MetricsServer struct {
	Registry *prometheus.Registry
	ln       net.Listener
	srv      *http.Server
	serveErr chan error
	once     sync.Once
}

// ErrMetricsAddr marks an address a metrics or monitoring endpoint cannot
// listen on (malformed, or in use): a usage error, found before start.
var ErrMetricsAddr = errors.New("cannot listen")

// ListenMetrics listens on addr (HOST:PORT; port 0 picks one) and serves
// the registry it returns, holding the Go runtime's and the process's
// metrics, from a goroutine of its own, at once: an address in use is an
// error here, before the caller starts anything.
func ListenMetrics(addr string) (*MetricsServer, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w on %q: want HOST:PORT (127.0.0.1:9108, :9108): %v", ErrMetricsAddr, addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w on %s: %v", ErrMetricsAddr, addr, unwrapOp(err))
	}
	m := &MetricsServer{Registry: prometheus.NewRegistry(), ln: ln, serveErr: make(chan error, 1)}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "fanout: metrics at /metrics")
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() { m.serveErr <- m.srv.Serve(ln) }()
	return m, nil
}

// Addr is the address the metrics are served on.
func (m *MetricsServer) Addr() net.Addr { return m.ln.Addr() }

// Close stops serving.
func (m *MetricsServer) Close() error {
	var err error
	m.once.Do(func() {
		err = m.srv.Close()
		if serr := <-m.serveErr; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	})
	return err
}

// unwrapOp drops net.OpError's "listen tcp" prefix: the caller names the
// flag and the address.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// metricClasses bound the class label: results come from job kinds and,
// for a watch's stored state, from the bus.
var metricClasses = map[job.Class]bool{job.ClassTimeout: true, job.ClassRefused: true, job.ClassUnreachable: true,
	job.ClassResolve: true, job.ClassAuth: true, job.ClassHostKey: true, job.ClassExit: true, job.ClassProto: true,
	job.ClassCanceled: true, job.ClassLocal: true}

func classLabel(c job.Class) string {
	if !metricClasses[c] {
		return "other"
	}
	return string(c)
}

// forgetAfter is how many stopped watches a worker's metrics keep series
// for: a stopped watch's series go when more than this many stopped since.
const forgetAfter = 16

// WorkerMetrics count what one worker ran: per watch, the rounds it saw
// tick, the chunks it polled (late, failed, taken over from a dead owner),
// their targets by status, errors by class, the results and change events
// it published, and each chunk's duration; and its sweep tasks. A nil
// *WorkerMetrics counts nothing.
type WorkerMetrics struct {
	rounds    *prometheus.CounterVec
	chunks    *prometheus.CounterVec
	late      *prometheus.CounterVec
	failed    *prometheus.CounterVec
	takeovers *prometheus.CounterVec
	targets   *prometheus.CounterVec
	errs      *prometheus.CounterVec
	results   *prometheus.CounterVec
	changes   *prometheus.CounterVec
	duration  *prometheus.HistogramVec

	tasks       prometheus.Counter
	tasksBack   prometheus.Counter
	taskTargets *prometheus.CounterVec
	taskErrs    *prometheus.CounterVec
	taskResults prometheus.Counter
	taskTime    prometheus.Histogram

	mu      sync.Mutex
	stopped []string // stopped watches whose series are kept, oldest first
	reg     prometheus.Registerer
}

// NewWorkerMetrics registers a worker's metrics in reg; give it to the
// worker as WorkerOptions.Metrics.
func NewWorkerMetrics(reg prometheus.Registerer) *WorkerMetrics {
	w := []string{"watch"}
	dur := prometheus.ExponentialBuckets(0.01, 2, 16) // 10 ms to 5.5 min
	m := &WorkerMetrics{
		reg: reg,
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_rounds_total",
			Help: "Rounds of the watch whose tick this worker acted on (every worker sees every tick and polls the chunks it owns)."}, w),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_chunks_total",
			Help: "Chunks of the watch's rounds this worker polled, their results stored and their done mark published."}, w),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_chunks_late_total",
			Help: "Chunks polled here that ended after the next round was due."}, w),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_chunk_failures_total",
			Help: "Chunk runs that failed (their results or done mark not stored) and were retried."}, w),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_takeovers_total",
			Help: "Chunks this worker polled in a round it did not own them in when the round ticked: a dead owner's, or moved by a membership change."}, w),
		targets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_targets_total",
			Help: "Targets polled here, by status (up, down, error)."}, []string{"watch", "status"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_errors_total",
			Help: "Targets polled here that were not up, by error class."}, []string{"watch", "class"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_results_published_total",
			Help: "Results this worker stored (not those another run of the same chunk stored first)."}, w),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_watch_changes_total",
			Help: "Change events this worker published, by kind (down, up, class)."}, []string{"watch", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fanout_worker_watch_chunk_duration_seconds",
			Help: "Wall time of each chunk polled here, from its start to its done mark.", Buckets: dur}, w),
		tasks: prometheus.NewCounter(prometheus.CounterOpts{Name: "fanout_worker_tasks_total",
			Help: "Sweep tasks this worker ran to the end, results published and acked."}),
		tasksBack: prometheus.NewCounter(prometheus.CounterOpts{Name: "fanout_worker_tasks_handed_back_total",
			Help: "Sweep tasks handed back unfinished (worker stopping, results not published), to run again."}),
		taskTargets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_task_targets_total",
			Help: "Targets of the sweep tasks run to the end, by status (up, down, error)."}, []string{"status"}),
		taskErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_worker_task_errors_total",
			Help: "Targets of the sweep tasks run to the end that were not up, by error class."}, []string{"class"}),
		taskResults: prometheus.NewCounter(prometheus.CounterOpts{Name: "fanout_worker_task_results_published_total",
			Help: "Results of sweep tasks this worker published."}),
		taskTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fanout_worker_task_duration_seconds",
			Help: "Wall time of each sweep task run to the end, its targets run (not its publishing).", Buckets: dur}),
	}
	reg.MustRegister(m.rounds, m.chunks, m.late, m.failed, m.takeovers, m.targets, m.errs, m.results, m.changes, m.duration,
		m.tasks, m.tasksBack, m.taskTargets, m.taskErrs, m.taskResults, m.taskTime)
	return m
}

// attach adds the worker's gauges (targets in flight and outstanding).
func (m *WorkerMetrics) attach(w *Worker) {
	if m == nil {
		return
	}
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_worker_in_flight",
		Help: "Targets of sweep tasks running now on this worker."}, func() float64 { return float64(w.inFlight.Load()) }))
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_worker_outstanding",
		Help: "Targets of the tasks and chunks this worker holds that have no result yet."}, func() float64 { return float64(w.outstanding.Load()) }))
}

func (m *WorkerMetrics) round(watch string) {
	if m != nil {
		m.rounds.WithLabelValues(watch).Inc()
	}
}

func (m *WorkerMetrics) takeover(watch string) {
	if m != nil {
		m.takeovers.WithLabelValues(watch).Inc()
	}
}

func (m *WorkerMetrics) chunkFailed(watch string) {
	if m != nil {
		m.failed.WithLabelValues(watch).Inc()
	}
}

// chunk counts a chunk polled to its done mark: late when it ended after
// the next round was due (as watch ls counts rounds).
func (m *WorkerMetrics) chunk(watch string, d chunkDone, every time.Duration, results []job.Result, published int) {
	if m == nil {
		return
	}
	m.chunks.WithLabelValues(watch).Inc()
	if !d.Due.IsZero() && d.End.After(d.Due.Add(every)) {
		m.late.WithLabelValues(watch).Inc()
	}
	m.duration.WithLabelValues(watch).Observe(d.End.Sub(d.Start).Seconds())
	m.targets.WithLabelValues(watch, "up").Add(float64(d.Up))
	m.targets.WithLabelValues(watch, "down").Add(float64(d.Down))
	m.targets.WithLabelValues(watch, "error").Add(float64(d.Error))
	var byClass map[string]int
	for _, r := range results {
		if r.Status != job.Up {
			if byClass == nil {
				byClass = map[string]int{}
			}
			byClass[classLabel(r.Class)]++
		}
	}
	for c, n := range byClass {
		m.errs.WithLabelValues(watch, c).Add(float64(n))
	}
	m.results.WithLabelValues(watch).Add(float64(published))
}

func (m *WorkerMetrics) changed(watch string, kinds map[watch.Kind]int) {
	if m == nil {
		return
	}
	for k, n := range kinds {
		m.changes.WithLabelValues(watch, string(k)).Add(float64(n))
	}
}

// watchStopped forgets the series of the watch that stopped forgetAfter
// stopped watches ago: a worker that runs watch after watch keeps a
// bounded number of series, and a scrape after a watch stops still sees
// its last counts.
func (m *WorkerMetrics) watchStopped(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.stopped = append(m.stopped, id)
	var forget []string
	if len(m.stopped) > forgetAfter {
		forget = m.stopped[:len(m.stopped)-forgetAfter]
		m.stopped = append([]string(nil), m.stopped[len(m.stopped)-forgetAfter:]...)
	}
	m.mu.Unlock()
	for _, id := range forget {
		l := prometheus.Labels{"watch": id}
		for _, v := range []*prometheus.CounterVec{m.rounds, m.chunks, m.late, m.failed, m.takeovers, m.targets, m.errs, m.results, m.changes} {
			v.DeletePartialMatch(l)
		}
		m.duration.DeletePartialMatch(l)
	}
}

// task counts a sweep task run to the end; handedBack one given back.
func (m *WorkerMetrics) task(took time.Duration, byStatus [3]int, byClass map[string]int, published int64) {
	if m == nil {
		return
	}
	m.tasks.Inc()
	m.taskTime.Observe(took.Seconds())
	for i, s := range [3]string{"up", "down", "error"} {
		m.taskTargets.WithLabelValues(s).Add(float64(byStatus[i]))
	}
	for c, n := range byClass {
		m.taskErrs.WithLabelValues(c).Add(float64(n))
	}
	m.taskResults.Add(float64(published))
}

func (m *WorkerMetrics) handedBack() {
	if m != nil {
		m.tasksBack.Inc()
	}
}

// statusIndex is the index of a status in WorkerMetrics.task's byStatus.
func statusIndex(s job.Status) int {
	switch s {
	case job.Up:
		return 0
	case job.Down:
		return 1
	}
	return 2
}

// ServerMetrics is the cluster as one server sees it, read when scraped
// (at most once per serverReadEvery; scrapes in between get the last
// read): per watch, the newest round ticked and the newest complete one,
// late rounds among the last complete ones, up and down in the newest
// complete round (from the chunks' done marks, as `fanout watch ls`
// reads them), whether it is stopped; the live workers; each stream's
// messages and bytes. It reads over an in-process connection as the
// server's own admin.
type ServerMetrics struct {
	s *Server

	mu   sync.Mutex
	nc   *nats.Conn
	c    *Client
	at   time.Time
	last []prometheus.Metric
}

// serverReadEvery bounds how often a scrape reads the cluster: a watch's
// done marks are a read per chunk of each of its last complete rounds.
const serverReadEvery = 2 * time.Second

var (
	descWatchLast     = prometheus.NewDesc("fanout_cluster_watch_last_round", "Newest round of the watch ticked.", []string{"watch"}, nil)
	descWatchComplete = prometheus.NewDesc("fanout_cluster_watch_complete_round", "Newest round of the watch whose every chunk is done (0: none yet).", []string{"watch"}, nil)
	descWatchLate     = prometheus.NewDesc("fanout_cluster_watch_late_rounds", "Rounds among the watch's last 10 complete ones that ended after the next was due.", []string{"watch"}, nil)
	descWatchTargets  = prometheus.NewDesc("fanout_cluster_watch_targets", "Targets of the watch's newest complete round by status (up; down: down or in error).", []string{"watch", "status"}, nil)
	descWatchTotal    = prometheus.NewDesc("fanout_cluster_watch_total_targets", "Targets the watch polls each round.", []string{"watch"}, nil)
	descWatchOwners   = prometheus.NewDesc("fanout_cluster_watch_owners", "Workers that polled the watch's newest complete round.", []string{"watch"}, nil)
	descWatchStopped  = prometheus.NewDesc("fanout_cluster_watch_stopped", "1 when the watch is stopped, else 0.", []string{"watch"}, nil)
	descWorkers       = prometheus.NewDesc("fanout_cluster_workers", "Live workers (their heartbeat not expired).", nil, nil)
	descStreamMsgs    = prometheus.NewDesc("fanout_cluster_stream_messages", "Messages held by the JetStream stream (buckets are streams KV_<bucket>).", []string{"stream"}, nil)
	descStreamBytes   = prometheus.NewDesc("fanout_cluster_stream_bytes", "Bytes held by the JetStream stream.", []string{"stream"}, nil)
	descReadOK        = prometheus.NewDesc("fanout_cluster_read_ok", "1 when the last read of the cluster's state worked, else 0 (the other fanout_cluster_ series are then missing).", nil, nil)
	descReadSeconds   = prometheus.NewDesc("fanout_cluster_read_seconds", "How long the last read of the cluster's state took.", nil, nil)
)

// NewServerMetrics reads s's cluster view when scraped; register it in a
// MetricsServer's Registry.
func NewServerMetrics(s *Server) *ServerMetrics { return &ServerMetrics{s: s} }

var _ prometheus.Collector = (*ServerMetrics)(nil)

// Describe sends the descriptions of every series.
func (m *ServerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWatchLast, descWatchComplete, descWatchLate, descWatchTargets, descWatchTotal,
		descWatchOwners, descWatchStopped, descWorkers, descStreamMsgs, descStreamBytes, descReadOK, descReadSeconds} {
		ch <- d
	}
}

// Collect reads the cluster (or reuses the last read, when recent).
func (m *ServerMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil || time.Since(m.at) >= serverReadEvery {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ms, err := m.read(ctx)
		cancel()
		ok := 1.0
		if err != nil {
			ok, ms = 0, nil
		}
		ms = append(ms, prometheus.MustNewConstMetric(descReadOK, prometheus.GaugeValue, ok),
			prometheus.MustNewConstMetric(descReadSeconds, prometheus.GaugeValue, time.Since(t0).Seconds()))
		m.last, m.at = ms, time.Now()
	}
	for _, x := range m.last {
		ch <- x
	}
}

// Close drops the connection the reads use.
func (m *ServerMetrics) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nc != nil {
		m.nc.Close()
		m.nc, m.c = nil, nil
	}
}

func (m *ServerMetrics) client(ctx context.Context) (*Client, error) {
	if m.c != nil {
		return m.c, nil
	}
	if m.nc == nil {
		opts := []nats.Option{nats.InProcessServer(m.s.ns), nats.Name("fanout server metrics"), nats.MaxReconnects(-1)}
		if m.s.self != nil {
			pub, _ := m.s.self.PublicKey()
			opts = append(opts, nats.Nkey(pub, m.s.self.Sign))
		}
		nc, err := nats.Connect("", opts...)
		if err != nil {
			return nil, err
		}
		m.nc = nc
	}
	// Not ensureMode's wait: a clustered server's JetStream may not be
	// ready yet, and the next scrape tries again.
	s, err := ensureOnce(ctx, m.nc, false, 0)
	if err != nil {
		return nil, err
	}
	m.c = &Client{nc: m.nc, s: s}
	return m.c, nil
}

func (m *ServerMetrics) read(ctx context.Context) ([]prometheus.Metric, error) {
	c, err := m.client(ctx)
	if err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	ws, err := c.Watches(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		gauge(descWatchLast, float64(w.LastRound), w.ID)
		gauge(descWatchComplete, float64(w.Complete), w.ID)
		gauge(descWatchLate, float64(w.Late), w.ID)
		gauge(descWatchTotal, float64(w.Total), w.ID)
		if w.Complete > 0 {
			gauge(descWatchTargets, float64(w.Up), w.ID, "up")
			gauge(descWatchTargets, float64(w.Down), w.ID, "down")
			gauge(descWatchOwners, float64(len(w.Owners)), w.ID)
		}
		stopped := 0.0
		if w.Stopped {
			stopped = 1
		}
		gauge(descWatchStopped, stopped, w.ID)
	}
	beats, err := c.Workers(ctx)
	if err != nil {
		return nil, err
	}
	gauge(descWorkers, float64(len(beats)))
	names := c.s.js.ListStreams(ctx)
	for info := range names.Info() {
		gauge(descStreamMsgs, float64(info.State.Msgs), info.Config.Name)
		gauge(descStreamBytes, float64(info.State.Bytes), info.Config.Name)
	}
	if err := names.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// monitorOptions turns on NATS's own monitoring endpoint (HTTP, read-only,
// unauthenticated) on addr: PORT or HOST:PORT, a missing host meaning
// 127.0.0.1; port 0 picks one. The port is checked free first, so that
// one in use is an error before the server starts.
func monitorOptions(opts *server.Options, addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := MonitorAddr(addr)
	if err != nil {
		return err
	}
	if port != 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("--monitor: %w on %s: %v", ErrMetricsAddr, net.JoinHostPort(host, strconv.Itoa(port)), unwrapOp(err))
		}
		ln.Close()
	} else {
		port = server.RANDOM_PORT
	}
	opts.HTTPHost, opts.HTTPPort = host, port
	return nil
}

// MonitorAddr reads a --monitor address: PORT or HOST:PORT, a missing
// host meaning 127.0.0.1.
func MonitorAddr(addr string) (string, int, error) {
	host, ps := "", addr
	if h, p, err := net.SplitHostPort(addr); err == nil {
		host, ps = h, p
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("--monitor: %w on %q: want PORT or HOST:PORT (8222, 127.0.0.1:8222)", ErrMetricsAddr, addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return host, port, nil
}

// MonitorAddr is where NATS's monitoring endpoint listens (nil: off).
func (s *Server) MonitorAddr() net.Addr {
	if a := s.ns.MonitorAddr(); a != nil {
		return a
	}
	return nil
}
