package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
)

func TestClassify(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		url  string
		err  error
		code int
		want string
	}{
		{"unknown scheme", "foo://x", fmt.Errorf("open: %w", fxmodule.ErrUnknownScheme), exitUsage, "unknown scheme"},
		{"invalid option", "nats://x", fmt.Errorf("%w: bad", core.ErrInvalidOption), exitUsage, "bad URL"},
		{"refused", "nats://h:1", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), exitConnect, "is the broker running"},
		{"dns", "nats://nohost:1", &net.DNSError{Err: "no such host", Name: "nohost"}, exitConnect, "host not found"},
		{"nats auth", "nats://u:p@h:1", errors.New("nats: Authorization Violation"), exitConnect, "authentication failed"},
		{"redis auth", "redis://u:p@h:1", errors.New("WRONGPASS invalid username-password pair"), exitConnect, "authentication failed"},
		{"tls", "tls://h:1", errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), exitConnect, "TLS failed"},
		{"timeout", "rediss://h:1", fmt.Errorf("subscribe: %w", context.DeadlineExceeded), exitConnect, "needs a TLS server"},
		{"protocol", "redis://h:4222", errors.New("redis: can't parse map reply"), exitConnect, "does not speak the protocol"},
		{"other", "nats://h:1", errors.New("something odd"), exitConnect, "something odd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classify(ctx, tc.url, time.Second, tc.err)
			if code := exitCode(err); code != tc.code {
				t.Errorf("exit code %d, want %d (%v)", code, tc.code, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q lacks %q", err, tc.want)
			}
			if strings.Contains(err.Error(), ":p@") {
				t.Errorf("%q shows the password", err)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(s, tc.q); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{500, "500ns"}, {85 * time.Microsecond, "85µs"}, {1240 * time.Microsecond, "1.24ms"}, {2500 * time.Millisecond, "2.50s"}} {
		if got := fmtDur(tc.d, true); got != tc.want {
			t.Errorf("fmtDur(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if fmtDur(time.Second, false) != "-" {
		t.Error("fmtDur without a value is not -")
	}
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := fmtCount(n); got != want {
			t.Errorf("fmtCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTailLine(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	env := core.Envelope{Op: core.OpInvalidate, Seq: 7, Sent: at.Add(-300 * time.Microsecond), Keys: []string{"a", "b"}}
	got := tailLine(tailItem{at: at}, env, nil)
	for _, want := range []string{"03:04:05.006", "seq 7", "invalidate", "lag 300µs", "keys a b"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	_, derr := core.DecodeEnvelope([]byte("xyz"))
	got = tailLine(tailItem{at: at, payload: []byte("xyz")}, core.Envelope{}, derr)
	if !strings.Contains(got, "UNDECODABLE  3 bytes") || !strings.Contains(got, "78797a") {
		t.Errorf("undecodable line %q", got)
	}
}

func TestNamespaceFromURL(t *testing.T) {
	if got := nsOf("nats://h:1?namespace=shop&x=1", "other"); got != "shop" {
		t.Errorf("nsOf = %q, want shop", got)
	}
	if err := requireNamespace("nats://h:1?namespace=shop", ""); err != nil {
		t.Error(err)
	}
	if err := requireNamespace("nats://h:1", ""); exitCode(err) != exitUsage {
		t.Errorf("requireNamespace without one: %v", err)
	}
}

func TestHistogramSVG(t *testing.T) {
	if got := histogramSVG("t", nil); !strings.Contains(got, "no samples") {
		t.Errorf("empty histogram: %s", got)
	}
	one := histogramSVG("t", []histSeries{{name: "x", samples: []time.Duration{time.Millisecond}}})
	if !strings.Contains(one, "<rect") || !strings.Contains(one, "</svg>") {
		t.Errorf("one-sample histogram: %s", one)
	}
}

// The legend fits in the picture: at 7 pixels a character (more than
// 12px sans-serif takes), every text ends inside the width and above the
// bottom.
func TestHistogramLegendInside(t *testing.T) {
	samples := []time.Duration{90 * time.Microsecond, time.Millisecond, 40 * time.Millisecond}
	var series []histSeries
	for _, name := range []string{"nats.go client", "transport pub/sub", "engine Invalidate→evict"} {
		series = append(series, histSeries{name: name, samples: samples})
	}
	svg := histogramSVG("propagation latency (steady rate)", series)
	var w, h int
	if _, err := fmt.Sscanf(svg[strings.Index(svg, "width="):], `width="%d" height="%d"`, &w, &h); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`<text x="([0-9.]+)" y="([0-9.]+)"( text-anchor="(\w+)")?[^>]*>([^<]*)</text>`)
	for _, m := range re.FindAllStringSubmatch(svg, -1) {
		x, _ := strconv.ParseFloat(m[1], 64)
		y, _ := strconv.ParseFloat(m[2], 64)
		width := 7 * float64(utf8.RuneCountInString(m[5]))
		end := x + width
		switch m[4] {
		case "middle":
			end = x + width/2
		case "end":
			end = x
		}
		if end > float64(w) || y > float64(h) {
			t.Errorf("text %q at (%v, %v) ends at x=%v, outside the %dx%d picture", m[5], x, y, end, w, h)
		}
	}
}
