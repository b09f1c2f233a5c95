package main

import (
	"context"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"
)

type benchOptions struct {
	messages    int
	rate        int
	burst       int
	concurrency int
	size        int
	bound       time.Duration
	out         string
}

func newBenchCmd(g *globals) *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench URL",
		Short: "Measure propagation latency and throughput through a broker",
		Long: `bench measures, on your own broker and in the same run:

  client        the broker's own client library (nats.go, go-redis,
                amqp091-go): publish a payload, receive it on a second
                connection; what the broker costs
  transport     the same through backplane's transport (natstransport,
                redistransport, rabbitmqtransport): publish and subscribe,
                no engine
  engine        the full backplane engine: Invalidate on one instance until the
                key is evicted on another (encoding, group commit, decoding)

Latency is measured at a steady --rate (p50, p99, max); throughput with a burst
of --burst messages (raw) or keys (engine) from --concurrency publishers.
Everything runs on fresh namespaces of its own, so bench never disturbs the
applications on the broker, but it does load the broker for a few seconds.

--out FILE writes every latency sample as CSV to FILE (columns mode, phase,
rank, latency_ns; rank orders the samples of a mode and phase from fastest, 0,
to slowest, it is not the send order) and a latency histogram next to it: FILE
with the extension .svg (bench.csv: bench.svg).`,
		Example: `  backplane bench nats://127.0.0.1:4222
  backplane bench redis://127.0.0.1:6379 --messages 5000 --rate 2000 --out bench.csv`,
		Args: urlArg(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), g, args[0], o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.messages, "messages", 1000, "messages sent to measure latency, per mode")
	f.IntVar(&o.rate, "rate", 1000, "messages per second while measuring latency")
	f.IntVar(&o.burst, "burst", 20000, "messages (raw) or keys (engine) sent to measure throughput")
	f.IntVar(&o.concurrency, "concurrency", 16, "concurrent publishers during the throughput burst")
	f.IntVar(&o.size, "size", 64, "raw payload size in bytes (engine messages carry keys)")
	f.DurationVar(&o.bound, "bound", 10*time.Second, "how long to wait for the last message of a phase")
	f.StringVar(&o.out, "out", "", "write the latency samples as CSV to FILE and a histogram as SVG beside it (bench.csv: bench.svg)")
	return cmd
}

// benchResult is one row of the table.
type benchResult struct {
	mode       string
	sent, recv int
	lat        []time.Duration // sorted
	throughput float64
	unit       string
	burstRecv  int
	burstSent  int
	burstLat   []time.Duration
}

func runBench(ctx context.Context, g *globals, rawURL string, o benchOptions) error {
	switch {
	case o.messages <= 0 || o.rate <= 0 || o.burst <= 0 || o.concurrency <= 0:
		return usagef("--messages, --rate, --burst and --concurrency must be positive")
	case o.size < 16:
		return usagef("--size must be at least 16 bytes (a timestamp and a sequence number)")
	case o.bound <= 0:
		return usagef("--bound must be positive")
	}
	if o.out != "" {
		if err := checkWritable(o.out); err != nil {
			return usagef("--out: %v", err)
		}
	}
	pr := &progress{w: g.stderr, tty: isTerminal(g.stderr)}
	fmt.Fprintf(g.stdout, "bench %s: %d messages at %d/s for latency, a burst of %d from %d publishers for throughput\n",
		redact(rawURL), o.messages, o.rate, o.burst, o.concurrency)

	var rows []benchResult
	native, err := benchRaw(ctx, g, rawURL, o, pr, nativePipe)
	switch {
	case err == nil:
		rows = append(rows, native)
	case !errors.Is(err, errNoNativeClient):
		return interrupted(ctx, err)
	}
	raw, err := benchRaw(ctx, g, rawURL, o, pr, transportPipe)
	if err != nil {
		return interrupted(ctx, err)
	}
	eng, err := benchEngine(ctx, g, rawURL, o, pr)
	if err != nil {
		return interrupted(ctx, err)
	}
	rows = append(rows, raw, eng)
	pr.finish()
	printBench(g, o, rows...)
	if o.out != "" {
		svg, err := writeBenchFiles(o.out, rows...)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "samples written to %s, histogram to %s\n", o.out, svg)
	}
	for _, r := range rows {
		if r.recv < r.sent || r.burstRecv < r.burstSent {
			return silentError{"messages were lost (see the table)"}
		}
	}
	return nil
}

func checkWritable(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// pace calls send(i) for i in [0, n) at rate per second, updating pr.
func pace(ctx context.Context, n, rate int, pr *progress, send func(i int) error) error {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send(i); err != nil {
			return err
		}
		if i%50 == 0 {
			pr.update(i, n)
		}
	}
	pr.update(n, n)
	return nil
}

// burst runs n sends from c goroutines.
func burst(ctx context.Context, n, c int, pr *progress, send func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := send(i); err != nil {
					once.Do(func() { first = err })
					return
				}
				if i%500 == 0 {
					pr.update(i, n)
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// waitCount polls until count() reaches n or bound passes.
func waitCount(ctx context.Context, bound time.Duration, n int, count func() int) {
	deadline := time.Now().Add(bound)
	for count() < n && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
}

type pipeOpener func(ctx context.Context, g *globals, rawURL, ns string, onMsg func([]byte)) (*pipe, error)

func benchRaw(ctx context.Context, g *globals, rawURL string, o benchOptions, pr *progress, open pipeOpener) (benchResult, error) {
	res := benchResult{unit: "msg/s"}
	for _, phase := range []string{"latency", "throughput"} {
		var lat latencies
		var last atomic.Int64
		onMsg := func(p []byte) {
			now := time.Now()
			if len(p) >= 16 {
				lat.add(now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(p)))))
				last.Store(now.UnixNano())
			}
		}
		pp, err := open(ctx, g, rawURL, randomNamespace("backplane-bench-raw-"), onMsg)
		if err != nil {
			return res, err
		}
		res.mode = pp.label
		send := func(i int) error {
			p := make([]byte, o.size)
			binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
			binary.BigEndian.PutUint64(p[8:], uint64(i))
			pctx, cancel := context.WithTimeout(ctx, g.timeout)
			defer cancel()
			if err := pp.publish(pctx, p); err != nil {
				return fmt.Errorf("%s publish: %w", pp.label, classify(pctx, rawURL, g.timeout, err))
			}
			return nil
		}
		flush := func() error {
			fctx, cancel := context.WithTimeout(ctx, g.timeout)
			defer cancel()
			return pp.flush(fctx)
		}
		if phase == "latency" {
			pr.start(pp.label + ": latency")
			if err = pace(ctx, o.messages, o.rate, pr, send); err == nil {
				err = flush()
			}
			if err == nil {
				waitCount(ctx, o.bound, o.messages, lat.count)
				res.sent, res.recv, res.lat = o.messages, lat.count(), lat.snapshot()
			}
		} else {
			pr.start(pp.label + ": throughput")
			start := time.Now()
			if err = burst(ctx, o.burst, o.concurrency, pr, send); err == nil {
				err = flush()
			}
			if err == nil {
				waitCount(ctx, o.bound, o.burst, lat.count)
				res.burstSent, res.burstRecv, res.burstLat = o.burst, lat.count(), lat.snapshot()
				if el := time.Unix(0, last.Load()).Sub(start); el > 0 {
					res.throughput = float64(res.burstRecv) / el.Seconds()
				}
			}
		}
		pp.close()
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func benchEngine(ctx context.Context, g *globals, rawURL string, o benchOptions, pr *progress) (benchResult, error) {
	res := benchResult{mode: "engine Invalidate→evict", unit: "keys/s"}
	for _, phase := range []string{"latency", "throughput"} {
		n := o.messages
		if phase == "throughput" {
			n = o.burst
		}
		ns := randomNamespace("backplane-bench-engine-")
		starts := make([]atomic.Int64, n)
		var lat latencies
		var last atomic.Int64
		a, err := g.openCache(ctx, rawURL, ns, nil)
		if err != nil {
			return res, err
		}
		var aID core.SourceID = a.ID()
		observe := func(p []byte, handled time.Time) {
			env, err := core.DecodeEnvelope(p)
			if err != nil || env.Op != core.OpInvalidate || env.Source != aID {
				return
			}
			for _, k := range env.Keys {
				i, err := strconv.Atoi(strings.TrimPrefix(k, "bench:"))
				if err != nil || i < 0 || i >= n {
					continue
				}
				lat.add(handled.Sub(time.Unix(0, starts[i].Load())))
			}
			last.Store(handled.UnixNano())
		}
		b, err := g.openCache(ctx, rawURL, ns, func(bp core.Backplane) core.Backplane { return newTap(bp, observe) })
		if err != nil {
			_ = a.Close()
			return res, err
		}
		send := func(i int) error {
			starts[i].Store(time.Now().UnixNano())
			ictx, cancel := context.WithTimeout(ctx, g.timeout)
			defer cancel()
			if err := a.Invalidate(ictx, "bench:"+strconv.Itoa(i)); err != nil {
				return fmt.Errorf("Invalidate: %w", classify(ictx, rawURL, g.timeout, err))
			}
			return nil
		}
		if phase == "latency" {
			pr.start("engine: latency")
			if err = pace(ctx, n, o.rate, pr, send); err == nil {
				waitCount(ctx, o.bound, n, lat.count)
				res.sent, res.recv, res.lat = n, lat.count(), lat.snapshot()
			}
		} else {
			pr.start("engine: throughput")
			start := time.Now()
			if err = burst(ctx, n, o.concurrency*4, pr, send); err == nil {
				waitCount(ctx, o.bound, n, lat.count)
				res.burstSent, res.burstRecv, res.burstLat = n, lat.count(), lat.snapshot()
				if el := time.Unix(0, last.Load()).Sub(start); el > 0 {
					res.throughput = float64(res.burstRecv) / el.Seconds()
				}
			}
		}
		_ = a.Close()
		_ = b.Close()
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func printBench(g *globals, o benchOptions, rows ...benchResult) {
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-24s\tsent\treceived\tp50\tp99\tmax\tthroughput\t\n", "mode")
	for _, r := range rows {
		have := len(r.lat) > 0
		var mx time.Duration
		if have {
			mx = r.lat[len(r.lat)-1]
		}
		fmt.Fprintf(tw, "%-24s\t%d\t%d\t%s\t%s\t%s\t%s %s\t\n", r.mode, r.sent, r.recv,
			fmtDur(percentile(r.lat, 0.50), have), fmtDur(percentile(r.lat, 0.99), have), fmtDur(mx, have),
			fmtCount(uint64(r.throughput)), r.unit)
	}
	_ = tw.Flush()
	fmt.Fprintf(g.stdout, `latency: client and transport = publish call to delivery on a second connection; engine =
Invalidate call to the key evicted on a second instance (one host clock). Throughput: %d
messages/keys from %d (client, transport) or %d (engine) concurrent callers, first call to
last delivery; the engine coalesces concurrent keys into few messages.
`, o.burst, o.concurrency, o.concurrency*4)
	for _, r := range rows {
		if r.burstRecv < r.burstSent {
			fmt.Fprintf(g.stdout, "%s: %d of %d burst messages/keys arrived within %v\n", r.mode, r.burstRecv, r.burstSent, o.bound)
		}
	}
}

// writeBenchFiles writes the CSV and the SVG histogram; it returns the
// SVG's path.
func writeBenchFiles(path string, rows ...benchResult) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := csv.NewWriter(f)
	// The samples are sorted: rank 0 is the fastest of its mode and phase.
	_ = w.Write([]string{"mode", "phase", "rank", "latency_ns"})
	for _, r := range rows {
		for _, ph := range []struct {
			name string
			s    []time.Duration
		}{{"latency", r.lat}, {"throughput", r.burstLat}} {
			for i, d := range ph.s {
				_ = w.Write([]string{r.mode, ph.name, strconv.Itoa(i), strconv.FormatInt(d.Nanoseconds(), 10)})
			}
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	svgPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".svg"
	if svgPath == path {
		svgPath = path + ".svg"
	}
	var series []histSeries
	for _, r := range rows {
		series = append(series, histSeries{name: r.mode, samples: r.lat})
	}
	if err := os.WriteFile(svgPath, []byte(histogramSVG("propagation latency (steady rate)", series)), 0o644); err != nil {
		return "", err
	}
	return svgPath, nil
}
