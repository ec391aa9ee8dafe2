// Package metrics serves a watch's Prometheus metrics (`fanout watch
// --metrics ADDR`), with prometheus/client_golang: per watch, rounds run and
// late, targets up, down and in error, change events, errors by class, the
// round's duration and an RTT histogram; and, for watches of at most
// Options.MaxTargets targets, one fanout_up and one fanout_rtt_seconds
// series per target, blackbox_exporter's probe_success convention.
//
// An Exporter is a watch.Observer. Its methods update cheap state (atomic
// counters, and the round's per-target samples, which only the observer's
// goroutine touches); at RoundEnd the round's samples become the published
// snapshot, swapped in atomically. A scrape reads the snapshot: it never
// takes a lock the round needs, so a scrape never holds a round, and a round
// never holds a scrape. Scrapes between rounds see the last finished round;
// targets that left the set are gone from the next snapshot, and so are
// their series. The per-target series bypass the registry (series.go): each
// target's label set is escaped once, the round's text written once, and
// gzipped once for the scrapes that ask for gzip.
package metrics

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// DefaultMaxTargets is the default bound on per-target series.
const DefaultMaxTargets = 10000

// Options of an Exporter.
type Options struct {
	// MaxTargets: rounds of at most this many targets get one fanout_up
	// and one fanout_rtt_seconds series per target; bigger rounds only the
	// watch's totals. 0 means none.
	MaxTargets int
}

// Exporter serves a watch's metrics over HTTP and observes its rounds.
type Exporter struct {
	o   Options
	ln  net.Listener
	srv *http.Server
	reg *prometheus.Registry

	rounds   *prometheus.CounterVec
	late     *prometheus.CounterVec
	targets  *prometheus.GaugeVec
	last     *prometheus.GaugeVec
	changes  *prometheus.CounterVec
	errs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rtt      *prometheus.HistogramVec

	// The observer's goroutine alone: the round being observed.
	watch   string
	perT    bool       // this round gets per-target series
	samples []sample   // this round's targets
	table   labelTable // the targets' label sets, across rounds
	rttObs  prometheus.Observer
	errC    map[job.Class]prometheus.Counter // errs by class, for e.watch

	snap atomic.Pointer[snapshot] // the last finished round's, for scrapes

	collectHook func() // tests: runs in the middle of a scrape
	serveErr    chan error
	closeOnce   sync.Once
}

var _ watch.Observer = (*Exporter)(nil)

// Listen listens on addr (host:port; port 0 picks one) and serves /metrics
// there from a goroutine of its own, at once: the address in use is an error
// here, before the watch's first round.
func Listen(addr string, o Options) (*Exporter, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("metrics address %q: want HOST:PORT (127.0.0.1:9108, :9108): %v", addr, err)
	}
	if o.MaxTargets < 0 {
		return nil, fmt.Errorf("metrics: MaxTargets %d, want 0 or more", o.MaxTargets)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", addr, unwrapOp(err))
	}
	e := newExporter(o)
	e.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", e.serveMetrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "fanout watch: metrics at /metrics")
	})
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	e.serveErr = make(chan error, 1)
	go func() { e.serveErr <- e.srv.Serve(ln) }()
	return e, nil
}

// unwrapOp drops net.OpError's "listen tcp" prefix: the caller names the flag.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func newExporter(o Options) *Exporter {
	e := &Exporter{o: o, reg: prometheus.NewRegistry(), errC: map[job.Class]prometheus.Counter{}}
	w := []string{"watch"}
	e.rounds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_watch_rounds_total",
		Help: "Rounds the watch finished."}, w)
	e.late = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_watch_rounds_late_total",
		Help: "Rounds that started after their due time because the round before was still running."}, w)
	e.targets = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fanout_watch_targets",
		Help: "Targets of the last finished round by status (up, down, error)."}, []string{"watch", "status"})
	e.last = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fanout_watch_last_round",
		Help: "Number of the last finished round."}, w)
	e.changes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_watch_changes_total",
		Help: "Change events by kind (down, up, class, output, loss, flapping, settled, removed)."}, []string{"watch", "kind"})
	e.errs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanout_watch_errors_total",
		Help: "Results that were not up, by error class."}, []string{"watch", "class"})
	e.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fanout_watch_round_duration_seconds",
		Help: "Wall time of each round.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}, w)
	e.rtt = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fanout_watch_rtt_seconds",
		Help:    "Round-trip (connect, reply) times of the results that were up.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17)}, w)
	e.reg.MustRegister(e.rounds, e.late, e.targets, e.last, e.changes, e.errs, e.duration, e.rtt,
		collectors.NewGoCollector(), newProcessCollector())
	return e
}

// Addr is the address the Exporter listens on.
func (e *Exporter) Addr() net.Addr { return e.ln.Addr() }

// Close stops serving.
func (e *Exporter) Close() error {
	var err error
	e.closeOnce.Do(func() {
		err = e.srv.Close()
		if serr := <-e.serveErr; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	})
	return err
}

// RoundStart begins collecting the round's per-target samples.
func (e *Exporter) RoundStart(r watch.Round) {
	if w := strings.ToValidUTF8(r.Watch, "\uFFFD"); w != e.watch || e.rttObs == nil {
		e.watch = w
		e.rttObs = e.rtt.WithLabelValues(w)
		clear(e.errC)
	}
	e.perT = e.o.MaxTargets > 0 && r.Targets <= e.o.MaxTargets
	e.samples = nil
	if e.perT {
		e.samples = make([]sample, 0, min(max(r.Targets, 0), e.o.MaxTargets))
		e.table.startRound(e.watch)
	}
}

// knownClasses bound the class label: a result from elsewhere (a cluster
// worker) cannot make up label values.
var knownClasses = map[job.Class]bool{job.ClassTimeout: true, job.ClassRefused: true, job.ClassUnreachable: true,
	job.ClassResolve: true, job.ClassAuth: true, job.ClassHostKey: true, job.ClassExit: true, job.ClassProto: true,
	job.ClassCanceled: true, job.ClassLocal: true}

// Result updates the watch's counters and the round's sample of r's target.
func (e *Exporter) Result(_ uint64, r job.Result) {
	if e.rttObs == nil { // a Result before any RoundStart
		e.rttObs = e.rtt.WithLabelValues(e.watch)
	}
	up := r.Status == job.Up
	if up && r.RTT > 0 {
		e.rttObs.Observe(r.RTT.Seconds())
	}
	if !up {
		c := e.errC[r.Class]
		if c == nil {
			cl := r.Class
			if !knownClasses[cl] {
				cl = "other"
			}
			c = e.errs.WithLabelValues(e.watch, string(cl))
			if len(e.errC) < 64 { // classes a job made up share "other", uncached
				e.errC[r.Class] = c
			}
		}
		c.Inc()
	}
	if !e.perT {
		return
	}
	i := e.table.lookup(&r)
	s := sample{lset: e.table.lset[i], up: up}
	if up && r.RTT > 0 {
		s.rtt = int64(r.RTT)
	}
	if k := e.table.cur[i]; k >= 0 {
		e.samples[k] = s // a target reported twice: its last result
		return
	}
	if len(e.samples) >= e.o.MaxTargets {
		return
	}
	e.table.cur[i] = int32(len(e.samples))
	e.samples = append(e.samples, s)
}

// kinds bound the kind label to the contract's kinds.
var kinds = map[watch.Kind]bool{watch.Down: true, watch.Up: true, watch.Class: true, watch.Output: true,
	watch.Loss: true, watch.Flapping: true, watch.Settled: true, watch.Removed: true}

// Change counts a change event.
func (e *Exporter) Change(c watch.Change) {
	k := c.Kind
	if !kinds[k] {
		k = "other"
	}
	e.changes.WithLabelValues(e.watch, string(k)).Inc()
}

// RoundEnd publishes the round: its totals, and its per-target samples as
// the snapshot scrapes read.
func (e *Exporter) RoundEnd(r watch.Round) {
	w := strings.ToValidUTF8(r.Watch, "\uFFFD")
	e.rounds.WithLabelValues(w).Inc()
	if r.Late {
		e.late.WithLabelValues(w).Inc()
	}
	e.targets.WithLabelValues(w, "up").Set(float64(r.Up))
	e.targets.WithLabelValues(w, "down").Set(float64(r.Down))
	e.targets.WithLabelValues(w, "error").Set(float64(r.Error))
	e.last.WithLabelValues(w).Set(float64(r.N))
	if !r.End.IsZero() && !r.Start.IsZero() {
		e.duration.WithLabelValues(w).Observe(r.End.Sub(r.Start).Seconds())
	}
	s := &snapshot{}
	if e.perT {
		s.samples = e.samples
		e.table.compact(e.samples)
	}
	e.snap.Store(s)
	e.samples, e.perT = nil, false
}

// serveMetrics answers a scrape in Prometheus' text format: the per-target
// families of the last finished round (rendered once for every scrape of
// it), then the registry's (a few dozen series, gathered anew). With
// Accept-Encoding: gzip, as Prometheus asks, the answer is one gzip member
// whose head is the round's text deflated once, and whose tail deflates the
// registry's text for this scrape: a scrape without gzip pays nothing for
// it, one with gzip compresses the round once.
func (e *Exporter) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s := e.snap.Load()
	mfs, err := e.reg.Gather()
	if e.collectHook != nil {
		e.collectHook() // mid-scrape: the round's counters gathered, its snapshot held
	}
	if err != nil && len(mfs) == 0 {
		http.Error(w, "gather metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	reg := bufPool.Get().(*bytes.Buffer)
	defer putBuf(reg)
	reg.Reset()
	enc := expfmt.NewEncoder(reg, textFormat)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			http.Error(w, "encode metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", string(textFormat))
	h.Set("Vary", "Accept-Encoding")
	if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
		per := s.rendered()
		h.Set("Content-Length", strconv.Itoa(len(per)+reg.Len()))
		if _, err := w.Write(per); err == nil {
			w.Write(reg.Bytes())
		}
		return
	}
	head := s.gzipped()
	tail := bufPool.Get().(*bytes.Buffer)
	defer putBuf(tail)
	tail.Reset()
	fw := getFlate(tail)
	fw.Write(reg.Bytes())
	fw.Close() // the final block
	flatePool.Put(fw)
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc32.Update(head.crc, crc32.IEEETable, reg.Bytes()))
	binary.LittleEndian.PutUint32(trailer[4:], head.size+uint32(reg.Len())) // ISIZE: the length mod 2^32
	h.Set("Content-Encoding", "gzip")
	h.Set("Content-Length", strconv.Itoa(len(gzipHeader)+len(head.data)+tail.Len()+len(trailer)))
	for _, b := range [][]byte{gzipHeader, head.data, tail.Bytes(), trailer[:]} {
		if _, err := w.Write(b); err != nil {
			return // the client went away
		}
	}
}

var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// gzipHeader is a gzip member's header (RFC 1952): deflate, no flags, no
// time, operating system unknown.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

// acceptsGzip reads Accept-Encoding: gzip listed with a q above 0
// (Prometheus sends "gzip").
func acceptsGzip(vals []string) bool {
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			q, ok := strings.CutPrefix(strings.ReplaceAll(strings.TrimSpace(params), " ", ""), "q=")
			if !ok {
				return true
			}
			if f, err := strconv.ParseFloat(q, 64); err == nil && f > 0 {
				return true
			}
		}
	}
	return false
}

// bufPool holds the scrapes' buffers for the registry's text.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		bufPool.Put(b)
	}
}
