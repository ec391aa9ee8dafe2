package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
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
	CountText  string  // the count above the bar ("13.2k"); "" when it would not fit
	LabelX     float64 // centre of the bar
}

// textWidth estimates the width of s in the histogram's 11-unit font
// (digits and units are about 0.6em wide), to keep labels apart.
func textWidth(s string) float64 { return 6.6 * float64(len([]rune(s))) }

// compact is a count in at most four characters and a suffix: 950, 13.2k, 1.5M.
func compact(n uint64) string {
	switch {
	case n < 1000:
		return fmt.Sprint(n)
	case n < 1e6:
		return trim(float64(n)/1e3) + "k"
	case n < 1e9:
		return trim(float64(n)/1e6) + "M"
	}
	return trim(float64(n)/1e9) + "G"
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
		if c := compact(b.Count); b.Count > 0 && textWidth(c) <= w-2 {
			out[i].CountText = c // neighbours' counts never touch: each stays over its own bar
		}
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
	// Every step-th boundary, step such that labels never collide: two
	// centred ones need the widest label and a gap between their centres,
	// the first (anchored at its start) half a label more.
	widest := 0.0
	for _, b := range bs {
		widest = max(widest, textWidth(Short(b.Lo)), textWidth(Short(b.Hi)))
	}
	step := max(1, int(math.Ceil((1.5*widest+10)/w)))
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
	"hw":   func() float64 { return histW },
	"pct2": func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) },
	"ratio": func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	},
	// Map labels, in cells: about 11px on a 512px map whatever its side.
	"labelSize": func(side int) string { return fmt.Sprintf("%.2f", float64(side)/38) },
	"labelPad":  func(side int) string { return fmt.Sprintf("%.2f", float64(side)/80) },
	"labelDy":   func(side int) string { return fmt.Sprintf("%.2f", float64(side)/28) },
	// A halo of about 1px on a 512px map, whatever its side (in cells).
	"labelStroke": func(side int) string { return fmt.Sprintf("%.3f", float64(side)/400) },
	"u64":         func(n int) uint64 { return uint64(n) },
	"maxGroups":   func() int { return maxGroups },
	"hh":          func() float64 { return histH },
	"hb":          func() float64 { return histH - histPad },
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

// pageHTML is the report page; a file of its own so an editor shows it as HTML.
//
//go:embed page.html
var pageHTML string

var page = template.Must(template.New("report").Funcs(funcs).Parse(pageHTML))
