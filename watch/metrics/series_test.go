package metrics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/watch"
)

// get fetches /metrics with the given Accept-Encoding (none when empty),
// without the client's own decompression, and returns the answer's
// Content-Encoding and raw body.
func get(t *testing.T, e *Exporter, acceptEncoding string) (string, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+e.Addr().String()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
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
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Fatalf("Content-Length %q, body of %d bytes", cl, len(body))
	}
	return resp.Header.Get("Content-Encoding"), body
}

// parse parses a scrape with Prometheus' text parser, and with promtool
// when installed.
func parse(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	promtool(t, body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape does not parse: %v\n%s", err, body)
	}
	return fams
}

// gunzip decompresses body as one gzip member (Prometheus' client, curl and
// browsers all read one), checking its CRC and length, and with the gzip
// program too when installed.
func gunzip(t *testing.T, body []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	zr.Multistream(false)
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip body: %v", err)
	}
	if _, err := zr.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("bytes after the gzip member: %v", err)
	}
	if path, err := exec.LookPath("gzip"); err == nil {
		cmd := exec.Command(path, "-dc")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gzip -dc: %v", err)
		}
		if !bytes.Equal(out, text) {
			t.Fatal("gzip -dc and compress/gzip disagree")
		}
	}
	return text
}

// perTarget is the per-target families' lines of a scrape, in order.
func perTarget(text []byte) string {
	var b strings.Builder
	for line := range strings.SplitSeq(string(text), "\n") {
		if strings.HasPrefix(line, "fanout_up{") || strings.HasPrefix(line, "fanout_rtt_seconds{") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestGzip: with Accept-Encoding: gzip (as Prometheus sends it) a scrape is
// one valid gzip member holding what a plain scrape holds, before any
// round, at the round's first scrape and at a later one; without it, or
// with gzip refused (q=0), the scrape is plain.
func TestGzip(t *testing.T) {
	t.Parallel()
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	enc, body := get(t, e, "gzip")
	if enc != "gzip" {
		t.Fatalf("before any round: Content-Encoding %q, want gzip", enc)
	}
	if fams := parse(t, gunzip(t, body)); fams["fanout_watch_rounds_total"] == nil && fams["go_goroutines"] == nil {
		t.Fatal("before any round: no registry metrics in the gzipped scrape")
	}
	rs := make([]job.Result, 50)
	for i := range rs {
		rs[i] = job.Result{Host: fmt.Sprintf("host-%d.example", i), Status: job.Up, RTT: time.Duration(i+1) * time.Millisecond}
	}
	for n := uint64(1); n <= 2; n++ {
		feed(e, n, rs)
		_, plain := get(t, e, "")
		want := perTarget(plain)
		if strings.Count(want, "\n") != 100 {
			t.Fatalf("round %d: plain scrape has %d per-target lines, want 100", n, strings.Count(want, "\n"))
		}
		for _, ae := range []string{"gzip", "gzip, deflate", "deflate, gzip;q=1.0, *;q=0.5"} {
			for k := 0; k < 2; k++ { // the round's first gzipped scrape, then one from its cache
				enc, body := get(t, e, ae)
				if enc != "gzip" {
					t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, enc)
				}
				text := gunzip(t, body)
				parse(t, text)
				if got := perTarget(text); got != want {
					t.Fatalf("round %d, Accept-Encoding %q: gzipped per-target lines differ from the plain scrape's:\n%s\nwant:\n%s", n, ae, got, want)
				}
				if len(body) >= len(text)/2 {
					t.Errorf("gzip: %d bytes for %d", len(body), len(text))
				}
			}
		}
		for _, ae := range []string{"deflate", "gzip;q=0", "identity"} {
			enc, body := get(t, e, ae)
			if enc != "" {
				t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want none", ae, enc)
			}
			if got := perTarget(body); got != want {
				t.Fatalf("Accept-Encoding %q: per-target lines differ", ae)
			}
		}
	}
}

// TestOddTargets: target names that need escaping (quotes, backslashes,
// newlines), that are not valid UTF-8, or carry a port (IPv6 in brackets)
// come out of the exposition as exactly the label values they are, once
// each.
func TestOddTargets(t *testing.T) {
	t.Parallel()
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	w := `w"1\` + "\n"
	rs := []job.Result{
		{Host: `quo"te`, Status: job.Up, RTT: 1500 * time.Microsecond},
		{Host: `back\slash`, Status: job.Down, Class: job.ClassTimeout},
		{Host: "new\nline", Status: job.Up, RTT: 2 * time.Second},
		{Host: "bad\xffutf8", Status: job.Up, RTT: 1},
		{Host: "bad\xfeutf8", Status: job.Down}, // the same label as the one before: its last result counts
		{Host: "::1", Port: 22, Status: job.Up, RTT: time.Millisecond},
		{Host: "[fe80::1%lo]", Port: 8080, Status: job.Down},
		{Host: "web01", Port: 443, Status: job.Up, RTT: 123456789},
		{Host: "héllo.例え", Status: job.Up, RTT: time.Nanosecond * 1000001},
		{Host: "", Status: job.Error, Class: job.ClassResolve},
	}
	e.RoundStart(watch.Round{Watch: w, N: 1, Targets: len(rs)})
	for _, r := range rs {
		e.Result(1, r)
	}
	e.RoundEnd(watch.Round{Watch: w, N: 1})
	for _, ae := range []string{"", "gzip"} {
		_, body := get(t, e, ae)
		if ae == "gzip" {
			body = gunzip(t, body)
		}
		fams := parse(t, body)
		wantUp := map[string]float64{`quo"te`: 1, `back\slash`: 0, "new\nline": 1, "bad\uFFFDutf8": 0,
			"[::1]:22": 1, "[fe80::1%lo]:8080": 0, "web01:443": 1, "héllo.例え": 1, "": 0}
		wantRTT := map[string]float64{`quo"te`: 0.0015, "new\nline": 2, "[::1]:22": 0.001,
			"web01:443": 0.123456789, "héllo.例え": 0.001000001}
		for name, want := range map[string]map[string]float64{"fanout_up": wantUp, "fanout_rtt_seconds": wantRTT} {
			got := map[string]float64{}
			for _, m := range fams[name].GetMetric() {
				var target, watchL string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "target":
						target = l.GetValue()
					case "watch":
						watchL = l.GetValue()
					}
				}
				if watchL != w {
					t.Errorf("%s{target=%q}: watch %q, want %q", name, target, watchL, w)
				}
				if _, dup := got[target]; dup {
					t.Errorf("%s: target %q twice", name, target)
				}
				got[target] = m.GetGauge().GetValue()
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Accept-Encoding %q: %s = %v, want %v", ae, name, got, want)
			}
		}
	}
}

// TestTargetsLeave: a target that left the round loses its series at the
// round's end and gets them back when it returns; a watch whose targets
// keep changing keeps a bounded table of label sets.
func TestTargetsLeave(t *testing.T) {
	t.Parallel()
	e, err := Listen("127.0.0.1:0", Options{MaxTargets: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r := func(h string, up bool) job.Result {
		if up {
			return job.Result{Host: h, Status: job.Up, RTT: time.Millisecond}
		}
		return job.Result{Host: h, Status: job.Down, Class: job.ClassTimeout}
	}
	ups := func() string {
		_, body := get(t, e, "")
		fams := parse(t, body)
		var s []string
		for _, m := range fams["fanout_up"].GetMetric() {
			s = append(s, fmt.Sprintf("%s=%v", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue()))
		}
		return strings.Join(s, " ")
	}
	feed(e, 1, []job.Result{r("a", true), r("b", true), r("c", false)})
	if got := ups(); got != "a=1 b=1 c=0" {
		t.Fatalf("round 1: %s", got)
	}
	feed(e, 2, []job.Result{r("a", false), r("c", true)})
	if got := ups(); got != "a=0 c=1" {
		t.Fatalf("round 2, b left: %s", got)
	}
	feed(e, 3, []job.Result{r("c", true), r("b", false), r("a", true)})
	if got := ups(); got != "c=1 b=0 a=1" {
		t.Fatalf("round 3, b back: %s", got)
	}
	feed(e, 4, nil)
	if got := ups(); got != "" {
		t.Fatalf("round 4, no target: %s", got)
	}
	// 200 rounds of 50 new targets each: the table stays near one round's.
	for n := uint64(5); n < 205; n++ {
		rs := make([]job.Result, 50)
		for i := range rs {
			rs[i] = r(fmt.Sprintf("r%d-%d", n, i), i%2 == 0)
		}
		feed(e, n, rs)
		if len(e.table.lset) > 2*50+64 || len(e.table.slot) != len(e.table.lset) || len(e.table.cur) != len(e.table.lset) {
			t.Fatalf("round %d: table of %d label sets (%d keys, %d cur) for rounds of 50 targets", n, len(e.table.lset), len(e.table.slot), len(e.table.cur))
		}
	}
	got := ups()
	if strings.Count(got, "=") != 50 || !strings.HasPrefix(got, "r204-0=1 r204-1=0 ") {
		t.Fatalf("round 204: %s", got)
	}
	// A target of a compacted-away round comes back with its own labels.
	feed(e, 205, []job.Result{r("a", true), r("r204-1", true)})
	if got := ups(); got != "a=1 r204-1=1" {
		t.Fatalf("round 205: %s", got)
	}
}

// TestAppendSeconds: RTTs are written as exact decimal seconds.
func TestAppendSeconds(t *testing.T) {
	t.Parallel()
	for ns, want := range map[int64]string{1: "0.000000001", 1000: "0.000001", 1500000: "0.0015", 123456789: "0.123456789",
		1e9: "1", 2500 * 1e6: "2.5", 120 * 1e9: "120", 1e9 + 1: "1.000000001"} {
		got := string(appendSeconds([]byte("x "), ns))
		if got != "x "+want {
			t.Errorf("appendSeconds(%d) = %q, want %q", ns, got, "x "+want)
		}
		f, err := strconv.ParseFloat(want, 64)
		if err != nil || f != time.Duration(ns).Seconds() {
			t.Errorf("%s parses to %v (%v), want %v", want, f, err, time.Duration(ns).Seconds())
		}
	}
}

// TestProcessMetrics: the process collector serves client_golang's process
// metrics (but the namespace's network counters) with the same values.
// Not parallel: the other tests open and close sockets.
func TestProcessMetrics(t *testing.T) {
	gather := func(c prometheus.Collector) map[string]float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			out[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return out
	}
	ours := gather(newProcessCollector())
	theirs := gather(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	delete(theirs, "process_network_receive_bytes_total")
	delete(theirs, "process_network_transmit_bytes_total")
	if len(ours) != len(theirs) {
		t.Fatalf("ours: %v\nclient_golang's: %v", ours, theirs)
	}
	for name, v := range theirs {
		o, ok := ours[name]
		tol := 0.0
		switch name {
		case "process_cpu_seconds_total":
			tol = 1 + 0.1*v // between two reads, and in ticks against microseconds
		case "process_resident_memory_bytes", "process_virtual_memory_bytes":
			tol = 0.2*v + 64<<20
		case "process_open_fds":
			tol = 16 // a listener's connections closing meanwhile
		case "process_start_time_seconds":
			tol = 1.0 / userHZ
		}
		if !ok || o < v-tol || o > v+tol || o <= 0 {
			t.Errorf("%s = %v, client_golang's %v", name, o, v)
		}
	}
}
