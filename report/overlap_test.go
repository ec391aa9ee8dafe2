package report

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
)

// storeHosts stores a synthetic sweep of hosts: outcome says each one's.
func storeHosts(t *testing.T, spec fanout.Spec, hosts []string, outcome func(i int, r *job.Result)) (*store.Store, int64) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "sweep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id, err := st.CreateSweep(spec, store.Meta{Total: uint64(len(hosts)), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.NewWriter(id, store.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	for i, h := range hosts {
		r := job.Result{Index: uint64(i), Host: h, Job: spec.Job, Status: job.Up, Attempts: 1, Start: t0, End: t0.Add(time.Second)}
		outcome(i, &r)
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

// overlapCheck, appended to the page, finds every pair of text boxes that
// overlap on screen (HTML text by its line boxes, SVG text by its box) and
// writes them into the body's data-overlaps attribute.
const overlapCheck = `<script>
window.addEventListener("load", function () {
  var boxes = [], w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), n;
  while ((n = w.nextNode())) {
    var p = n.parentElement;
    if (!n.textContent.trim() || !p || p.closest("script,style,title")) continue;
    var rects;
    if (p instanceof SVGElement) rects = [p.getBoundingClientRect()];
    else { var r = document.createRange(); r.selectNodeContents(n); rects = r.getClientRects(); }
    for (var i = 0; i < rects.length; i++) {
      var b = rects[i];
      if (b.width > 0 && b.height > 0) boxes.push({t: n.textContent.trim().slice(0, 30), n: n, l: b.left, r: b.right, tp: b.top, bt: b.bottom});
    }
  }
  var out = [];
  for (var i = 0; i < boxes.length; i++) for (var j = i + 1; j < boxes.length; j++) {
    var a = boxes[i], c = boxes[j];
    if (a.n === c.n) continue;
    var dx = Math.min(a.r, c.r) - Math.max(a.l, c.l), dy = Math.min(a.bt, c.bt) - Math.max(a.tp, c.tp);
    if (dx > 0.5 && dy > 0.5) out.push(a.t + " | " + c.t + " (" + dx.toFixed(1) + "x" + dy.toFixed(1) + "px)");
  }
  // Map labels: their size and halo on screen, whatever the map's side.
  var minFont = 1e9, maxStroke = 0;
  document.querySelectorAll("svg.grid .lab").forEach(function (el) {
    var k = el.getScreenCTM().a, cs = getComputedStyle(el);
    minFont = Math.min(minFont, parseFloat(cs.fontSize) * k);
    maxStroke = Math.max(maxStroke, parseFloat(cs.strokeWidth) * k);
  });
  document.body.setAttribute("data-label-font", minFont.toFixed(1));
  document.body.setAttribute("data-label-stroke", maxStroke.toFixed(2));
  document.body.setAttribute("data-texts", String(boxes.length));
  document.body.setAttribute("data-overlaps", JSON.stringify(out.slice(0, 40)));
});
</script>`

// TestReportTextNeverOverlaps renders the page in headless Chromium for a
// /16, a /22 and a set of 300 names, and checks that no two pieces of text
// overlap: map labels, histogram counts and axis ticks, tables. It also
// checks the options read as flags and the hosts not up are grouped.
func TestReportTextNeverOverlaps(t *testing.T) {
	bin := chromium(t)
	rng := rand.New(rand.NewPCG(5, 6))
	rtt := func() time.Duration { return time.Duration(20e3 * (1 + rng.ExpFloat64()*rng.ExpFloat64()*30)) }
	addrs := func(a, b, c byte, n int) []string {
		var hs []string
		for i := 0; i < n; i++ {
			hs = append(hs, fmt.Sprintf("%d.%d.%d.%d", a, b, int(c)+i>>8, i&255))
		}
		return hs
	}
	var names []string
	for i := 1; i <= 300; i++ {
		names = append(names, fmt.Sprintf("web%03d.dc%d.example.com", i, 1+i%3))
	}
	n16 := 1 << 16
	if raceEnabled {
		n16 = 1 << 14 // SQLite under the race detector: a /18 of the /16's layout
	}
	cases := []struct {
		name  string
		spec  fanout.Spec
		hosts []string
		want  []string // text the page shows
	}{
		{"/16", fanout.Spec{Job: "ping", JobOptions: json.RawMessage(`{"count":3,"interval_ns":1000000000}`), Targets: []string{"127.0.0.0/16"}, Concurrency: 1000, Timeout: time.Second},
			addrs(127, 0, 0, n16), []string{"fanout ping --count 3 --interval 1s -c 1000 --timeout 1s 127.0.0.0/16", "127.0.17.[0-255]"}},
		{"/22", fanout.Spec{Job: "tcp", JobOptions: json.RawMessage(`{"ports":[22,443]}`), Targets: []string{"127.1.0.0/22"}, Concurrency: 200, Rate: 500},
			addrs(127, 1, 0, 1024), []string{"fanout tcp -p 22,443 -c 200 --rate 500 127.1.0.0/22", "127.1.0.[1,14,27,40"}},
		{"300 names", fanout.Spec{Job: "exec", JobOptions: json.RawMessage(`{"argv":["ping","-c","1","{}"]}`), Targets: []string{"web[001-300].dc[1-3].example.com"}},
			names, []string{"fanout exec 'web[001-300].dc[1-3].example.com' -- ping -c 1 '{}'", `<td class="mono nowrap">web</td>`, "web004.dc2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, id := storeHosts(t, tc.spec, tc.hosts, func(i int, r *job.Result) {
				sub := i >> 8
				switch {
				case sub == 17 || sub%37 == 5 || (len(tc.hosts) <= 300 && i%7 == 3):
					r.Status, r.Class, r.Error = job.Down, job.ClassTimeout, "timed out after 1s"
				case i%97 == 3:
					r.Status, r.Class, r.Error = job.Error, job.ClassLocal, "sendto: no buffer space available"
				case i%13 == 1:
					r.Status, r.Class, r.Error = job.Down, job.ClassRefused, "connection refused"
				default:
					r.RTT = rtt()
					if i%500 == 0 {
						r.RTT = time.Duration(1+rng.IntN(3000)) * time.Millisecond
					}
				}
			})
			r, err := Build(context.Background(), st, id)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := r.WriteHTML(&b); err != nil {
				t.Fatal(err)
			}
			page := filepath.Join(t.TempDir(), "report.html")
			doc := strings.Replace(b.String(), "</body>", overlapCheck+"</body>", 1)
			if err := os.WriteFile(page, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, width := range []int{1280, 760} {
				dom, _ := headless(t, bin, fmt.Sprintf("--window-size=%d,3000", width), "--virtual-time-budget=3000", "--dump-dom", "file://"+page)
				m := regexp.MustCompile(`data-overlaps="([^"]*)"`).FindStringSubmatch(dom)
				texts := regexp.MustCompile(`data-texts="(\d+)"`).FindStringSubmatch(dom)
				if m == nil || texts == nil || texts[1] == "0" {
					t.Fatalf("width %d: the check did not run", width)
				}
				var overlaps []string
				if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &overlaps); err != nil {
					t.Fatal(err)
				}
				for _, o := range overlaps {
					t.Errorf("width %d: text overlaps: %s", width, o)
				}
				if r.Map != nil {
					font, stroke := attrFloat(dom, "data-label-font"), attrFloat(dom, "data-label-stroke")
					if font < 9 || stroke > 1.5 {
						t.Errorf("width %d: map labels of %.1fpx with a halo of %.2fpx: want at least 9px, at most 1.5px", width, font, stroke)
					}
				}
				if strings.Contains(dom, `id="js-error"`) {
					t.Errorf("script error on the page")
				}
				for _, w := range tc.want {
					if !strings.Contains(html.UnescapeString(dom), w) {
						t.Errorf("the page lacks %q", w)
					}
				}
			}
			if dir := os.Getenv("FANOUT_REPORT_SHOT"); dir != "" {
				shot := filepath.Join(dir, "report-"+strings.NewReplacer("/", "", " ", "-").Replace(tc.name)+".png")
				headless(t, bin, "--window-size=1280,2600", "--hide-scrollbars", "--screenshot="+shot, "file://"+page)
				t.Logf("screenshot: %s", shot)
			}
		})
	}
}

// attrFloat is the number in attribute name of the dumped DOM, -1 if none.
func attrFloat(dom, name string) float64 {
	m := regexp.MustCompile(name + `="([0-9.]+)"`).FindStringSubmatch(dom)
	v := -1.0
	if m != nil {
		fmt.Sscan(m[1], &v)
	}
	return v
}
