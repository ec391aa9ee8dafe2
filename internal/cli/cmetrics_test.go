package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/internal/testwait"
)

// scrapeMetrics reads url and parses it with client_golang's text parser:
// a malformed exposition fails the test.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: exposition: %v", url, err)
	}
	return fams
}

// metricValue is the value of the series of family name whose labels
// include want (counter, gauge, or a histogram's count); ok false when
// there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// servedAt is the address a process said it serves on, from its stderr
// line matching re (one group).
func servedAt(t *testing.T, p *bgProc, re string) string {
	t.Helper()
	r := regexp.MustCompile(re)
	var m []string
	waitFor(t, "a line matching "+re, testwait.Hang, func() bool { m = r.FindStringSubmatch(p.errText()); return m != nil })
	return m[1]
}

// fanout server --metrics and fanout worker --metrics, scraped after a
// sweep (its tasks, targets and refused errors, summed over workers), while a
// cluster watch of 300 refused tcp targets (150 chunks of 2) runs on two
// workers, then once it is stopped and its rounds done: every exposition
// parses; each worker polled, every round it saw tick, exactly the chunks
// rendezvous hashing gives it (chunks = rounds x its share), and counted
// their targets (down, refused), results and one down change per target;
// summed over workers, rounds x 150 chunks; no takeover. The server's view
// says the rounds complete, 300 down, two workers, the streams' sizes; and
// --monitor serves NATS's own /varz on loopback.
func TestClusterMetrics(t *testing.T) {
	t.Parallel()
	const n, chunks = 300, 150
	url, srv := testServer(t, "--metrics", "127.0.0.1:0", "--monitor", "0")
	smetrics := "http://" + servedAt(t, srv, `metrics on http://(\S+)/metrics`) + "/metrics"
	monitor := servedAt(t, srv, `NATS monitoring on http://(\S+)/`)
	if h, _, _ := net.SplitHostPort(monitor); h != "127.0.0.1" {
		t.Errorf("--monitor 0 listens on %s, want 127.0.0.1", monitor)
	}
	workers := []string{"w1", "w2"}
	wmetrics := map[string]string{}
	procs := map[string]*bgProc{}
	for _, w := range workers {
		p := testWorker(t, url, w, "-c", "100", "--metrics", "127.0.0.1:0")
		procs[w] = p
		wmetrics[w] = "http://" + servedAt(t, p, `metrics on http://(\S+)/metrics`) + "/metrics"
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := http.Get(wmetrics[w])
				if b != nil {
					body, _ := io.ReadAll(b.Body)
					var ours []string
					for _, l := range strings.Split(string(body), "\n") {
						if strings.HasPrefix(l, "fanout_") {
							ours = append(ours, l)
						}
					}
					t.Logf("%s metrics:\n%s", w, strings.Join(ours, "\n"))
				}
			}
		})
	}
	waitFor(t, "the server to see both workers", testwait.Hang, func() bool {
		v, _ := metricValue(scrapeMetrics(t, smetrics), "fanout_cluster_workers", nil)
		return v == 2
	})
	// A sweep first: its tasks, targets and errors, summed over workers.
	sw := fanout(t, "", "tcp", "-p", "1", "--server", url, "--progress", "never", "-o", "jsonl", "127.0.0.1-50")
	tasks := regexp.MustCompile(`50 targets in (\d+) tasks`).FindStringSubmatch(sw.stderr)
	if sw.code != 1 || tasks == nil {
		t.Fatalf("sweep: exit %d, want 1 (every target refused), and its task count: %s", sw.code, sw.stderr)
	}
	var sweep map[string]float64
	// A task is counted once acked, just after its results reach the
	// submitter.
	waitFor(t, "the workers to count the sweep's tasks", testwait.Hang, func() bool {
		sweep = map[string]float64{}
		for _, name := range workers {
			f := scrapeMetrics(t, wmetrics[name])
			for _, k := range []string{"fanout_worker_tasks_total", "fanout_worker_task_results_published_total", "fanout_worker_task_duration_seconds"} {
				v, _ := metricValue(f, k, nil)
				sweep[k] += v
			}
			v, _ := metricValue(f, "fanout_worker_task_targets_total", map[string]string{"status": "down"})
			sweep["down"] += v
			v, _ = metricValue(f, "fanout_worker_task_errors_total", map[string]string{"class": "refused"})
			sweep["refused"] += v
		}
		return sweep["fanout_worker_tasks_total"] >= atof(tasks[1])
	})
	if want := map[string]float64{"fanout_worker_tasks_total": atof(tasks[1]), "fanout_worker_task_duration_seconds": atof(tasks[1]),
		"fanout_worker_task_results_published_total": 50, "down": 50, "refused": 50}; fmt.Sprint(sweep) != fmt.Sprint(want) {
		t.Errorf("sweep of 50 refused targets in %s tasks, summed over workers: %v, want %v", tasks[1], sweep, want)
	}

	sub := fanout(t, "", "watch", "tcp", "-p", "1", "--every", "1s", "--timeout", "1s", "--server", url, "--detach", "127.0.0.1-127.0.1.44")
	if sub.code != 0 {
		t.Fatalf("watch --detach: exit %d: %s", sub.code, sub.stderr)
	}
	id := strings.TrimSpace(sub.stdout)
	w := map[string]string{"watch": id}
	var sf map[string]*dto.MetricFamily
	waitFor(t, "the server to count 3 complete rounds", testwait.Hang, func() bool {
		sf = scrapeMetrics(t, smetrics)
		v, _ := metricValue(sf, "fanout_cluster_watch_complete_round", w)
		return v >= 3
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"fanout_cluster_read_ok", nil, 1},
		{"fanout_cluster_workers", nil, 2},
		{"fanout_cluster_watch_total_targets", w, n},
		{"fanout_cluster_watch_targets", map[string]string{"watch": id, "status": "down"}, n},
		{"fanout_cluster_watch_targets", map[string]string{"watch": id, "status": "up"}, 0},
		{"fanout_cluster_watch_owners", w, 2},
		{"fanout_cluster_watch_stopped", w, 0},
	} {
		if v, ok := metricValue(sf, c.name, c.labels); !ok || v != c.want {
			t.Errorf("server: %s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if v, _ := metricValue(sf, "fanout_cluster_stream_messages", map[string]string{"stream": cluster.WatchResultsStream}); v < 3*chunks {
		t.Errorf("server: %s messages %v, want at least 3 rounds' results and done marks", cluster.WatchResultsStream, v)
	}
	if v, _ := metricValue(sf, "fanout_cluster_watch_last_round", w); v < 3 {
		t.Errorf("server: last round ticked %v, want at least 3", v)
	}

	if st := fanout(t, "", "watch", "stop", "--server", url, id); st.code != 0 {
		t.Fatalf("watch stop: exit %d: %s", st.code, st.stderr)
	}
	rounds := map[string]float64{}
	sum := 0.0
	for _, name := range workers {
		// A worker forgets a stopped watch once its open rounds are done.
		waitFor(t, name+" to finish the watch's rounds", testwait.Hang, func() bool {
			return strings.Contains(procs[name].errText(), "watch "+id+": stopped")
		})
		f := scrapeMetrics(t, wmetrics[name])
		share := 0
		for c := range uint64(chunks) {
			if cluster.Owner(id, c, workers) == name {
				share++
			}
		}
		r, _ := metricValue(f, "fanout_worker_watch_rounds_total", w)
		rounds[name] = r
		targets := r * float64(2*share)
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"fanout_worker_watch_chunks_total", w, r * float64(share)},
			{"fanout_worker_watch_chunk_duration_seconds", w, r * float64(share)},
			{"fanout_worker_watch_targets_total", map[string]string{"watch": id, "status": "down"}, targets},
			{"fanout_worker_watch_errors_total", map[string]string{"watch": id, "class": "refused"}, targets},
			{"fanout_worker_watch_results_published_total", w, targets},
			{"fanout_worker_watch_changes_total", map[string]string{"watch": id, "kind": "down"}, float64(2 * share)},
		} {
			if v, ok := metricValue(f, c.name, c.labels); !ok || v != c.want {
				t.Errorf("%s: %s%v = %v (present %v), want %v (%v rounds, %d of %d chunks its own)", name, c.name, c.labels, v, ok, c.want, r, share, chunks)
			}
		}
		for _, absent := range []string{"fanout_worker_watch_takeovers_total", "fanout_worker_watch_chunk_failures_total"} {
			if v, ok := metricValue(f, absent, w); ok && v != 0 {
				t.Errorf("%s: %s = %v, want 0 (membership held)", name, absent, v)
			}
		}
		if v, ok := metricValue(f, "fanout_worker_watch_targets_total", map[string]string{"watch": id, "status": "up"}); ok && v != 0 {
			t.Errorf("%s: %v targets up, want none (port 1 refuses)", name, v)
		}
		c, _ := metricValue(f, "fanout_worker_watch_chunks_total", w)
		sum += c
	}
	t.Logf("rounds seen: %v; chunks run: %v", rounds, sum)
	// Both saw every tick (a tick racing the stop can reach one worker only).
	if rounds["w1"] == rounds["w2"] {
		if sum != rounds["w1"]*chunks {
			t.Errorf("chunks run summed over workers: %v, want %v rounds x %d chunks", sum, rounds["w1"], chunks)
		}
		waitFor(t, "the server to count every round complete", testwait.Hang, func() bool {
			v, _ := metricValue(scrapeMetrics(t, smetrics), "fanout_cluster_watch_complete_round", w)
			return v == rounds["w1"]
		})
	}
	// The server reads the cluster at most every 2 s: a scrape may give
	// the read before the stop until then.
	waitFor(t, "the server to show the watch stopped", testwait.Hang, func() bool {
		v, _ := metricValue(scrapeMetrics(t, smetrics), "fanout_cluster_watch_stopped", w)
		return v == 1
	})

	// NATS's own monitoring: /varz answers JSON naming the server.
	resp, err := http.Get("http://" + monitor + "/varz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var varz struct {
		ServerID  string `json:"server_id"`
		JetStream any    `json:"jetstream"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&varz); err != nil || varz.ServerID == "" {
		t.Errorf("monitor /varz: %v, server_id %q", err, varz.ServerID)
	}
}

// An address in use for --metrics or --monitor is a usage error (exit 2)
// before the server starts or the worker connects; so is a malformed one.
func TestClusterMetricsAddrInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := free.Addr().String()
	free.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--listen", listen, "--store", t.TempDir(), "--metrics", addr}, "--metrics: cannot listen on " + addr},
		{[]string{"server", "--listen", listen, "--store", t.TempDir(), "--monitor", port}, "--monitor: cannot listen on " + addr},
		{[]string{"server", "--listen", listen, "--store", t.TempDir(), "--monitor", "http://x"}, "--monitor: cannot listen on \"http://x\": want PORT or HOST:PORT"},
		{[]string{"server", "--listen", listen, "--store", t.TempDir(), "--metrics", "9108"}, "--metrics: cannot listen on \"9108\": want HOST:PORT"},
		{[]string{"worker", "--server", "nats://127.0.0.1:1", "--metrics", addr}, "--metrics: cannot listen on " + addr},
	} {
		r := fanout(t, "", c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "ready on") || strings.Contains(r.stderr, "connect") {
			t.Errorf("fanout %s: exit %d, stderr:\n%s\nwant exit 2 before start, saying %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
}

// kill -9 one of two workers mid-watch: once its heartbeat expires, the
// other takes over its unfinished chunks of the open rounds, and counts
// them (fanout_worker_watch_takeovers_total); the server's view shows one
// live worker, rounds complete again polled by that one alone, and the
// rounds of the outage late.
func TestClusterMetricsTakeover(t *testing.T) {
	t.Parallel()
	url, srv := testServer(t, "--metrics", "127.0.0.1:0")
	smetrics := "http://" + servedAt(t, srv, `metrics on http://(\S+)/metrics`) + "/metrics"
	w1 := testWorker(t, url, "w1", "--metrics", "127.0.0.1:0")
	m1 := "http://" + servedAt(t, w1, `metrics on http://(\S+)/metrics`) + "/metrics"
	w2 := testWorker(t, url, "w2")
	waitFor(t, "the server to see both workers", testwait.Hang, func() bool {
		v, _ := metricValue(scrapeMetrics(t, smetrics), "fanout_cluster_workers", nil)
		return v == 2
	})
	sub := fanout(t, "", "watch", "tcp", "-p", "1", "--every", "1s", "--timeout", "1s", "--server", url, "--detach", "127.0.0.1-64")
	if sub.code != 0 {
		t.Fatalf("watch --detach: exit %d: %s", sub.code, sub.stderr)
	}
	id := strings.TrimSpace(sub.stdout)
	w := map[string]string{"watch": id}
	var killedAt float64
	waitFor(t, "round 2 complete, polled by both", testwait.Hang, func() bool {
		f := scrapeMetrics(t, smetrics)
		r, _ := metricValue(f, "fanout_cluster_watch_complete_round", w)
		o, _ := metricValue(f, "fanout_cluster_watch_owners", w)
		killedAt = r
		return r >= 2 && o == 2
	})
	if v, ok := metricValue(scrapeMetrics(t, m1), "fanout_worker_watch_takeovers_total", w); ok && v != 0 {
		t.Fatalf("w1 took over %v chunks before any worker died", v)
	}
	w2.kill()
	waitFor(t, "w1 to take over w2's chunks", testwait.Hang, func() bool {
		v, _ := metricValue(scrapeMetrics(t, m1), "fanout_worker_watch_takeovers_total", w)
		return v > 0
	})
	waitFor(t, "rounds complete again, polled by w1 alone", testwait.Hang, func() bool {
		f := scrapeMetrics(t, smetrics)
		r, _ := metricValue(f, "fanout_cluster_watch_complete_round", w)
		o, _ := metricValue(f, "fanout_cluster_watch_owners", w)
		n, _ := metricValue(f, "fanout_cluster_workers", nil)
		return r > killedAt+2 && o == 1 && n == 1
	})
	f := scrapeMetrics(t, smetrics)
	if v, _ := metricValue(f, "fanout_cluster_watch_late_rounds", w); v < 1 {
		t.Errorf("server: %v late rounds among the last 10, want the outage's (w2's chunks done a heartbeat TTL late)", v)
	}
	if v, _ := metricValue(f, "fanout_cluster_watch_targets", map[string]string{"watch": id, "status": "down"}); v != 64 {
		t.Errorf("server: %v targets down in the newest complete round, want 64", v)
	}
	if st := fanout(t, "", "watch", "stop", "--server", url, id); st.code != 0 {
		t.Fatalf("watch stop: exit %d: %s", st.code, st.stderr)
	}
}

func atof(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}
