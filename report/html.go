package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/fanout/fanout/job"
)

// WriteHTML writes the report as one self-contained page.
func (r *Report) WriteHTML(w io.Writer) error {
	data, err := r.mapJSON()
	if err != nil {
		return err
	}
	return page.Execute(w, view{R: r, MapData: template.JS(data)})
}

type view struct {
	R       *Report
	MapData template.JS
}

// mapJSON is the map's data for the page's script. json.Marshal escapes <,
// > and &, so it cannot close the script element.
func (r *Report) mapJSON() ([]byte, error) {
	if r.Map == nil {
		return []byte("null"), nil
	}
	m := r.Map
	return json.Marshal(map[string]any{
		"prefix": m.Prefix.String(), "side": m.Side, "perCell": m.PerCell,
		"base": m.base(), "up": m.Up, "seen": m.Seen,
	})
}

// histBar is one bar of the SVG histogram.
type histBar struct {
	X, Y, W, H float64
	Label      string // the bucket's range, for the tooltip
	Count      uint64
	LabelX     float64 // centre of the bar
}

// histTick is a labelled boundary between bars.
type histTick struct {
	X      float64
	Label  string
	Anchor string // the outermost labels stay inside the picture
}

const (
	histW, histH = 640.0, 200.0
	histPad      = 28.0
)

// HistBars lays out the RTT histogram's bars for the SVG.
func (r *Report) HistBars() []histBar {
	bs := r.RTT.Buckets()
	if len(bs) == 0 {
		return nil
	}
	var max uint64
	for _, b := range bs {
		if b.Count > max {
			max = b.Count
		}
	}
	w := (histW - 8) / float64(len(bs))
	out := make([]histBar, len(bs))
	for i, b := range bs {
		h := 0.0
		if b.Count > 0 {
			h = (histH - 2*histPad) * float64(b.Count) / float64(max)
			if h < 2 {
				h = 2
			}
		}
		x := 4 + float64(i)*w
		out[i] = histBar{X: x + 2, Y: histH - histPad - h, W: w - 4, H: h, Label: b.Label, Count: b.Count, LabelX: x + w/2}
	}
	return out
}

// HistTicks label the boundaries between bars (every other one when the
// bars are too narrow for a label each).
func (r *Report) HistTicks() []histTick {
	bs := r.RTT.Buckets()
	if len(bs) == 0 {
		return nil
	}
	w := (histW - 8) / float64(len(bs))
	step := 1
	if w < 44 {
		step = 2
	}
	var out []histTick
	for i := 0; i <= len(bs); i++ {
		var d time.Duration
		if i < len(bs) {
			d = bs[i].Lo
		} else {
			d = bs[i-1].Hi
		}
		if d == 0 || i%step != 0 {
			continue
		}
		a := "middle"
		if i == 0 {
			a = "start"
		} else if i == len(bs) {
			a = "end"
		}
		out = append(out, histTick{X: 4 + float64(i)*w, Label: Short(d), Anchor: a})
	}
	return out
}

var funcs = template.FuncMap{
	"short": Short,
	"pct":   pct,
	"num":   num,
	"when":  func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") },
	"dur": func(d time.Duration) string {
		if d < time.Second {
			return Short(d)
		}
		return d.Round(100 * time.Millisecond).String()
	},
	"rate":  func(v float64) string { return num(uint64(v + 0.5)) },
	"sub":   func(a, b uint64) uint64 { return a - min(a, b) },
	"cut":   cut,
	"join":  func(s []string) string { return cut(strings.Join(s, " "), 300) },
	"width": func(p float64) string { return fmt.Sprintf("%.2f%%", max(p, 0.4)) },
	"f1":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"statusClass": func(s job.Status) string {
		switch s {
		case job.Up:
			return "up"
		case job.Down:
			return "down"
		}
		return "err"
	},
	"target": func(r job.Result) string {
		s := r.Host
		if r.Addr != "" && r.Addr != r.Host {
			s += " (" + r.Addr + ")"
		}
		if r.Port != 0 {
			s += fmt.Sprintf(":%d", r.Port)
		}
		return s
	},
	"hw": func() float64 { return histW },
	// Map labels, in cells: about 11px on a 512px map whatever its side.
	"labelSize": func(side int) string { return fmt.Sprintf("%.2f", float64(side)/38) },
	"labelPad":  func(side int) string { return fmt.Sprintf("%.2f", float64(side)/80) },
	"labelDy":   func(side int) string { return fmt.Sprintf("%.2f", float64(side)/28) },
	"hh":        func() float64 { return histH },
	"hb":        func() float64 { return histH - histPad },
}

func num(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(pageHTML))

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fanout sweep {{.R.Sweep.ID}} · {{.R.Sweep.Spec.Job}} · {{num .R.Counts.Up}} up of {{num .R.Counts.Done}}</title>
<script>
// Any script error is written into the page, where a reader (and the test) sees it.
window.onerror = function (msg, src, line) {
  var d = document.createElement("div");
  d.id = "js-error"; d.className = "js-error";
  d.textContent = "script error: " + msg + " (line " + line + ")";
  (document.body || document.documentElement).appendChild(d);
};
</script>
<style>
:root {
  --bg: #0f1216; --panel: #171b21; --line: #262c35; --text: #e6e9ee; --dim: #8b95a3;
  --up: #2fbf71; --down: #e5484d; --err: #f5a524; --none: #1d222a; --accent: #5b9cf5;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 48px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; margin-bottom: 18px; }
h1 { font-size: 22px; margin: 0; font-weight: 650; letter-spacing: -0.01em; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .08em; color: var(--dim); margin: 0 0 12px; font-weight: 600; }
.meta { color: var(--dim); }
.state { display: inline-block; padding: 1px 9px; border-radius: 99px; font-size: 12px; font-weight: 600; }
.state.finished { background: rgba(47,191,113,.15); color: var(--up); }
.state.interrupted, .state.running { background: rgba(245,165,36,.15); color: var(--err); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .v { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; letter-spacing: -0.01em; }
.card .k { color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
.card .s { color: var(--dim); font-size: 12px; }
.card.up .v { color: var(--up); } .card.down .v { color: var(--down); } .card.err .v { color: var(--err); }
.ratio { display: flex; height: 8px; border-radius: 4px; overflow: hidden; background: var(--none); margin: 4px 0 20px; }
.ratio span { display: block; height: 100%; }
.grid { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 16px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 16px; min-width: 0; }
.wide { grid-column: 1 / -1; }
.mapwrap { position: relative; width: 100%; max-width: 512px; aspect-ratio: 1; }
#map { width: 100%; height: 100%; image-rendering: pixelated; display: block;
  border-radius: 6px; background: var(--none); cursor: crosshair; }
svg.grid { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
svg.grid rect { fill: none; vector-effect: non-scaling-stroke; }
svg.grid .b16 { stroke: rgba(255,255,255,.07); }
svg.grid .b4 { stroke: rgba(255,255,255,.28); }
svg.grid .lab { fill: rgba(255,255,255,.85); font-family: ui-monospace, Menlo, Consolas, monospace;
  paint-order: stroke; stroke: rgba(0,0,0,.55); stroke-width: .6px; }
svg.grid .lab.empty { fill: rgba(255,255,255,.35); }
.mapbox { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.legend { font-size: 12px; color: var(--dim); min-width: 180px; flex: 1; }
.legend .grad { height: 10px; border-radius: 3px; margin: 6px 0 2px;
  background: linear-gradient(90deg, var(--down), #c9a227, var(--up)); }
.legend .row { display: flex; justify-content: space-between; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; vertical-align: -1px; margin-right: 5px; }
#tip { margin-top: 12px; min-height: 3.2em; color: var(--text); font-variant-numeric: tabular-nums; }
#hist text { fill: var(--dim); font-size: 11px; }
svg .bar { fill: var(--accent); }
svg .bar:hover { fill: #8db9ff; }
svg .cnt { fill: var(--text); font-size: 11px; }
.stats { display: flex; gap: 18px; flex-wrap: wrap; color: var(--dim); font-size: 12px; margin-top: 8px; }
.stats b { color: var(--text); font-weight: 600; font-variant-numeric: tabular-nums; }
.classes { display: grid; grid-template-columns: max-content 1fr max-content; gap: 6px 12px; align-items: center; }
.classes .track { background: var(--none); border-radius: 4px; height: 10px; }
.classes .fill { background: var(--down); height: 100%; border-radius: 4px; }
.classes .n { font-variant-numeric: tabular-nums; color: var(--dim); text-align: right; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; color: var(--dim); font-weight: 600; font-size: 12px; padding: 4px 8px; border-bottom: 1px solid var(--line); }
td { padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
td.errmsg { color: var(--dim); word-break: break-word; }
.pill { font-size: 11px; padding: 0 7px; border-radius: 99px; font-weight: 600; white-space: nowrap; }
.pill.up { background: rgba(47,191,113,.15); color: var(--up); }
.pill.down { background: rgba(229,72,77,.15); color: var(--down); }
.pill.err { background: rgba(245,165,36,.15); color: var(--err); }
.empty { color: var(--dim); font-style: italic; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 14px; margin: 0; font-size: 13px; }
dt { color: var(--dim); } dd { margin: 0; word-break: break-word; }
.js-error { position: fixed; bottom: 0; left: 0; right: 0; background: var(--down); color: #fff; padding: 8px 14px; font-weight: 600; }
footer { color: var(--dim); font-size: 12px; margin-top: 22px; }
</style>
</head>
<body>
<main>
<header>
  <h1>Sweep {{.R.Sweep.ID}} · {{.R.Sweep.Spec.Job}}</h1>
  <span class="state {{.R.Sweep.State}}">{{.R.Sweep.State}}</span>
  <span class="meta mono">{{join .R.Sweep.Spec.Targets}}</span>
  <span class="meta">started {{when .R.Sweep.Start}}{{if gt .R.Sweep.Runs 1}} · {{.R.Sweep.Runs}} runs{{end}}</span>
</header>

<section class="cards" id="summary">
  <div class="card"><div class="k">Targets</div><div class="v" id="count-total">{{num .R.Sweep.Total}}</div><div class="s">{{num .R.Counts.Done}} with a result</div></div>
  <div class="card up"><div class="k">Up</div><div class="v" id="count-up">{{num .R.Counts.Up}}</div><div class="s">{{pct .R.Counts.Up .R.Counts.Done}}</div></div>
  <div class="card down"><div class="k">Down</div><div class="v" id="count-down">{{num .R.Counts.Down}}</div><div class="s">{{pct .R.Counts.Down .R.Counts.Done}}</div></div>
  <div class="card err"><div class="k">Errors</div><div class="v" id="count-error">{{num .R.Counts.Errors}}</div><div class="s">{{pct .R.Counts.Errors .R.Counts.Done}}</div></div>
  <div class="card"><div class="k">Not done</div><div class="v" id="count-pending">{{num (sub .R.Sweep.Total .R.Counts.Done)}}</div><div class="s">{{if eq .R.Sweep.State "finished"}}complete{{else}}fanout resume continues{{end}}</div></div>
  <div class="card"><div class="k">Duration</div><div class="v">{{dur .R.Sweep.Elapsed}}</div><div class="s">{{rate .R.Rate}} results/s</div></div>
</section>
<div class="ratio" title="up / down / error">
  <span style="width:{{pct .R.Counts.Up .R.Sweep.Total}};background:var(--up)"></span>
  <span style="width:{{pct .R.Counts.Down .R.Sweep.Total}};background:var(--down)"></span>
  <span style="width:{{pct .R.Counts.Errors .R.Sweep.Total}};background:var(--err)"></span>
</div>

<div class="grid">
{{if .R.Map}}
<section class="panel" id="map-panel">
  <h2>Address space · {{.R.Map.Prefix}}</h2>
  <div class="mapbox">
    <div class="mapwrap">
    <canvas id="map" width="{{.R.Map.Side}}" height="{{.R.Map.Side}}" aria-label="Hilbert map of {{.R.Map.Prefix}}"></canvas>
    <svg class="grid" viewBox="0 0 {{.R.Map.Side}} {{.R.Map.Side}}" preserveAspectRatio="none" aria-hidden="true">
      {{range .R.Map.Blocks 2}}<rect x="{{.X}}" y="{{.Y}}" width="{{.Size}}" height="{{.Size}}" class="b16"/>{{end}}
      {{range .R.Map.Blocks 1}}<rect x="{{.X}}" y="{{.Y}}" width="{{.Size}}" height="{{.Size}}" class="b4"/>
      <text x="{{.X}}" y="{{.Y}}" dx="{{labelPad $.R.Map.Side}}" dy="{{labelDy $.R.Map.Side}}" font-size="{{labelSize $.R.Map.Side}}" class="{{if .Results}}lab{{else}}lab empty{{end}}">{{.Prefix}}</text>{{end}}
    </svg>
    </div>
    <div class="legend">
      <div>Hilbert curve: neighbouring addresses stay neighbours, every aligned subnet is a square.</div>
      <div class="grad"></div>
      <div class="row"><span>all down</span><span>mixed</span><span>all up</span></div>
      <p><span class="sw" style="background:var(--none);outline:1px solid var(--line)"></span>no result
      <br>{{.R.Map.Side}}×{{.R.Map.Side}} cells, {{if eq .R.Map.PerCell 1}}one address{{else}}{{num .R.Map.PerCell}} addresses{{end}} per cell</p>
      <div id="tip">Point at the map to see a subnet.</div>
    </div>
  </div>
</section>
{{end}}
<section class="panel{{if not .R.Map}} wide{{end}}" id="rtt-panel">
  <h2>Round-trip time{{if .R.RTT.N}} · {{num .R.RTT.N}} targets up{{end}}</h2>
  {{with .R.HistBars}}
  <svg id="hist" viewBox="0 0 {{hw}} {{hh}}" width="100%" role="img" aria-label="RTT histogram">
    <line x1="0" x2="{{hw}}" y1="{{hb}}" y2="{{hb}}" stroke="#262c35"/>
    {{range .}}<g><title>{{.Label}}: {{num .Count}}</title>
      <rect class="bar" x="{{f1 .X}}" y="{{f1 .Y}}" width="{{f1 .W}}" height="{{f1 .H}}" rx="2"/>
      {{if .Count}}<text class="cnt" x="{{f1 .LabelX}}" y="{{f1 .Y}}" dy="-4" text-anchor="middle">{{num .Count}}</text>{{end}}
    </g>{{end}}
    {{range $.R.HistTicks}}<text x="{{f1 .X}}" y="{{hh}}" dy="-9" text-anchor="{{.Anchor}}">{{.Label}}</text>
    {{end}}
  </svg>
  <div class="stats">
    <span>min <b>{{short $.R.RTT.Min}}</b></span><span>p50 <b>{{short ($.R.RTT.Quantile 0.5)}}</b></span>
    <span>p90 <b>{{short ($.R.RTT.Quantile 0.9)}}</b></span><span>p99 <b>{{short ($.R.RTT.Quantile 0.99)}}</b></span>
    <span>max <b>{{short $.R.RTT.Max}}</b></span><span>mean <b>{{short $.R.RTT.Mean}}</b></span>
  </div>
  {{else}}<p class="empty">No round-trip times recorded.</p>{{end}}

  <h2 style="margin-top:22px">Why targets were not up</h2>
  {{with .R.Classes}}
  <div class="classes" id="classes">
    {{range .}}<span class="mono">{{.Class}}</span><div class="track"><div class="fill" style="width:{{width .Pct}}"></div></div><span class="n">{{num .Count}}</span>
    {{end}}
  </div>
  {{else}}<p class="empty">Every target with a result was up.</p>{{end}}
</section>

<section class="panel" id="slowest">
  <h2>Slowest up</h2>
  {{with .R.Slowest}}<table><tr><th>target</th><th style="text-align:right">rtt</th></tr>
  {{range .}}<tr><td class="mono">{{target .}}</td><td class="num">{{short .RTT}}</td></tr>{{end}}
  </table>{{else}}<p class="empty">None.</p>{{end}}
</section>
<section class="panel" id="failing">
  <h2>Not up{{if gt (len .R.Failing) 0}} · first {{len .R.Failing}}{{end}}</h2>
  {{with .R.Failing}}<table><tr><th>target</th><th>status</th><th>reason</th></tr>
  {{range .}}<tr><td class="mono">{{target .}}</td><td><span class="pill {{statusClass .Status}}">{{.Status}}{{if .Class}} · {{.Class}}{{end}}</span></td><td class="errmsg">{{cut .Error 140}}</td></tr>{{end}}
  </table>{{else}}<p class="empty">None: every target with a result was up.</p>{{end}}
</section>

<section class="panel wide" id="spec">
  <h2>Sweep</h2>
  <dl>
    <dt>file</dt><dd class="mono">{{.R.File}}</dd>
    <dt>job</dt><dd class="mono">{{.R.Sweep.Spec.Job}} {{printf "%s" .R.Sweep.Spec.JobOptions}}</dd>
    <dt>targets</dt><dd class="mono">{{join .R.Sweep.Spec.Targets}}{{if .R.Sweep.Spec.Excludes}} excluding {{join .R.Sweep.Spec.Excludes}}{{end}}</dd>
    <dt>order</dt><dd>{{if .R.Sweep.Spec.Shuffle}}shuffled, seed {{.R.Sweep.Spec.Seed}}{{else}}canonical{{end}}{{if .R.Sweep.Spec.ShardN}}, shard {{.R.Sweep.Spec.ShardI}}/{{.R.Sweep.Spec.ShardN}}{{end}}</dd>
    <dt>engine</dt><dd>concurrency {{.R.Sweep.Spec.Concurrency}}{{if .R.Sweep.Spec.Rate}}, rate {{.R.Sweep.Spec.Rate}}/s{{end}}{{if .R.Sweep.Spec.Timeout}}, timeout {{.R.Sweep.Spec.Timeout}}{{end}}{{if .R.Sweep.Spec.Retries}}, {{.R.Sweep.Spec.Retries}} retries{{end}}</dd>
    <dt>state</dt><dd>{{.R.Sweep.State}}{{if .R.Sweep.Reason}}: {{.R.Sweep.Reason}}{{end}}</dd>
    <dt>fanout</dt><dd>{{.R.Sweep.Version}}</dd>
  </dl>
</section>
</div>
<footer>Generated by fanout report on {{when .R.Generated}}. Self-contained: this file fetches nothing.</footer>
</main>
<script>
var MAP = {{.MapData}};
(function () {
  if (!MAP) return;
  var canvas = document.getElementById("map");
  var n = MAP.side, cells = n * n, drawn = 0;
  var ctx = canvas.getContext("2d");
  var img = ctx.createImageData(n, n);
  var down = [229, 72, 77], mid = [201, 162, 39], up = [47, 191, 113], none = [29, 34, 42];
  function mix(a, b, t) { return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]; }
  for (var i = 0; i < cells; i++) {
    var seen = MAP.seen[i], c = none;
    if (seen > 0) {
      var f = MAP.up[i] / seen;
      c = f < 0.5 ? mix(down, mid, f * 2) : mix(mid, up, (f - 0.5) * 2);
      drawn++;
    }
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  canvas.setAttribute("data-drawn", String(drawn));

  // Cell (x, y) back to its position on the curve, as report/hilbert.go does.
  function hilbertD(n, x, y) {
    var d = 0;
    for (var s = n / 2; s >= 1; s = s / 2) {
      var rx = (x & s) > 0 ? 1 : 0, ry = (y & s) > 0 ? 1 : 0;
      d += s * s * ((3 * rx) ^ ry);
      if (ry === 0) {
        if (rx === 1) { x = n - 1 - x; y = n - 1 - y; }
        var t = x; x = y; y = t;
      }
    }
    return d;
  }
  function ip(a) { return [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join("."); }
  var tip = document.getElementById("tip");
  canvas.addEventListener("mousemove", function (ev) {
    var r = canvas.getBoundingClientRect();
    var x = Math.floor((ev.clientX - r.left) / r.width * n), y = Math.floor((ev.clientY - r.top) / r.height * n);
    if (x < 0 || y < 0 || x >= n || y >= n) return;
    var i = y * n + x, d = hilbertD(n, x, y);
    var a = (MAP.base + d * MAP.perCell) >>> 0;
    var bits = 32 - Math.round(Math.log2(MAP.perCell));
    var name = MAP.perCell === 1 ? ip(a) : ip(a) + "/" + bits;
    var s = MAP.seen[i];
    tip.textContent = s ? name + ": " + MAP.up[i] + " up, " + (s - MAP.up[i]) + " not up" : name + ": no result";
  });
})();
</script>
</body>
</html>
`
