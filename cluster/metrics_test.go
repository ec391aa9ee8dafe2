package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesOf is the number of series of family name in reg, and the value
// of the one whose watch label is watch.
func seriesOf(t *testing.T, reg *prometheus.Registry, name, watch string) (int, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		v := 0.0
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "watch" && l.GetValue() == watch {
					v = m.GetCounter().GetValue()
				}
			}
		}
		return len(mf.GetMetric()), v
	}
	return 0, 0
}

func TestMonitorAddr(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		host string
		port int
		bad  bool
	}{
		{"8222", "127.0.0.1", 8222, false},
		{":8222", "127.0.0.1", 8222, false},
		{"0", "127.0.0.1", 0, false},
		{"0.0.0.0:8222", "0.0.0.0", 8222, false},
		{"[::1]:8222", "::1", 8222, false},
		{"", "", 0, true},
		{"http://x", "", 0, true},
		{"70000", "", 0, true},
		{"-1", "", 0, true},
		{"host:port", "", 0, true},
	} {
		h, p, err := MonitorAddr(c.in)
		if c.bad {
			if err == nil || !errors.Is(err, ErrMetricsAddr) || !strings.Contains(err.Error(), fmt.Sprintf("%q", c.in)) {
				t.Errorf("MonitorAddr(%q) = %q, %d, %v: want an error naming it", c.in, h, p, err)
			}
			continue
		}
		if err != nil || h != c.host || p != c.port {
			t.Errorf("MonitorAddr(%q) = %q, %d, %v: want %q, %d", c.in, h, p, err, c.host, c.port)
		}
	}
}

// A worker's metrics keep the series of the last forgetAfter stopped
// watches, and forget older ones: bounded, whatever number of watches it ran.
func TestWorkerMetricsForgetStoppedWatches(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewWorkerMetrics(reg)
	for i := range forgetAfter + 5 {
		id := fmt.Sprintf("w%d", i)
		m.round(id)
		m.takeover(id)
		m.watchStopped(id)
	}
	if n, v := seriesOf(t, reg, "fanout_worker_watch_rounds_total", fmt.Sprintf("w%d", forgetAfter+4)); n != forgetAfter || v != 1 {
		t.Errorf("%d watches' rounds series, the last stopped one's %v: want the last %d stopped, and 1", n, v, forgetAfter)
	}
	if n, v := seriesOf(t, reg, "fanout_worker_watch_takeovers_total", "w0"); n != forgetAfter || v != 0 {
		t.Errorf("%d watches' takeover series, the first stopped one's %v: want %d, and it forgotten", n, v, forgetAfter)
	}
	var nilM *WorkerMetrics // counts nothing, panics never
	nilM.round("x")
	nilM.watchStopped("x")
	nilM.handedBack()
}
