package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/tcp"
	"github.com/fanout/fanout/watch"
	"github.com/fanout/fanout/watch/watchtest"
)

// tcpDriver polls targets on port: 127.0.0.1 answers while a listener is
// there, the other addresses refuse.
func tcpDriver(t *testing.T, port int, targets string, obs ...watch.Observer) *watchtest.Driver {
	t.Helper()
	spec := fanout.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{targets}, Concurrency: 10, Timeout: 5 * time.Second}
	set, order, j, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	return &watchtest.Driver{Watch: "7", Set: set, Order: order, Job: j, Next: 1, Observers: obs,
		Changes: watchtest.StatusChanges}
}

func round(t *testing.T, d *watchtest.Driver) {
	t.Helper()
	testwait.Returns(t, fmt.Sprintf("round %d", d.Next), func() {
		if _, err := d.Round(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// scrape fetches /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, e *Exporter) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + e.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape does not parse: %v\n%s", err, body)
	}
	return fams, body
}

// series maps each sample of family name to its value, keyed by its labels
// (name=value, comma-separated, sorted).
func series(fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	f := fams[name]
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		var v float64
		switch {
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		}
		sort.Strings(ls)
		out[strings.Join(ls, ",")] = v
	}
	return out
}

// promtool checks the scrape with `promtool check metrics` when Debian's
// prometheus package is installed (CI installs it).
func promtool(t *testing.T, body []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: checked with the client's text parser only")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestScrape drives real tcp rounds through the Exporter and scrapes it over
// HTTP between them: the watch's totals, one fanout_up and fanout_rtt_seconds
// per target, and series of targets that left the set gone.
func TestScrape(t *testing.T) {
	t.Parallel()
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: DefaultMaxTargets})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Serving before the first round: the totals, no target yet.
	fams, _ := scrape(t, e)
	if len(series(fams, "fanout_up")) != 0 {
		t.Fatalf("fanout_up before any round: %v", series(fams, "fanout_up"))
	}

	ln := lab.ClosingListener(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	d := tcpDriver(t, port, "127.0.0.1-4", e)
	target := func(i int) string { return fmt.Sprintf("target=127.0.0.%d:%d,watch=7", i, port) }
	round(t, d) // 1: .1 up
	ln.Close()
	round(t, d)                  // 2: .1 down
	lab.ClosingListener(t, addr) // closed by the test's cleanup
	round(t, d)                  // 3: .1 up again

	fams, body := scrape(t, e)
	promtool(t, body)
	up := series(fams, "fanout_up")
	if len(up) != 4 || up[target(1)] != 1 || up[target(2)] != 0 || up[target(4)] != 0 {
		t.Fatalf("fanout_up = %v, want .1 up and .2-.4 down", up)
	}
	rtt := series(fams, "fanout_rtt_seconds")
	if len(rtt) != 1 || rtt[target(1)] <= 0 {
		t.Fatalf("fanout_rtt_seconds = %v, want one series, of .1", rtt)
	}
	for name, want := range map[string]map[string]float64{
		"fanout_watch_rounds_total":           {"watch=7": 3},
		"fanout_watch_last_round":             {"watch=7": 3},
		"fanout_watch_targets":                {"status=up,watch=7": 1, "status=down,watch=7": 3, "status=error,watch=7": 0},
		"fanout_watch_changes_total":          {"kind=down,watch=7": 1, "kind=up,watch=7": 1},
		"fanout_watch_errors_total":           {"class=refused,watch=7": 10},
		"fanout_watch_round_duration_seconds": {"watch=7": 3},
		"fanout_watch_rtt_seconds":            {"watch=7": 2},
	} {
		if got := series(fams, name); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := series(fams, "fanout_watch_rounds_late_total"); len(got) != 0 {
		t.Errorf("late rounds: %v", got)
	}

	// The set shrinks to .1-.2 (a reloaded @FILE): .3 and .4 are gone.
	d2 := tcpDriver(t, port, "127.0.0.1-2", e)
	d2.Next = d.Next
	round(t, d2)
	fams, body = scrape(t, e)
	promtool(t, body)
	up = series(fams, "fanout_up")
	if len(up) != 2 || up[target(1)] != 1 || up[target(2)] != 0 {
		t.Fatalf("after the set shrank: fanout_up = %v, want .1 and .2 only", up)
	}
}

// TestMaxTargets: a watch over the per-target bound gets the totals only.
func TestMaxTargets(t *testing.T) {
	t.Parallel()
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := tcpDriver(t, 9, "127.0.0.1-4", e) // port 9 (discard): nothing listens, all refuse
	round(t, d)
	fams, _ := scrape(t, e)
	if n := len(series(fams, "fanout_up")); n != 0 {
		t.Fatalf("4 targets over a bound of 3: %d fanout_up series", n)
	}
	if got := series(fams, "fanout_watch_targets")["status=down,watch=7"]; got != 4 {
		t.Fatalf("fanout_watch_targets down = %v, want 4", got)
	}
}

// TestAddressInUse: the constructor listens, so an address in use is an
// error before any round, naming it.
func TestAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), Options{})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Listen on an address in use: %v", err)
	}
	for _, bad := range []string{"9108", "127.0.0.1", "http://127.0.0.1:9108"} {
		if _, err := Listen(bad, Options{}); err == nil || !strings.Contains(err.Error(), "want HOST:PORT") {
			t.Errorf("Listen(%q): %v", bad, err)
		}
	}
}

// TestScrapeNeverBlocksRound: while a scrape is held inside the collector,
// whole rounds go through the Exporter; the scrape then answers with the
// snapshot it started from or a later one, plain or gzipped.
func TestScrapeNeverBlocksRound(t *testing.T) {
	t.Parallel()
	for _, ae := range []string{"", "gzip"} {
		t.Run("Accept-Encoding="+ae, func(t *testing.T) {
			t.Parallel()
			e, err := Listen("127.0.0.1:0", Options{MaxTargets: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			inside, release := make(chan struct{}), make(chan struct{})
			first := true
			e.collectHook = func() {
				if first { // only the first scrape is held (Collect runs once per scrape)
					first = false
					close(inside)
					<-release
				}
			}
			d := tcpDriver(t, 9, "127.0.0.1-4", e)
			round(t, d)
			done := make(chan []byte, 1)
			go func() {
				req, _ := http.NewRequest("GET", "http://"+e.Addr().String()+"/metrics", nil)
				if ae != "" {
					req.Header.Set("Accept-Encoding", ae)
				}
				tr := &http.Transport{DisableCompression: true}
				defer tr.CloseIdleConnections()
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					done <- nil
					return
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				done <- body
			}()
			testwait.Recv(t, "the scrape inside the collector", inside)
			for i := 0; i < 3; i++ {
				round(t, d) // would hang here if a round waited on the scrape
			}
			close(release)
			body, _ := testwait.Recv(t, "the held scrape's answer", done)
			if body == nil {
				t.Fatal("the held scrape failed")
			}
			if ae == "gzip" {
				body = gunzip(t, body)
			}
			if n := len(series(parse(t, body), "fanout_up")); n != 4 {
				t.Fatalf("held scrape: %d fanout_up series, want 4", n)
			}
			fams, _ := scrape(t, e)
			if got := series(fams, "fanout_watch_rounds_total")["watch=7"]; got != 4 {
				t.Fatalf("rounds after the held scrape: %v, want 4", got)
			}
		})
	}
}

// TestHostileLabels: label values from results (host names, classes) that
// are not valid UTF-8 or not known classes do not break the scrape.
func TestHostileLabels(t *testing.T) {
	t.Parallel()
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.RoundStart(watch.Round{Watch: "w\xff", N: 1, Targets: 3})
	e.Result(1, job.Result{Host: "bad\xffname", Status: job.Down, Class: "made-up\xfe"})
	e.Result(1, job.Result{Host: "twice", Status: job.Up, RTT: time.Millisecond})
	e.Result(1, job.Result{Host: "twice", Status: job.Up, RTT: 2 * time.Millisecond})
	e.Change(watch.Change{Kind: "nonsense"})
	e.RoundEnd(watch.Round{Watch: "w\xff", N: 1})
	fams, body := scrape(t, e)
	promtool(t, body)
	if up := series(fams, "fanout_up"); len(up) != 2 {
		t.Fatalf("fanout_up = %v, want 2 series (a duplicate target counts once)", up)
	}
	if got := series(fams, "fanout_watch_errors_total"); got["class=other,watch=w\uFFFD"] != 1 {
		t.Fatalf("errors = %v", got)
	}
}

// BenchmarkScrape10k: one scrape over HTTP of a watch of 10,000 targets.
func BenchmarkScrape10k(b *testing.B) {
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: DefaultMaxTargets})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	feed10k(e, 1)
	url := "http://" + e.Addr().String() + "/metrics"
	get := func() int {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return int(n)
	}
	get()
	b.ResetTimer()
	var bytes int
	for i := 0; i < b.N; i++ {
		if i%10 == 0 { // a new round now and then: its snapshot is built anew
			b.StopTimer()
			feed10k(e, uint64(i+2))
			b.StartTimer()
		}
		bytes = get()
	}
	b.ReportMetric(float64(bytes), "bytes/scrape")
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average: %s", strings.TrimSpace(string(la)))
	}
}

// BenchmarkServe10k: the server's side of a scrape of a 10,000-target watch,
// without HTTP: "first" is the first scrape of a round (which renders it),
// "again" a later one, with and without gzip.
func BenchmarkServe10k(b *testing.B) {
	for _, c := range []struct {
		name  string
		gzip  bool
		first bool
	}{{"plain/first", false, true}, {"plain/again", false, false}, {"gzip/first", true, true}, {"gzip/again", true, false}} {
		b.Run(c.name, func(b *testing.B) {
			e := newExporter(Options{MaxTargets: DefaultMaxTargets})
			feed10k(e, 1)
			req := httptest.NewRequest("GET", "/metrics", nil)
			if c.gzip {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			w := &discard{h: http.Header{}}
			e.serveMetrics(w, req)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if c.first {
					b.StopTimer()
					feed10k(e, uint64(i+2))
					b.StartTimer()
				}
				w.n = 0
				e.serveMetrics(w, req)
			}
			b.ReportMetric(float64(w.n), "bytes/scrape")
		})
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average: %s", strings.TrimSpace(string(la)))
	}
}

// BenchmarkRound10k: what observing a round of 10,000 targets costs the
// round (RoundStart, 10,000 Results, RoundEnd), per-target series on.
func BenchmarkRound10k(b *testing.B) {
	e := newExporter(Options{MaxTargets: DefaultMaxTargets})
	rs := results10k()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		feed(e, uint64(i+1), rs)
	}
}

// discard is a ResponseWriter that counts what it is given.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

func results10k() []job.Result {
	rs := make([]job.Result, 10000)
	for i := range rs {
		r := job.Result{Host: fmt.Sprintf("10.0.%d.%d", i/256, i%256), Status: job.Up, RTT: time.Duration(i+1) * 1234 * time.Nanosecond}
		if i%7 == 0 {
			r.Status, r.Class, r.RTT = job.Down, job.ClassTimeout, 0
		}
		rs[i] = r
	}
	return rs
}

func feed(e *Exporter, n uint64, rs []job.Result) {
	e.RoundStart(watch.Round{Watch: "1", N: n, Targets: len(rs)})
	for _, r := range rs {
		e.Result(n, r)
	}
	e.RoundEnd(watch.Round{Watch: "1", N: n, Up: 8571, Down: 1429})
}

func feed10k(e *Exporter, n uint64) { feed(e, n, results10k()) }
