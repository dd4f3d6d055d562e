package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

type point struct {
	T time.Time
	Y float64
}

type series struct {
	Name   string
	Points []point
	// Limit is the capacity the series fills (a filesystem's size); 0
	// when there is none.
	Limit float64
}

// plot is one chart: an inline SVG drawn on the server, plus what it says
// in words (the SVG has a <title> for screen readers).
type plot struct {
	Title   string
	Unit    string
	SVG     template.HTML
	Summary template.HTML
	// FullAt is the predicted time the first series reaches its limit.
	FullAt *time.Time
	// Series are the plotted points (downsampled), for the API.
	Series []SeriesJSON
}

// SeriesJSON is one plotted series in GET /api/hosts/{host}/series:
// points as [unix milliseconds, value].
type SeriesJSON struct {
	Name   string       `json:"name"`
	Limit  float64      `json:"limit,omitempty"`
	Points [][2]float64 `json:"points"`
}

const (
	plotW, plotH       = 640, 180
	padL, padR         = 56, 12
	padT, padB         = 10, 22
	maxPlotPoints      = 240
	predictionWindow   = 6 * time.Hour
	predictionMinPoint = 3
)

// paletteSize is the number of series colours (classes c0…c5 in app.css).
const paletteSize = 6

// downsample keeps at most n points, averaging within equal time buckets.
func downsample(p []point, n int) []point {
	if len(p) <= n {
		return p
	}
	t0, t1 := p[0].T, p[len(p)-1].T
	span := t1.Sub(t0)
	if span <= 0 {
		return p[len(p)-n:]
	}
	out := make([]point, 0, n)
	b, sumY, cnt := 0, 0.0, 0
	var sumT int64
	flush := func() {
		if cnt > 0 {
			out = append(out, point{time.Unix(0, sumT/int64(cnt)), sumY / float64(cnt)})
		}
		sumY, sumT, cnt = 0, 0, 0
	}
	for _, q := range p {
		nb := int(float64(q.T.Sub(t0)) / float64(span) * float64(n-1))
		if nb != b {
			flush()
			b = nb
		}
		sumY += q.Y
		sumT += q.T.UnixNano()
		cnt++
	}
	flush()
	return out
}

// fit is the least-squares line through the points of the last
// predictionWindow: slope in units per second and the value at the last
// point.
func fit(p []point) (slope, last float64, ok bool) {
	if len(p) < predictionMinPoint {
		return 0, 0, false
	}
	end := p[len(p)-1].T
	var xs, ys []float64
	for _, q := range p {
		if end.Sub(q.T) <= predictionWindow {
			xs = append(xs, q.T.Sub(end).Seconds())
			ys = append(ys, q.Y)
		}
	}
	if len(xs) < predictionMinPoint {
		return 0, 0, false
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0, 0, false
	}
	slope = num / den
	return slope, my + slope*(0-mx), true
}

// newPlot draws series over [since, now]; with predict, the first
// series' least-squares trend is extended towards its limit.
func newPlot(title, unit string, now, since time.Time, ss []*series, predict bool) plot {
	pl := plot{Title: title, Unit: unit}
	var ymax float64
	var fullAt *time.Time
	var trend [2]point
	haveTrend := false
	for _, s := range ss {
		for _, q := range s.Points {
			ymax = math.Max(ymax, q.Y)
		}
		ymax = math.Max(ymax, s.Limit)
	}
	tEnd := now
	if predict && len(ss) > 0 && ss[0].Limit > 0 {
		s := ss[0]
		if slope, last, ok := fit(s.Points); ok && slope > 0 {
			secs := (s.Limit - last) / slope
			lastT := s.Points[len(s.Points)-1].T
			full := lastT.Add(time.Duration(secs * float64(time.Second)))
			fullAt = &full
			// Show the trend up to the fill time or a week ahead.
			end := full
			if end.After(now.Add(7 * 24 * time.Hour)) {
				end = now.Add(7 * 24 * time.Hour)
			}
			trend = [2]point{{lastT, last}, {end, last + slope*end.Sub(lastT).Seconds()}}
			haveTrend = true
			if end.After(tEnd) {
				tEnd = end
			}
		}
	}
	if ymax <= 0 {
		ymax = 1
	}
	ymax *= 1.05
	span := tEnd.Sub(since).Seconds()
	x := func(t time.Time) float64 { return padL + (t.Sub(since).Seconds()/span)*(plotW-padL-padR) }
	y := func(v float64) float64 { return padT + (1-v/ymax)*(plotH-padT-padB) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg"><title>%s</title>`,
		plotW, plotH, template.HTMLEscapeString(title), template.HTMLEscapeString(title))
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="ax" x="%d" y="%.1f">%s</text>`,
			padL, plotW-padR, y(v), y(v), padL-4, y(v)+3, template.HTMLEscapeString(formatUnit(v, unit)))
	}
	for d := 0; d <= 4; d++ {
		t := since.Add(time.Duration(float64(tEnd.Sub(since)) * float64(d) / 4))
		fmt.Fprintf(&b, `<text class="ax t" x="%.1f" y="%d">%s</text>`, x(t), plotH-6, t.Format("Jan 2"))
	}
	fmt.Fprintf(&b, `<line class="now" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, x(now), x(now), padT, plotH-padB)
	for i, s := range ss {
		if s.Limit > 0 {
			fmt.Fprintf(&b, `<line class="limit" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, plotW-padR, y(s.Limit), y(s.Limit))
		}
		pts := downsample(s.Points, maxPlotPoints)
		sj := SeriesJSON{Name: s.Name, Limit: s.Limit, Points: make([][2]float64, 0, len(pts))}
		for _, q := range pts {
			sj.Points = append(sj.Points, [2]float64{float64(q.T.UnixMilli()), q.Y})
		}
		pl.Series = append(pl.Series, sj)
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<polyline class="line c%d" points="`, i%paletteSize)
		for _, q := range pts {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(q.T), y(q.Y))
		}
		b.WriteString(`"/>`)
	}
	if haveTrend {
		fmt.Fprintf(&b, `<line class="trend" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x(trend[0].T), y(trend[0].Y), x(trend[1].T), y(math.Min(trend[1].Y, ymax)))
	}
	b.WriteString(`</svg>`)
	pl.SVG = template.HTML(b.String())
	var sum []string
	for i, s := range ss {
		if len(s.Points) == 0 {
			continue
		}
		sum = append(sum, fmt.Sprintf(`<span class="key c%d"></span>%s: %s`, i%paletteSize, template.HTMLEscapeString(s.Name),
			template.HTMLEscapeString(formatUnit(s.Points[len(s.Points)-1].Y, unit))))
	}
	if fullAt != nil {
		pl.FullAt = fullAt
		sum = append(sum, "predicted full "+template.HTMLEscapeString(relTime(now, *fullAt))+" ("+fullAt.UTC().Format("2006-01-02 15:04")+" UTC)")
	} else if predict && len(ss) > 0 && ss[0].Limit > 0 {
		sum = append(sum, "not filling up")
	}
	pl.Summary = template.HTML(strings.Join(sum, " · "))
	return pl
}

func formatUnit(v float64, unit string) string {
	if unit == "bytes" {
		return formatBytes(v)
	}
	if unit == "B/s" {
		return formatBytes(v) + "/s"
	}
	return fmt.Sprintf("%.0f%s", v, unit)
}

func formatBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v >= 100 || i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
