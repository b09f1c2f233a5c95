package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

type histSeries struct {
	name    string
	samples []time.Duration // sorted
}

// histogramSVG draws the series as a histogram over a logarithmic latency
// axis, the share of each series' samples per bin on the vertical axis,
// with p50 and p99 marked.
func histogramSVG(title string, series []histSeries) string {
	const (
		w                      = 900
		left, right, top, bott = 70, 20, 50, 60
		bins                   = 40
		legendLine             = 18
	)
	// The legend goes under the axis label, one line per series, where it
	// has the plot's width whatever the length of its labels.
	const plotH = 420
	h := plotH + legendLine*len(series)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		if len(s.samples) == 0 {
			continue
		}
		lo = math.Min(lo, float64(max(s.samples[0], time.Microsecond)))
		hi = math.Max(hi, float64(max(s.samples[len(s.samples)-1], time.Microsecond)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16">%s</text>`+"\n", left, html.EscapeString(title))
	if math.IsInf(lo, 1) {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no samples</text></svg>`+"\n", left, h/2)
		return b.String()
	}
	if hi <= lo {
		hi = lo * 1.5
	}
	llo, lhi := math.Log10(lo), math.Log10(hi)
	pw, ph := float64(w-left-right), float64(plotH-top-bott)
	xOf := func(v float64) float64 { return float64(left) + (math.Log10(v)-llo)/(lhi-llo)*pw }
	counts := make([][]float64, len(series))
	peak := 0.0
	for i, s := range series {
		counts[i] = make([]float64, bins)
		for _, d := range s.samples {
			v := math.Max(float64(d), lo)
			k := int((math.Log10(v) - llo) / (lhi - llo) * bins)
			counts[i][min(max(k, 0), bins-1)]++
		}
		for k := range counts[i] {
			if len(s.samples) > 0 {
				counts[i][k] /= float64(len(s.samples))
			}
			peak = math.Max(peak, counts[i][k])
		}
	}
	if peak == 0 {
		peak = 1
	}
	// axes
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, plotH-bott, w-right, plotH-bott)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, plotH-bott)
	for e := math.Floor(llo); e <= math.Ceil(lhi); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			x := xOf(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`+"\n", x, top, x, plotH-bott)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, plotH-bott+16, fmtDur(time.Duration(v), true))
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">latency (log scale)</text>`+"\n", left+int(pw)/2, plotH-bott+40)
	for _, f := range []float64{0.25, 0.5, 0.75, 1} {
		y := float64(plotH-bott) - f*ph
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", left-6, y+4, f*peak*100)
	}
	fmt.Fprintf(&b, `<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">share of samples</text>`+"\n", top+int(ph)/2, top+int(ph)/2)
	// bars
	bw := pw / bins / float64(max(1, len(series)))
	for i, s := range series {
		c := colors[i%len(colors)]
		for k, v := range counts[i] {
			if v == 0 {
				continue
			}
			x := float64(left) + float64(k)*pw/bins + float64(i)*bw
			bh := v / peak * ph
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.8"/>`+"\n", x, float64(plotH-bott)-bh, bw, bh, c)
		}
		if len(s.samples) > 0 {
			for _, q := range []float64{0.5, 0.99} {
				x := xOf(math.Max(float64(percentile(s.samples, q)), lo))
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x, top, x, plotH-bott, c)
			}
		}
		ly := plotH - 4 + legendLine*i
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", left, ly, c)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s: p50 %s, p99 %s (n=%d)</text>`+"\n", left+18, ly+11, html.EscapeString(s.name),
			fmtDur(percentile(s.samples, 0.5), len(s.samples) > 0), fmtDur(percentile(s.samples, 0.99), len(s.samples) > 0), len(s.samples))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
