package status

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// Page is the status page serve and run mount at GET /status: the report,
// its problems, and two charts of the last hours (events/s and backlog)
// drawn on the server as inline SVG. No script: it reloads itself every 30
// seconds with a meta refresh. ?format=json gives the report as one line.
type Page struct {
	Options    Options
	Thresholds Thresholds
	History    *History
	// MaxAge reuses a report this young instead of reading the spool (and
	// listing the bucket) again for every view (5 s).
	MaxAge time.Duration

	mu     sync.Mutex
	cached *Report
}

func (p *Page) report(ctx context.Context) (*Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	maxAge := p.MaxAge
	if maxAge <= 0 {
		maxAge = 5 * time.Second
	}
	if p.cached != nil && time.Since(p.cached.At) < maxAge {
		return p.cached, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := Collect(ctx, p.Options)
	if err != nil {
		return nil, err
	}
	r.Check(p.Thresholds)
	p.cached = r
	return r, nil
}

func (p *Page) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r, err := p.report(req.Context())
	if err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if req.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = printJSON(w, r)
		return
	}
	var points []Point
	if p.History != nil {
		points = p.History.Points()
	}
	data := pageData{R: r, Lines: r.Lines(),
		Rate:    Chart(points, "events/s", func(p Point) float64 { return p.EventsPerSecond }, func(v float64) string { return fmt.Sprintf("%.1f", v) }),
		Backlog: Chart(points, "backlog", func(p Point) float64 { return float64(p.BacklogBytes) }, func(v float64) string { return Size(int64(v)) }),
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

type pageData struct {
	R             *Report
	Lines         [][2]string
	Rate, Backlog template.HTML
}

// Chart draws points as an SVG line chart with its axis labels. The SVG is
// built from numbers and escaped text only, so it is safe to inline.
func Chart(points []Point, title string, value func(Point) float64, label func(float64) string) template.HTML {
	const w, h, left, bottom, top = 640.0, 160.0, 70.0, 22.0, 10.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(title+" over the last hours"), w, h, w, h)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafafa" stroke="#ccc"/>`, left, top, w-left-5, h-top-bottom)
	if len(points) < 2 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#666">collecting samples: one a minute since serve started</text></svg>`, (w+left)/2, h/2)
		return template.HTML(b.String())
	}
	t0, t1 := points[0].At, points[len(points)-1].At
	span := math.Max(t1.Sub(t0).Seconds(), 1)
	peak := 0.0
	for _, p := range points {
		peak = math.Max(peak, value(p))
	}
	if peak <= 0 {
		peak = 1
	}
	plotW, plotH := w-left-5, h-top-bottom
	var pts []string
	for _, p := range points {
		x := left + plotW*p.At.Sub(t0).Seconds()/span
		y := top + plotH*(1-value(p)/peak)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="%s"/>`, strings.Join(pts, " "))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" font-size="12">%s</text>`, left-4, top+10, template.HTMLEscapeString(label(peak)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" font-size="12">0</text>`, left-4, h-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12">%s</text>`, left, h-5, template.HTMLEscapeString(t0.Format("15:04")+" UTC"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" font-size="12">%s</text>`, w-5, h-5, template.HTMLEscapeString(t1.Format("15:04")+" UTC"))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"comma": humanize.Comma,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>sgload status: {{if .R.Problems}}{{len .R.Problems}} problems{{else}}OK{{end}}</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 720px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; }
.ok { color: #116329; } .bad { color: #b42318; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th { text-align: left; font-weight: 600; padding: .25em 1em .25em 0; white-space: nowrap; vertical-align: top; width: 11em; }
td { padding: .25em 0; }
ul.problems li { color: #b42318; }
h2 { font-size: 1.05em; margin: 1.2em 0 .3em; }
footer { color: #666; font-size: .85em; margin-top: 2em; }
</style>
</head>
<body>
<h1>sgload status: {{if .R.Problems}}<span class="bad" id="verdict">{{len .R.Problems}} problems</span>{{else}}<span class="ok" id="verdict">OK</span>{{end}}</h1>
<div>spool {{.R.Spool}}, node {{.R.Node}}</div>
{{if .R.Problems}}<ul class="problems">{{range .R.Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
<table id="report">
{{range .Lines}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{end}}</table>
<h2>Events per second</h2>
{{.Rate}}
<h2>Backlog waiting for flush</h2>
{{.Backlog}}
<footer>{{.R.At.Format "2006-01-02 15:04:05 UTC"}}. Reloads every 30 s; <a href="?format=json">JSON</a>; <a href="/metrics">metrics</a>.</footer>
</body>
</html>
`))

// printJSON writes v as one line.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
