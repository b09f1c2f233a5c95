package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/internal/syncbuf"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/stores/bigcachestore"
)

// bin is the CLI binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "backplane-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "backplane")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the binary with args and stdin, bounded by a minute.
func cli(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), namespaceEnv+"=")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within a minute\n%v", args, r)
	}
	for _, s := range []string{"goroutine ", "panic:", ".go:"} {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("%v printed something like a stack trace (%q)\n%v", args, s, r)
		}
	}
	return r
}

func (r result) expect(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\n%v", r.code, code, r)
	}
	for _, c := range contains {
		if !strings.Contains(r.stdout+r.stderr, c) {
			t.Fatalf("output lacks %q\n%v", c, r)
		}
	}
}

// brokers returns the real brokers the command tests run against: an
// embedded NATS server, the machine's Redis and its PostgreSQL.
func brokers(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"nats":     func(t *testing.T) string { return testenv.StartNATS(t).URL() },
		"redis":    func(t *testing.T) string { return testenv.RedisURL(t) },
		"postgres": func(t *testing.T) string { return testenv.PostgresURL(t) },
	}
}

func TestVersion(t *testing.T) {
	r := cli(t, "", "version")
	r.expect(t, exitOK, "backplane ", "go1.")
	cli(t, "", "version", "extra").expect(t, exitUsage, "takes no arguments")
}

func TestHelp(t *testing.T) {
	for _, c := range []string{"", "demo", "tail", "invalidate", "clear", "bench", "check", "version"} {
		t.Run("help-"+c, func(t *testing.T) {
			args := []string{"--help"}
			if c != "" {
				args = []string{c, "--help"}
			}
			cli(t, "", args...).expect(t, exitOK, "Usage:", "Examples:", "Exit codes:", "3    cannot connect")
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"check", "--frob", "nats://127.0.0.1:4222"}, "unknown flag: --frob"},
		{"check without URL", []string{"check"}, "missing the broker URL"},
		{"check two URLs", []string{"check", "nats://a:1", "nats://b:1"}, "takes one URL"},
		{"tail without URL", []string{"tail"}, "missing the broker URL"},
		{"bench without URL", []string{"bench"}, "missing the broker URL"},
		{"clear without URL", []string{"clear", "--yes"}, "missing the broker URL"},
		{"invalidate without anything", []string{"invalidate"}, "missing the broker URL"},
		{"invalidate without keys", []string{"invalidate", "nats://127.0.0.1:1", "-n", "x"}, "missing the keys"},
		{"tail without namespace", []string{"tail", "nats://127.0.0.1:1"}, "--namespace NAME"},
		{"invalidate without namespace", []string{"invalidate", "nats://127.0.0.1:1", "k"}, "--namespace NAME"},
		{"clear without namespace", []string{"clear", "nats://127.0.0.1:1", "--yes"}, "--namespace NAME"},
		{"clear without --yes and no terminal", []string{"clear", "nats://127.0.0.1:1", "-n", "x"}, "pass --yes"},
		{"unknown scheme", []string{"check", "foo://127.0.0.1:1"}, "unknown scheme"},
		{"no scheme", []string{"check", "127.0.0.1:4222"}, "has no scheme"},
		{"unknown URL parameter", []string{"check", "nats://127.0.0.1:1?frob=1"}, `"frob"`},
		{"bad duration", []string{"demo", "--duration", "soon"}, "invalid argument"},
		{"negative duration", []string{"demo", "--duration", "-1s"}, "--duration must be positive"},
		{"demo with args", []string{"demo", "nats://127.0.0.1:4222"}, "takes no arguments"},
		{"demo unknown store", []string{"demo", "--store", "ristretto"}, "--store must be one of bigcache, otter"},
		{"bench bad size", []string{"bench", "nats://127.0.0.1:1", "--size", "3"}, "--size"},
		{"check unknown case", []string{"check", "nats://127.0.0.1:4222", "--case", "nope"}, `unknown case "nope"`},
		{"key too long", []string{"invalidate", "nats://127.0.0.1:1", "-n", "x", strings.Repeat("k", core.MaxKeyLen+1)}, "longest key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli(t, "", tc.args...).expect(t, exitUsage, tc.want)
		})
	}
}

func TestRedactsPasswords(t *testing.T) {
	r := cli(t, "", "check", "nats://user:hunter2@127.0.0.1:1")
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Fatalf("the password appears in the output\n%v", r)
	}
}

func TestConnectErrors(t *testing.T) {
	for _, url := range []string{"nats://127.0.0.1:1", "redis://127.0.0.1:1"} {
		for _, args := range [][]string{
			{"check", url},
			{"tail", url, "-n", "x"},
			{"invalidate", url, "-n", "x", "k"},
			{"clear", url, "-n", "x", "--yes"},
			{"bench", url},
			{"demo", "--transport", url},
		} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				cli(t, "", args...).expect(t, exitConnect, "cannot connect to 127.0.0.1:1", "connection refused", "is the broker running")
			})
		}
	}
	t.Run("unknown host", func(t *testing.T) {
		cli(t, "", "--timeout", "5s", "check", "nats://no-such-host.invalid:4222").expect(t, exitConnect, "host not found")
	})
	t.Run("nats wrong password", func(t *testing.T) {
		s := testenv.StartNATS(t, testenv.WithNATSUser("alice", "secret"))
		wrong := strings.Replace(s.URL(), "nats://", "nats://alice:wrong@", 1)
		cli(t, "", "check", wrong).expect(t, exitConnect, "authentication failed")
		right := strings.Replace(s.URL(), "nats://", "nats://alice:secret@", 1)
		cli(t, "", "check", right, "--case", "delivery").expect(t, exitOK, "all 1 cases passed")
	})
	t.Run("redis wrong password", func(t *testing.T) {
		s := testenv.StartRedis(t, testenv.WithRedisArgs("--user", "alice", "on", ">secret", "~*", "&*", "+@all"))
		cli(t, "", "check", "redis://alice:wrong@"+s.Addr()).expect(t, exitConnect, "authentication failed")
		cli(t, "", "check", "redis://alice:secret@"+s.Addr(), "--case", "canary").expect(t, exitOK, "all 1 cases passed")
	})
	t.Run("wrong protocol", func(t *testing.T) {
		s := testenv.StartNATS(t)
		cli(t, "", "--timeout", "3s", "check", "redis://"+strings.TrimPrefix(s.URL(), "nats://")).expect(t, exitConnect, "cannot connect")
	})
}

func TestCheck(t *testing.T) {
	for name, start := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			r := cli(t, "", "check", url)
			r.expect(t, exitOK, "all 15 cases passed")
			for _, c := range checkCases {
				if !regexp.MustCompile(`(?m)^ok +` + regexp.QuoteMeta(c.name) + ` `).MatchString(r.stdout) {
					t.Errorf("no ok line for case %s\n%v", c.name, r)
				}
			}
			cli(t, "", "check", url, "--case", "delivery,canary").expect(t, exitOK, "all 2 cases passed")
		})
	}
	// Over a durable mode, check says so and checks the log too.
	t.Run("redis-stream", func(t *testing.T) {
		r := cli(t, "", "check", testenv.StartRedis(t).URL()+"?mode=stream")
		r.expect(t, exitOK, "mode: durable log", "all 16 cases passed")
		if !regexp.MustCompile(`(?m)^ok +log `).MatchString(r.stdout) {
			t.Errorf("no ok line for case log\n%v", r)
		}
	})
}

// TestCheckFails runs check against a broker that silently drops what
// the check's user publishes (a NATS publish permission it lacks): the
// delivery cases must fail with exit code 1.
func TestCheckFails(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "mute", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Deny: []string{">"}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://mute:pw@", 1)
	r := cli(t, "", "check", url, "--case", "subscribe,delivery,echo", "--bound", "1s")
	r.expect(t, exitFailure, "ok    subscribe", "FAIL  delivery", "FAIL  echo", "2 of 3 cases failed")
}

// background starts the binary and returns its output buffers and a wait
// function bounded by a minute.
func background(t *testing.T, args ...string) (cmd *exec.Cmd, stdout, stderr *syncbuf.Buffer, wait func() result) {
	t.Helper()
	cmd = exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), namespaceEnv+"=")
	stdout, stderr = &syncbuf.Buffer{}, &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var r result
	wait = func() result {
		once.Do(func() {
			select {
			case err := <-done:
				r = result{stdout: stdout.String(), stderr: stderr.String()}
				if ee, ok := err.(*exec.ExitError); ok {
					r.code = ee.ExitCode()
				}
			case <-time.After(time.Minute):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("%v did not finish within a minute\nstdout:\n%s\nstderr:\n%s", args, stdout, stderr)
			}
		})
		return r
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		wait()
	})
	return cmd, stdout, stderr, wait
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// engine opens an application instance in the test process.
func engine(t *testing.T, url, ns string) *core.Cache {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bp, err := fxmodule.OpenBackplane(ctx, url, ns)
	if err != nil {
		t.Fatal(err)
	}
	cfg := bigcachestore.DefaultConfig()
	cfg.Shards, cfg.HardMaxCacheSize = 16, 16
	store, err := bigcachestore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := core.Open(ctx, store, bp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTailInvalidateClear runs tail in the background, acts on the bus
// with invalidate, clear and a foreign payload, and checks that tail shows
// each message and that an application instance evicted what it was told.
func TestTailInvalidateClear(t *testing.T) {
	for name, start := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			ns := randomNamespace("cli-test-")
			app := engine(t, url, ns)
			for _, k := range []string{"product:1", "product:2", "product:3"} {
				if err := app.Set(k, []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			_, jsonOut, jsonErr, waitJSON := background(t, "tail", url, "-n", ns, "--json", "--count", "3")
			_, textOut, textErr, waitText := background(t, "tail", url, "--namespace", ns, "--count", "3")
			waitFor(t, "both tails to subscribe", func() bool {
				return strings.Contains(jsonErr.String(), "tailing") && strings.Contains(textErr.String(), "tailing")
			})

			cli(t, "", "invalidate", url, "-n", ns, "product:1", "product:2").expect(t, exitOK, "invalidated 2 key(s)")
			waitFor(t, "the application to evict product:1 and product:2", func() bool {
				_, ok1 := app.Get("product:1")
				_, ok2 := app.Get("product:2")
				return !ok1 && !ok2
			})
			if _, ok := app.Get("product:3"); !ok {
				t.Fatal("product:3 was evicted too")
			}

			cli(t, "", "clear", url, "-n", ns, "--yes").expect(t, exitOK, "cleared namespace")
			waitFor(t, "the application to clear", func() bool { _, ok := app.Get("product:3"); return !ok })

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			raw, err := fxmodule.OpenBackplane(ctx, url, ns)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if err := raw.Publish(ctx, []byte("not an envelope")); err != nil {
				t.Fatal(err)
			}

			rj, rt := waitJSON(), waitText()
			rj.expect(t, exitOK)
			rt.expect(t, exitOK, "invalidate", "keys product:1 product:2", "clear", "UNDECODABLE  15 bytes")
			var recs []tailRecord
			sc := bufio.NewScanner(strings.NewReader(jsonOut.String()))
			for sc.Scan() {
				var r tailRecord
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("tail --json printed a line that is not JSON: %q: %v", sc.Text(), err)
				}
				recs = append(recs, r)
			}
			if len(recs) != 3 {
				t.Fatalf("tail --json printed %d records, want 3:\n%s", len(recs), jsonOut)
			}
			if recs[0].Op != "invalidate" || strings.Join(recs[0].Keys, ",") != "product:1,product:2" || recs[0].Seq != 1 || len(recs[0].Source) != 32 || recs[0].LagMicros == nil {
				t.Errorf("first record %+v, want an invalidation of product:1,product:2 with seq 1, a source and a lag", recs[0])
			}
			if recs[1].Op != "clear" {
				t.Errorf("second record %+v, want a clear", recs[1])
			}
			if recs[2].Error == "" || recs[2].Bytes != 15 || recs[2].PayloadHex == "" {
				t.Errorf("third record %+v, want an undecodable payload of 15 bytes", recs[2])
			}
			_ = textOut
		})
	}
}

func TestInvalidateKeysFrom(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	ns := randomNamespace("cli-test-")
	app := engine(t, url, ns)
	for _, k := range []string{"a", "b", "c"} {
		if err := app.Set(k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	cli(t, "a\n\nb\n", "invalidate", url, "-n", ns, "--keys-from", "-").expect(t, exitOK, "invalidated 2 key(s)")
	waitFor(t, "a and b to go", func() bool {
		_, okA := app.Get("a")
		_, okB := app.Get("b")
		return !okA && !okB
	})
	if _, ok := app.Get("c"); !ok {
		t.Fatal("c was evicted too")
	}
	// The namespace may come from the URL.
	cli(t, "", "invalidate", url+"?namespace="+ns, "c").expect(t, exitOK, "invalidated 1 key(s)")
	waitFor(t, "c to go", func() bool { _, ok := app.Get("c"); return !ok })
}

// tail --replay prints what a durable mode's log holds, then follows it.
func TestTailReplay(t *testing.T) {
	durable := map[string]func(t *testing.T) string{
		"jetstream": func(t *testing.T) string {
			return testenv.StartNATS(t, testenv.WithNATSJetStream()).URL() + "?jetstream=true&storage=memory"
		},
		"redis-stream": func(t *testing.T) string { return testenv.StartRedis(t).URL() + "?mode=stream" },
	}
	for name, start := range durable {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			ns := randomNamespace("cli-replay-")
			cli(t, "", "invalidate", url, "-n", ns, "before:1", "before:2").expect(t, exitOK, "invalidated 2 key(s)")
			_, out, stderr, wait := background(t, "tail", url, "-n", ns, "--replay", "--count", "2")
			waitFor(t, "tail to subscribe", func() bool { return strings.Contains(stderr.String(), "tailing") })
			cli(t, "", "invalidate", url, "-n", ns, "after:1").expect(t, exitOK, "invalidated 1 key(s)")
			wait().expect(t, exitOK)
			if got := out.String(); !strings.Contains(got, "before:1 before:2") || !strings.Contains(got, "after:1") {
				t.Fatalf("tail --replay printed:\n%s\nwant the retained invalidation, then the new one", got)
			}
		})
	}
	cli(t, "", "tail", testenv.RedisURL(t), "-n", "x", "--replay").expect(t, exitUsage, "--replay needs a durable mode")
}

// invalidate --ack returns once every live instance confirmed, and says
// how many there were.
func TestInvalidateAck(t *testing.T) {
	for name, start := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			ns := randomNamespace("cli-ack-")
			apps := []*core.Cache{engine(t, url, ns), engine(t, url, ns)}
			for _, app := range apps {
				if err := app.Set("product:1", []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			cli(t, "", "invalidate", url, "-n", ns, "--ack", "product:1").expect(t, exitOK, "confirmed by all 2 live instances")
			for i, app := range apps {
				if _, ok := app.Get("product:1"); ok {
					t.Fatalf("instance %d still serves product:1 after invalidate --ack returned", i)
				}
			}
		})
	}
}

func TestTailStopsOnInterrupt(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	cmd, _, stderr, wait := background(t, "tail", url, "-n", "x")
	waitFor(t, "tail to subscribe", func() bool { return strings.Contains(stderr.String(), "tailing") })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	wait().expect(t, exitOK)
}

func TestBench(t *testing.T) {
	for name, start := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			out := filepath.Join(t.TempDir(), "bench.csv")
			r := cli(t, "", "bench", url, "--messages", "100", "--rate", "2000", "--burst", "1000", "--out", out)
			r.expect(t, exitOK, "client", "transport pub/sub", "engine Invalidate→evict", "p50", "p99", "msg/s", "keys/s", "histogram to")
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows, err := csv.NewReader(f).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) < 1+3*(100+1000) || strings.Join(rows[0], ",") != "mode,phase,rank,latency_ns" {
				t.Fatalf("CSV has %d rows, header %v", len(rows), rows[0])
			}
			svg, err := os.ReadFile(strings.TrimSuffix(out, ".csv") + ".svg")
			if err != nil {
				t.Fatal(err)
			}
			dec := xml.NewDecoder(bytes.NewReader(svg))
			for {
				if _, err := dec.Token(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("the histogram is not well-formed SVG: %v", err)
				}
			}
			if !bytes.Contains(svg, []byte("<rect")) || !bytes.Contains(svg, []byte("transport pub/sub")) {
				t.Fatal("the histogram has no bars or no legend")
			}
		})
	}
}

func TestDemo(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		r := cli(t, "", "demo", "--duration", "2s")
		r.expect(t, exitOK, "embedded NATS server", "instance a", "instance b", "instance c", "propagation",
			"stale reads  0", "OK: every instance served fresh data")
	})
	t.Run("otter", func(t *testing.T) {
		r := cli(t, "", "demo", "--duration", "2s", "--store", "otter")
		r.expect(t, exitOK, "embedded NATS server", "store otter", "instance c", "stale reads  0", "OK: every instance served fresh data")
	})
	t.Run("redis", func(t *testing.T) {
		url := testenv.RedisURL(t)
		r := cli(t, "", "demo", "--duration", "2s", "--transport", url)
		r.expect(t, exitOK, "broker: "+url, "stale reads  0", "OK: every instance served fresh data")
	})
	t.Run("redis-stream", func(t *testing.T) {
		url := testenv.StartRedis(t).URL() + "?mode=stream"
		r := cli(t, "", "demo", "--duration", "2s", "--transport", url)
		r.expect(t, exitOK, "stale reads  0", "OK: every instance served fresh data")
	})
	t.Run("interrupted", func(t *testing.T) {
		cmd, stdout, _, wait := background(t, "demo", "--duration", "50s")
		waitFor(t, "the workload to start", func() bool { return strings.Contains(stdout.String(), "workload:") })
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		wait().expect(t, exitInterrupted, "summary after", "interrupted")
	})
}

// TestSigning acts on a fleet that signs its messages: unsigned commands
// are rejected by the application, signed ones are applied, and tail shows
// each verdict.
func TestSigning(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	ns := randomNamespace("cli-test-")
	secret := []byte("0123456789abcdef0123456789abcdef")
	keyFile := filepath.Join(t.TempDir(), "k1")
	if err := os.WriteFile(keyFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	app := openSigned(t, url, ns, secret)
	if err := app.Set("k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	_, out, stderr, wait := background(t, "tail", url, "-n", ns, "--count", "2", "--signing-key", "k1:"+keyFile)
	waitFor(t, "tail to subscribe", func() bool { return strings.Contains(stderr.String(), "tailing") })

	cli(t, "", "invalidate", url, "-n", ns, "k").expect(t, exitOK)
	waitFor(t, "the application to reject the unsigned invalidation", func() bool { return app.Stats().Rejected > 0 })
	if _, ok := app.Get("k"); !ok {
		t.Fatal("an unsigned invalidation evicted the key")
	}
	cli(t, "", "invalidate", url, "-n", ns, "k", "--signing-key", "k1:"+keyFile).expect(t, exitOK)
	waitFor(t, "the signed invalidation to evict the key", func() bool { _, ok := app.Get("k"); return !ok })

	wait().expect(t, exitOK, "[REJECTED: message is not signed]", "signed(k1)", "[verified]")
	_ = out
	cli(t, "", "invalidate", url, "-n", ns, "k", "--signing-key", "k1").expect(t, exitUsage, "want ID:FILE")
	cli(t, "", "invalidate", url, "-n", ns, "k", "--signing-key", "k1:/no/such/file").expect(t, exitUsage, "no such file")
}

// TestCheckFleet joins an application's namespace: with the fleet's key
// it hears the application; with another key it rejects what it hears and
// says so.
func TestCheckFleet(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	ns := randomNamespace("cli-test-")
	dir := t.TempDir()
	keyFile := func(name, secret string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	right := keyFile("k1", "0123456789abcdef0123456789abcdef")
	wrong := keyFile("k2", "fedcba9876543210fedcba9876543210")
	openSigned(t, url, ns, []byte("0123456789abcdef0123456789abcdef"), core.WithHeartbeat(100*time.Millisecond, 0))
	cli(t, "", "check", url, "--case", "fleet", "-n", ns, "--listen", "1s", "--signing-key", "k1:"+right).
		expect(t, exitOK, "1 peers heard", "all 1 cases passed")
	cli(t, "", "check", url, "--case", "fleet", "-n", ns, "--listen", "1s", "--signing-key", "k2:"+wrong).
		expect(t, exitFailure, "FAIL  fleet", "rejected", "another key", "1 of 1 cases failed")
	cli(t, "", "check", url, "--listen", "0s", "-n", ns).expect(t, exitUsage, "--listen must be positive")
}

// openSigned opens an application instance on ns that signs with key k1
// of secret; it is closed when the test ends.
func openSigned(t *testing.T, url, ns string, secret []byte, opts ...core.Option) *core.Cache {
	t.Helper()
	kr, err := core.NewKeyring(core.SigningKey{ID: "k1", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bp, err := fxmodule.OpenBackplane(ctx, url, ns)
	if err != nil {
		t.Fatal(err)
	}
	store, err := bigcachestore.New(bigcachestore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	app, err := core.Open(ctx, store, bp, append([]core.Option{core.WithKeyring(kr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	return app
}

// invalidate --tags evicts the entries cached under the tags, and tail
// shows the tags.
func TestInvalidateTags(t *testing.T) {
	url := testenv.StartNATS(t).URL()
	ns := randomNamespace("cli-test-")
	app := engine(t, url, ns)
	if err := app.SetWithTags("list:shoes", []byte("v"), "category:shoes"); err != nil {
		t.Fatal(err)
	}
	if err := app.Set("category:shoes", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, out, stderr, wait := background(t, "tail", url, "-n", ns, "--count", "1")
	waitFor(t, "tail to subscribe", func() bool { return strings.Contains(stderr.String(), "tailing") })
	cli(t, "", "invalidate", url, "-n", ns, "--tags", "category:shoes").expect(t, exitOK, "invalidated 1 tag(s)")
	waitFor(t, "the tagged entry to go", func() bool { _, ok := app.Get("list:shoes"); return !ok })
	if _, ok := app.Get("category:shoes"); !ok {
		t.Fatal("the key named like the tag was evicted")
	}
	wait().expect(t, exitOK)
	if !strings.Contains(out.String(), "invalidate-tags") || !strings.Contains(out.String(), "tags category:shoes") {
		t.Fatalf("tail printed %q; want the tag invalidation", out.String())
	}
}
