package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/examples/catalog/catalog"
)

type demoOptions struct {
	duration  time.Duration
	transport string
	store     string
	instances int
	products  int
	readRate  int
	writeRate int
	grace     time.Duration
}

func newDemoCmd(g *globals) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run three catalog instances and watch invalidation keep them coherent",
		Long: `demo needs no servers and no setup. It starts an embedded NATS server in this
process, a SQLite product database in a temporary directory, and three
instances of the catalog example service (HTTP, cache-aside through
backplane). Then it drives reads and writes through all three for --duration
and shows, per instance: reads, cache hits and misses, invalidations received
from the other instances, and propagation latency (the writer's publish to
the key evicted here, p50 and p99).

It checks every read: a read that starts more than --grace after an update
was acknowledged and still returns an older version is a stale read. There
must be none; the demo exits with code 1 if it sees one.

--transport runs the same demo over a real broker (on a fresh namespace of its
own, so it disturbs no application). --store picks the instances' local
store: bigcache (stores/bigcachestore) or otter (stores/otterstore).`,
		Example: `  backplane demo
  backplane demo --duration 5s
  backplane demo --transport redis://127.0.0.1:6379
  backplane demo --transport 'redis://127.0.0.1:6379?mode=stream'
  backplane demo --transport nats://127.0.0.1:4222 --instances 5 --write-rate 100
  backplane demo --store otter`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.DurationVarP(&o.duration, "duration", "d", 15*time.Second, "how long to run the workload")
	f.StringVar(&o.transport, "transport", "", "broker URL to use instead of the embedded NATS server")
	f.StringVar(&o.store, "store", "bigcache", "local store of the instances: "+strings.Join(storeNames, " or "))
	f.IntVar(&o.instances, "instances", 3, "catalog instances to run")
	f.IntVar(&o.products, "products", 100, "products in the catalog")
	f.IntVar(&o.readRate, "read-rate", 800, "reads per second, spread over the instances")
	f.IntVar(&o.writeRate, "write-rate", 25, "updates per second, through random instances")
	f.DurationVar(&o.grace, "grace", time.Second, "propagation allowance of the stale-read check")
	return cmd
}

// demoInstance is one catalog instance and what the demo measured on it.
type demoInstance struct {
	name   string
	url    string
	cache  *core.Cache
	db     *catalog.DB
	srv    *http.Server
	self   atomic.Pointer[core.SourceID]
	reads  atomic.Uint64
	writes atomic.Uint64
	inval  atomic.Uint64
	lat    latencies
}

// observe sees every message after the engine handled it.
func (in *demoInstance) observe(p []byte, handled time.Time) {
	env, err := core.DecodeEnvelope(p)
	if err != nil || env.Op != core.OpInvalidate {
		return
	}
	if self := in.self.Load(); self != nil && env.Source == *self {
		return
	}
	in.inval.Add(1)
	if !env.Sent.IsZero() {
		in.lat.add(handled.Sub(env.Sent))
	}
}

// ledger records acknowledged updates and judges reads.
type ledger struct {
	mu   sync.Mutex
	acks map[int64][]ack // per product, in version order
}

type ack struct {
	version int64
	at      time.Time
}

func (l *ledger) record(id, version int64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acks[id] = append(l.acks[id], ack{version, at})
}

// newest returns the highest version of id acknowledged before t.
func (l *ledger) newest(id int64, t time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v int64
	for _, a := range l.acks[id] {
		if a.at.Before(t) && a.version > v {
			v = a.version
		}
	}
	return v
}

type demoCounters struct {
	reads, writes, errors, stale, overlapped, listings atomic.Uint64
	firstStale                                         atomic.Pointer[string]
	firstError                                         atomic.Pointer[string]
}

func (c *demoCounters) fail(msg string) {
	c.errors.Add(1)
	c.firstError.CompareAndSwap(nil, &msg)
}

// startNATS starts an embedded NATS server on a free port of 127.0.0.1.
func startNATS() (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		ServerName: "backplane-demo",
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded NATS server did not start within 10s")
	}
	return s, nil
}

func runDemo(ctx context.Context, g *globals, o demoOptions) error {
	switch {
	case o.duration <= 0:
		return usagef("--duration must be positive")
	case o.instances < 2 || o.instances > 26:
		return usagef("--instances must be between 2 and 26")
	case o.products < 1:
		return usagef("--products must be at least 1")
	case o.readRate < 1 || o.writeRate < 1:
		return usagef("--read-rate and --write-rate must be at least 1")
	case o.grace < 0:
		return usagef("--grace must not be negative")
	case !slices.Contains(storeNames, o.store):
		return usagef("--store must be one of %s", strings.Join(storeNames, ", "))
	}
	rawURL, where := o.transport, ""
	if rawURL == "" {
		ns, err := startNATS()
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		rawURL = ns.ClientURL()
		where = "embedded NATS server on " + rawURL
	} else {
		where = redact(rawURL)
	}
	namespace := randomNamespace("backplane-demo-")

	dir, err := os.MkdirTemp("", "backplane-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dbCfg := catalog.Config{Driver: catalog.DriverSQLite, DSN: filepath.Join(dir, "catalog.db")}
	setupCtx, cancelSetup := context.WithTimeout(ctx, g.timeout)
	defer cancelSetup()
	seedDB, err := catalog.Open(setupCtx, dbCfg)
	if err != nil {
		return err
	}
	err = seedDB.Seed(setupCtx, o.products)
	_ = seedDB.Close()
	if err != nil {
		return err
	}

	ins := make([]*demoInstance, 0, o.instances)
	defer func() {
		for _, in := range ins {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = in.srv.Shutdown(sctx)
			cancel()
			_ = in.cache.Close()
			_ = in.db.Close()
		}
	}()
	for i := range o.instances {
		in := &demoInstance{name: string(rune('a' + i))}
		in.db, err = catalog.Open(setupCtx, dbCfg)
		if err != nil {
			return err
		}
		in.cache, err = g.openCacheOn(ctx, o.store, rawURL, namespace, func(bp core.Backplane) core.Backplane {
			return newTap(bp, in.observe)
		})
		if err != nil {
			_ = in.db.Close()
			return interrupted(ctx, err)
		}
		id := in.cache.ID()
		in.self.Store(&id)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = in.cache.Close()
			_ = in.db.Close()
			return err
		}
		in.url = "http://" + ln.Addr().String()
		in.srv = &http.Server{Handler: catalog.New(in.db, in.cache), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = in.srv.Serve(ln) }()
		ins = append(ins, in)
	}

	fmt.Fprintf(g.stdout, "backplane demo: %d catalog instances, %d products in SQLite, broker: %s, namespace %s, store %s\n",
		o.instances, o.products, where, namespace, o.store)
	for _, in := range ins {
		fmt.Fprintf(g.stdout, "  instance %s  %s/products/{id}\n", in.name, in.url)
	}
	fmt.Fprintf(g.stdout, "workload: %d reads/s and %d updates/s for %v (Ctrl-C stops early)\n\n", o.readRate, o.writeRate, o.duration)

	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	led := &ledger{acks: map[int64][]ack{}}
	var ctr demoCounters
	client := &http.Client{Timeout: g.timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	defer client.CloseIdleConnections()

	var wg sync.WaitGroup
	const readers = 8
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), uint64(start.UnixNano())))
			interval := time.Second * readers / time.Duration(o.readRate)
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
				}
				in := ins[rng.IntN(len(ins))]
				if rng.IntN(10) == 0 {
					demoListing(wctx, client, in, led, &ctr, o.grace)
				} else {
					demoRead(wctx, client, in, pickProduct(rng, o.products), led, &ctr, o.grace)
				}
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(99, uint64(start.UnixNano())))
		t := time.NewTicker(time.Second / time.Duration(o.writeRate))
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			demoWrite(wctx, client, ins[rng.IntN(len(ins))], pickProduct(rng, o.products), rng, led, &ctr)
		}
	})

	tty := isTerminal(g.stdout)
	scr := &screen{w: g.stdout, tty: tty}
	every := 3 * time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastDraw time.Time
loop:
	for {
		select {
		case <-wctx.Done():
			break loop
		case <-tick.C:
			scr.draw(demoTable(ins, &ctr, time.Since(start), o.duration))
			lastDraw = time.Now()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Let the last invalidations arrive before the final numbers.
	time.Sleep(50 * time.Millisecond)
	if tty || time.Since(lastDraw) > time.Second {
		scr.draw(demoTable(ins, &ctr, elapsed, o.duration))
	}
	fmt.Fprintln(g.stdout)
	failed := demoSummary(g.stdout, ins, &ctr, elapsed, o)
	if ierr := interrupted(ctx, nil); ierr != nil {
		return ierr
	}
	if failed != "" {
		return silentError{failed}
	}
	return nil
}

// pickProduct chooses a product: 80% of reads go to the hottest tenth.
func pickProduct(rng *rand.Rand, n int) int64 {
	hot := max(1, n/10)
	if rng.Float64() < 0.8 {
		return int64(rng.IntN(hot) + 1)
	}
	return int64(rng.IntN(n) + 1)
}

func demoRead(ctx context.Context, client *http.Client, in *demoInstance, id int64, led *ledger, ctr *demoCounters, grace time.Duration) {
	started := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/products/%d", in.url, id), nil)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			ctr.fail(fmt.Sprintf("GET on instance %s: %v", in.name, err))
		}
		return
	}
	defer resp.Body.Close()
	var p catalog.Product
	if resp.StatusCode != http.StatusOK {
		ctr.fail(fmt.Sprintf("GET on instance %s: %s", in.name, resp.Status))
		return
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		ctr.fail(fmt.Sprintf("GET on instance %s: %v", in.name, err))
		return
	}
	in.reads.Add(1)
	ctr.reads.Add(1)
	if v := led.newest(id, started.Add(-grace)); p.Version < v {
		ctr.stale.Add(1)
		msg := fmt.Sprintf("instance %s served product %d version %d, but version %d was acknowledged more than %v before the read started",
			in.name, id, p.Version, v, grace)
		ctr.firstStale.CompareAndSwap(nil, &msg)
	} else if v := led.newest(id, started); p.Version < v {
		ctr.overlapped.Add(1)
	}
}

// demoListing reads the listing of the 5 cheapest products, which the
// catalog caches under a tag that every update invalidates, and judges
// each product in it like a read of that product.
func demoListing(ctx context.Context, client *http.Client, in *demoInstance, led *ledger, ctr *demoCounters, grace time.Duration) {
	started := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/listings/cheapest?n=5", nil)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			ctr.fail(fmt.Sprintf("GET listing on instance %s: %v", in.name, err))
		}
		return
	}
	defer resp.Body.Close()
	var ps []catalog.Product
	if resp.StatusCode != http.StatusOK {
		ctr.fail(fmt.Sprintf("GET listing on instance %s: %s", in.name, resp.Status))
		return
	}
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		ctr.fail(fmt.Sprintf("GET listing on instance %s: %v", in.name, err))
		return
	}
	in.reads.Add(1)
	ctr.reads.Add(1)
	ctr.listings.Add(1)
	for _, p := range ps {
		if v := led.newest(p.ID, started.Add(-grace)); p.Version < v {
			ctr.stale.Add(1)
			msg := fmt.Sprintf("instance %s listed product %d at version %d, but version %d was acknowledged more than %v before the read started (the listing is cached under a tag)",
				in.name, p.ID, p.Version, v, grace)
			ctr.firstStale.CompareAndSwap(nil, &msg)
			return
		}
	}
}

func demoWrite(ctx context.Context, client *http.Client, in *demoInstance, id int64, rng *rand.Rand, led *ledger, ctr *demoCounters) {
	body, _ := json.Marshal(catalog.Update{PriceCents: new(int64(100 + rng.IntN(100000)))})
	req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPut, fmt.Sprintf("%s/products/%d", in.url, id), bytes.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		ctr.fail(fmt.Sprintf("PUT on instance %s: %v", in.name, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		ctr.fail(fmt.Sprintf("PUT on instance %s: %s: %s", in.name, resp.Status, strings.TrimSpace(string(msg))))
		return
	}
	var p catalog.Product
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		ctr.fail(fmt.Sprintf("PUT on instance %s: %v", in.name, err))
		return
	}
	led.record(id, p.Version, time.Now())
	in.writes.Add(1)
	ctr.writes.Add(1)
}

func demoTable(ins []*demoInstance, ctr *demoCounters, elapsed, total time.Duration) []string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "instance\treads\thits\tmisses\thit %%\tupdates\tinvalidations in\tpropagation p50\tp99\t\n")
	for _, in := range ins {
		st := in.cache.Stats()
		lat := in.lat.snapshot()
		hitPct := "-"
		if st.Hits+st.Misses > 0 {
			hitPct = fmt.Sprintf("%.1f", 100*float64(st.Hits)/float64(st.Hits+st.Misses))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", in.name, fmtCount(in.reads.Load()), fmtCount(st.Hits), fmtCount(st.Misses),
			hitPct, fmtCount(in.writes.Load()), fmtCount(in.inval.Load()),
			fmtDur(percentile(lat, 0.5), len(lat) > 0), fmtDur(percentile(lat, 0.99), len(lat) > 0))
	}
	_ = tw.Flush()
	lines := []string{fmt.Sprintf("%5.1fs / %v   reads %s   updates %s   stale reads %d   errors %d",
		min(elapsed, total).Seconds(), total, fmtCount(ctr.reads.Load()), fmtCount(ctr.writes.Load()), ctr.stale.Load(), ctr.errors.Load())}
	for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		lines = append(lines, "  "+l)
	}
	return lines
}

// demoSummary prints the summary and returns a failure reason, or "".
func demoSummary(w io.Writer, ins []*demoInstance, ctr *demoCounters, elapsed time.Duration, o demoOptions) string {
	var all latencies
	var hits, misses uint64
	for _, in := range ins {
		for _, d := range in.lat.snapshot() {
			all.add(d)
		}
		st := in.cache.Stats()
		hits, misses = hits+st.Hits, misses+st.Misses
	}
	lat := all.snapshot()
	secs := elapsed.Seconds()
	reads, writes := ctr.reads.Load(), ctr.writes.Load()
	fmt.Fprintf(w, "summary after %.1fs:\n", secs)
	ratio := 0.0
	if hits+misses > 0 {
		ratio = 100 * float64(hits) / float64(hits+misses)
	}
	fmt.Fprintf(w, "  reads        %s (%.0f/s), cache hit ratio %.1f%%; %s of them listings cached under a tag\n",
		fmtCount(reads), float64(reads)/secs, ratio, fmtCount(ctr.listings.Load()))
	fmt.Fprintf(w, "  updates      %s (%.0f/s), each invalidated on the other %d instances\n", fmtCount(writes), float64(writes)/secs, len(ins)-1)
	if len(lat) > 0 {
		fmt.Fprintf(w, "  propagation  p50 %s, p99 %s, max %s over %s evictions (writer's publish to eviction on a peer)\n",
			fmtDur(percentile(lat, 0.5), true), fmtDur(percentile(lat, 0.99), true), fmtDur(lat[len(lat)-1], true), fmtCount(uint64(len(lat))))
	}
	fmt.Fprintf(w, "  in flight    %d reads overlapped an update's propagation and returned the previous version (allowed)\n", ctr.overlapped.Load())
	failed := ""
	if n := ctr.errors.Load(); n > 0 {
		fmt.Fprintf(w, "  errors       %d, first: %s\n", n, *ctr.firstError.Load())
		failed = fmt.Sprintf("%d requests failed", n)
	}
	if n := ctr.stale.Load(); n > 0 {
		fmt.Fprintf(w, "  stale reads  %d  FAIL, first: %s\n", n, *ctr.firstStale.Load())
		return fmt.Sprintf("%d stale reads", n)
	}
	fmt.Fprintf(w, "  stale reads  0 (no read that started more than %v after an update was acknowledged returned an older version)\n", o.grace)
	if failed == "" {
		fmt.Fprintln(w, "OK: every instance served fresh data")
	}
	return failed
}
