package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
	"github.com/fanout/fanout/store"
)

func TestHilbert(t *testing.T) {
	t.Parallel()
	for _, n := range []uint32{1, 2, 16, 256} {
		seen := map[[2]uint32]bool{}
		var px, py uint32
		for d := uint32(0); d < n*n; d++ {
			x, y := hilbertXY(n, d)
			if x >= n || y >= n {
				t.Fatalf("n=%d d=%d: (%d,%d) outside the grid", n, d, x, y)
			}
			if seen[[2]uint32{x, y}] {
				t.Fatalf("n=%d d=%d: cell (%d,%d) used twice", n, d, x, y)
			}
			seen[[2]uint32{x, y}] = true
			if got := hilbertD(n, x, y); got != d {
				t.Fatalf("n=%d: hilbertD(hilbertXY(%d)) = %d", n, d, got)
			}
			// Adjacent addresses are adjacent cells.
			if d > 0 && absDiff(x, px)+absDiff(y, py) != 1 {
				t.Fatalf("n=%d: d=%d at (%d,%d) is not next to d-1 at (%d,%d)", n, d, x, y, px, py)
			}
			px, py = x, y
		}
	}
	// Every aligned block of 4^k positions (a subnet) fills a 2^k square.
	const n = 256
	for k := uint32(1); k <= 4; k++ {
		size := uint32(1) << (2 * k)
		for base := uint32(0); base < n*n; base += size * 97 { // a sample of blocks
			minX, minY, maxX, maxY := uint32(n), uint32(n), uint32(0), uint32(0)
			for d := base; d < base+size; d++ {
				x, y := hilbertXY(n, d)
				minX, minY, maxX, maxY = min(minX, x), min(minY, y), max(maxX, x), max(maxY, y)
			}
			if side := uint32(1) << k; maxX-minX+1 != side || maxY-minY+1 != side {
				t.Errorf("block %d of %d positions spans %dx%d, want a %dx%d square", base, size, maxX-minX+1, maxY-minY+1, side, side)
			}
		}
	}
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

func TestMapLayout(t *testing.T) {
	t.Parallel()
	ip := func(s string) uint32 {
		a, _ := ipv4(store.Point{Addr: s})
		return a
	}
	cases := []struct {
		lo, hi  string
		prefix  string
		side    int
		perCell uint64
	}{
		{"127.0.0.1", "127.0.0.1", "127.0.0.0/24", 16, 1},
		{"127.0.0.0", "127.0.0.255", "127.0.0.0/24", 16, 1},
		{"127.0.0.0", "127.0.1.255", "127.0.0.0/22", 32, 1}, // odd bits round up to a square
		{"127.0.0.0", "127.0.255.255", "127.0.0.0/16", 256, 1},
		{"10.0.0.0", "10.255.255.255", "10.0.0.0/8", 256, 256},
		{"0.0.0.1", "255.255.255.254", "0.0.0.0/0", 256, 65536},
	}
	for _, c := range cases {
		m := newMap(ip(c.lo), ip(c.hi))
		if m.Prefix.String() != c.prefix || m.Side != c.side || m.PerCell != c.perCell {
			t.Errorf("%s..%s: prefix %s side %d per cell %d, want %s %d %d", c.lo, c.hi, m.Prefix, m.Side, m.PerCell, c.prefix, c.side, c.perCell)
		}
	}
	// Quadrants of a /16 are its four /18s, each a 128x128 square, together
	// covering the map once.
	q := newMap(ip("127.0.0.0"), ip("127.0.255.255"))
	q.add(ip("127.0.200.1"), true)
	covered := map[[2]int]bool{}
	var names []string
	for _, b := range q.Blocks(1) {
		names = append(names, b.Prefix.String())
		if b.Size != 128 || b.X%128 != 0 || b.Y%128 != 0 || covered[[2]int{b.X, b.Y}] {
			t.Errorf("quadrant %+v", b)
		}
		covered[[2]int{b.X, b.Y}] = true
		if (b.Results == 1) != (b.Prefix.String() == "127.0.192.0/18") {
			t.Errorf("quadrant %s holds %d results", b.Prefix, b.Results)
		}
	}
	if strings.Join(names, " ") != "127.0.0.0/18 127.0.64.0/18 127.0.128.0/18 127.0.192.0/18" {
		t.Errorf("quadrants: %v", names)
	}
	if n := len(q.Blocks(2)); n != 16 {
		t.Errorf("%d sixteenths", n)
	}

	// A /8 aggregates a /24 per cell, and the cell of an address names its /24.
	m := newMap(ip("10.0.0.0"), ip("10.255.255.255"))
	m.add(ip("10.20.30.40"), true)
	for i, s := range m.Seen {
		if s == 1 {
			if got := m.CellPrefix(i%m.Side, i/m.Side).String(); got != "10.20.30.0/24" {
				t.Errorf("cell of 10.20.30.40 is %s", got)
			}
		}
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	var h Histogram
	for i := 0; i < 90; i++ {
		h.Add(30 * time.Microsecond)
	}
	for i := 0; i < 10; i++ {
		h.Add(3 * time.Millisecond)
	}
	h.Add(0) // no RTT: ignored
	if h.N != 100 || h.Min != 30*time.Microsecond || h.Max != 3*time.Millisecond {
		t.Fatalf("n %d min %v max %v", h.N, h.Min, h.Max)
	}
	// Exact to the tracker's resolution, not the picture's bucket edges.
	if q := Short(h.Quantile(0.5)); q != "30µs" {
		t.Errorf("p50 = %v, want 30µs", q)
	}
	if q := Short(h.Quantile(0.95)); q != "3ms" {
		t.Errorf("p95 = %v, want 3ms", q)
	}
	// Within one bucket of the picture, p50 and p90 are still apart (they
	// were both its 50µs edge).
	var u Histogram
	for i := 0; i < 1000; i++ {
		u.Add(time.Duration(21000 + 28*i)) // 21µs..49µs
	}
	if p50, p90 := Short(u.Quantile(0.5)), Short(u.Quantile(0.9)); p50 != "34.9µs" || p90 != "46.2µs" {
		t.Errorf("uniform 21-49µs: p50 %s p90 %s, want 34.9µs 46.2µs (within 0.8%% of 35µs and 46.2µs)", p50, p90)
	}
	bs := h.Buckets()
	if bs[0].Label != "20µs–50µs" || bs[0].Count != 90 || bs[len(bs)-1].Label != "2ms–5ms" {
		t.Errorf("buckets = %+v", bs)
	}
	var b bytes.Buffer
	h.WriteText(&b, 20)
	out := b.String()
	if !strings.Contains(out, "p50 30µs  p90 30µs  p99 3ms") || !strings.Contains(out, "████████████████████ 90") || !strings.Contains(out, "2ms–5ms ██▏ 10") {
		t.Errorf("text histogram:\n%s", out)
	}
}

// sampleSweep stores a synthetic sweep of 127.0.0.0/16: mostly up, some
// subnets down, a few errors.
func sampleSweep(t *testing.T) (*store.Store, int64) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "report.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Under the race detector SQLite is ~10x slower: a /18 then.
	prefix, n := "127.0.0.0/16", uint64(1<<16)
	if raceEnabled {
		prefix, n = "127.0.0.0/18", 1<<14
	}
	spec := spec.Spec{Job: "ping", JobOptions: json.RawMessage(`{"count":1}`), Targets: []string{prefix},
		Concurrency: 1000, Timeout: time.Second}
	id, err := st.CreateSweep(spec, store.Meta{Total: n, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.NewWriter(id, store.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1700000000, 0)
	for i := uint64(0); i < n; i++ {
		a := fmt.Sprintf("127.0.%d.%d", i>>8, i&255)
		r := job.Result{Index: i, Host: a, Addr: a, Job: "ping", Status: job.Up, Attempts: 1,
			Start: t0, End: t0.Add(time.Millisecond), Sent: 1, Recv: 1}
		sub := i >> 8
		switch {
		case sub >= 16 && sub < 20, sub >= 64 && sub < 80, sub%37 == 5: // whole subnets dark
			r.Status, r.Class, r.Error, r.Recv = job.Down, job.ClassTimeout, "no reply within 1s", 0
		case i%97 == 3:
			r.Status, r.Class, r.Error = job.Error, job.ClassLocal, "sendto: no buffer space available"
		case (sub >= 160 && sub < 176 || sub >= 40 && sub < 44) && i%3 == 0: // a patchy region
			r.Status, r.Class, r.Error, r.Recv = job.Down, job.ClassTimeout, "no reply within 1s", 0
		default:
			r.RTT = time.Duration(20e3 * (1 + rng.ExpFloat64()*rng.ExpFloat64()*3))
			if i%1000 == 0 {
				r.RTT = time.Duration(rng.IntN(300)) * time.Millisecond
			}
		}
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishSweep(id, store.Finished, ""); err != nil {
		t.Fatal(err)
	}
	return st, id
}

func TestBuild(t *testing.T) {
	t.Parallel()
	st, id := sampleSweep(t)
	r, err := Build(context.Background(), st, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Map == nil || r.Map.Prefix.String() != r.Sweep.Spec.Targets[0] || r.Map.Side*r.Map.Side != int(r.Sweep.Total) {
		t.Fatalf("map = %+v", r.Map)
	}
	var seen, up uint64
	for i := range r.Map.Seen {
		seen += uint64(r.Map.Seen[i])
		up += uint64(r.Map.Up[i])
	}
	if seen != r.Counts.Done || up != r.Counts.Up || r.RTT.N != r.Counts.Up {
		t.Errorf("map seen %d up %d, rtt n %d; counts %+v", seen, up, r.RTT.N, r.Counts)
	}
	if len(r.Slowest) != slowestN || r.Slowest[0].RTT < r.Slowest[len(r.Slowest)-1].RTT {
		t.Errorf("slowest not in descending order")
	}
	if len(r.Failing) != failingN || r.Failing[0].Status == job.Up {
		t.Errorf("failing = %d", len(r.Failing))
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if m := regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`).FindString(html); m != "" {
		t.Errorf("page fetches from the network: %s", m)
	}
}

// chromium finds a headless browser, or skips.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (apt-get install -y chromium; .ci/run installs it)")
	return ""
}

func headless(t *testing.T, bin string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Hang) // a cold chromium on a busy machine is slow, not hung
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--enable-logging=stderr", "--v=0", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, e.String())
	}
	return o.String(), e.String()
}

// TestHTMLInChromium renders the page in headless Chromium: the counts are
// shown, the map is drawn by the page's script, and no script error occurred.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	st, id := sampleSweep(t)
	r, err := Build(context.Background(), st, id)
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	dom, logs := headless(t, bin, "--virtual-time-budget=3000", "--dump-dom", "file://"+page)
	for _, want := range []string{
		fmt.Sprintf(`id="count-total">%s<`, num(r.Sweep.Total)),
		fmt.Sprintf(`id="count-up">%s<`, num(r.Counts.Up)),
		fmt.Sprintf(`id="count-down">%s<`, num(r.Counts.Down)),
		fmt.Sprintf(`id="count-error">%s<`, num(r.Counts.Errors)),
		`<svg id="hist"`, `class="bar"`, "timeout",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	drawn := regexp.MustCompile(`<canvas id="map"[^>]*data-drawn="(\d+)"`).FindStringSubmatch(dom)
	if drawn == nil {
		t.Errorf("the map canvas was not drawn (no data-drawn attribute)")
	} else if drawn[1] != fmt.Sprint(r.Sweep.Total) {
		t.Errorf("map drew %s cells, want %d", drawn[1], r.Sweep.Total)
	}
	if strings.Contains(dom, `id="js-error"`) {
		t.Errorf("script error on the page: %s", regexp.MustCompile(`script error[^<]*`).FindString(dom))
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Uncaught") {
			t.Errorf("console: %s", l)
		}
	}
	if dir := os.Getenv("FANOUT_REPORT_SHOT"); dir != "" {
		shot := filepath.Join(dir, "report.png")
		headless(t, bin, "--window-size=1280,1700", "--hide-scrollbars", "--screenshot="+shot, "file://"+page)
		t.Logf("screenshot: %s", shot)
	}
}

// TestNoIPv4 renders a sweep of names and IPv6 addresses: no map, the rest
// of the page as usual.
func TestNoIPv4(t *testing.T) {
	t.Parallel()
	st, err := store.Open(filepath.Join(t.TempDir(), "v6.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, _ := st.CreateSweep(spec.Spec{Job: "tcp", Targets: []string{"::1", "db1.example"}}, store.Meta{Total: 2})
	w, _ := st.NewWriter(id, store.WriterOptions{})
	w.Write(job.Result{Index: 0, Host: "::1", Addr: "::1", Port: 22, Status: job.Up, RTT: time.Millisecond})
	w.Write(job.Result{Index: 1, Host: "db1.example", Port: 22, Status: job.Error, Class: job.ClassResolve, Error: "no such host"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), st, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Map != nil {
		t.Errorf("a map for a sweep without IPv4: %+v", r.Map.Prefix)
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, `<canvas id="map"`) || !strings.Contains(page, "var MAP = null;") ||
		!strings.Contains(page, `id="count-error">1<`) || !strings.Contains(page, "no such host") {
		t.Errorf("page without IPv4 lacks what it should show, or shows a map")
	}
}
