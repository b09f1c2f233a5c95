package chaos_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
	"github.com/backplane-go/backplane/transports/pgtransport"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// brokerKind is one row of the broker table: a transport mode over a
// private broker the test may kill and restart. Adding a broker is adding a
// row: a start function built on a testenv server (anything with Addr,
// Kill and Restart, see serverBroker) and what the suite expects of it,
// for example
//
//	{name: "postgres", start: postgresBroker}
//
// with postgresBroker built on testenv.StartPostgres and serverBroker,
//
// where the Backplane must reach the server at addr (the instance's fault
// proxy), not at the server's own address.
type brokerKind struct {
	name string
	// durable: the transport is a log (core.Limits.Durable), over which the
	// engine suspends its store instead of flushing it.
	durable bool
	// noFlush are the scenarios that must end without a single flush.
	noFlush []string
	// mustFlush are the scenarios that must flush (a loss the transport
	// has to detect): the broker's restart loses its log.
	mustFlush []string
	// reduced are the scenarios of the reduced form (nil: all of them);
	// the full form runs them all.
	reduced []string
	start   func(t *testing.T) *broker
}

// durableNoFlush are the scenarios in which a durable mode whose broker
// keeps its log through a restart flushes nothing.
var durableNoFlush = []string{"reset", "partition", "blackhole", "slow-subscriber", "broker-kill"}

// durableReduced are the scenarios of the reduced form over a durable
// mode: the baseline, and those that must not flush.
var durableReduced = append([]string{"baseline"}, durableNoFlush...)

// brokers is the broker table.
var brokers = []brokerKind{
	{name: "redis", start: redisBroker},
	{name: "redis-stream", durable: true, noFlush: durableNoFlush,
		reduced: durableReduced, start: redisStreamBroker(true)},
	{name: "redis-stream-volatile", durable: true,
		noFlush: []string{"reset", "partition", "blackhole", "slow-subscriber"}, mustFlush: []string{"broker-kill"},
		reduced: []string{"baseline", "broker-kill"},
		start:   redisStreamBroker(false)},
	{name: "nats", start: natsBroker},
	{name: "jetstream", durable: true, noFlush: durableNoFlush,
		reduced: durableReduced, start: jetStreamBroker},
	{name: "postgres", start: postgresBroker},
	{name: "rabbitmq", reduced: []string{"baseline", "reset", "blackhole", "broker-kill"}, start: rabbitMQBroker},
}

// postgresBroker is LISTEN/NOTIFY over a private PostgreSQL server.
func postgresBroker(t *testing.T) *broker {
	s := testenv.StartPostgres(t)
	return serverBroker(s, func(t *testing.T, addr, ns string) core.Backplane {
		bp, err := pgtransport.Open(s.URLVia(addr), ns,
			pgtransport.WithPing(200*time.Millisecond, 500*time.Millisecond),
			pgtransport.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond),
			pgtransport.WithLogger(discard))
		if err != nil {
			t.Fatalf("pgtransport.Open: %v", err)
		}
		return bp
	})
}

// rabbitMQBroker is a fanout exchange over a private RabbitMQ node.
func rabbitMQBroker(t *testing.T) *broker {
	s := testenv.StartRabbitMQ(t)
	return serverBroker(s, func(t *testing.T, addr, ns string) core.Backplane {
		bp, err := rabbitmqtransport.Open("amqp://guest:guest@"+addr+"/", ns,
			rabbitmqtransport.WithHeartbeat(time.Second),
			rabbitmqtransport.WithConnectTimeout(time.Second),
			rabbitmqtransport.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond),
			rabbitmqtransport.WithLogger(discard))
		if err != nil {
			t.Fatalf("rabbitmqtransport.Open: %v", err)
		}
		return bp
	})
}

func (k brokerKind) runs(scenario string, full bool) bool {
	return full || k.reduced == nil || contains(k.reduced, scenario)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// broker is a private broker the test may kill and restart.
type broker struct {
	kind  *brokerKind
	name  string
	addr  string
	kill  func() // SIGKILL for Redis; for the embedded NATS server, Shutdown
	start func()
	open  func(t *testing.T, addr, ns string) core.Backplane
}

// server is a private server a test owns: its address, a kill (SIGKILL
// or the closest the server has) and a restart on the same address with
// the same storage.
type server interface {
	Addr() string
	Kill()
	Restart()
}

// serverBroker is the broker over a private server; open makes a
// transport that reaches the server at addr.
func serverBroker(s server, open func(t *testing.T, addr, ns string) core.Backplane) *broker {
	return &broker{addr: s.Addr(), kill: s.Kill, start: s.Restart, open: open}
}

func redisBroker(t *testing.T) *broker {
	return serverBroker(testenv.StartRedis(t), func(t *testing.T, addr, ns string) core.Backplane {
		return openRedis(t, "redis://"+addr, ns)
	})
}

// redisStreamBroker returns the start function of the stream mode over a
// private redis-server: with persistent set, an append-only file synced on
// every write (appendonly yes, appendfsync always), which a restart reads
// back and the transport accepts as proof that nothing was lost; without,
// no persistence at all, so that a restart loses the stream.
func redisStreamBroker(persistent bool) func(t *testing.T) *broker {
	return func(t *testing.T) *broker {
		var opts []testenv.RedisOption
		if persistent {
			opts = append(opts, testenv.WithRedisArgs("--appendonly", "yes", "--appendfsync", "always"))
		}
		s := testenv.StartRedis(t, opts...)
		// The transport itself checks appendfsync (CONFIG GET) on every
		// reconnect; here only that the options took.
		if got, want := redisInfoField(t, s, "persistence", "aof_enabled"), map[bool]string{true: "1", false: "0"}[persistent]; got != want {
			t.Fatalf("redis-server aof_enabled = %q, want %q", got, want)
		}
		return serverBroker(s, func(t *testing.T, addr, ns string) core.Backplane {
			return openRedis(t, "redis://"+addr+"?mode=stream", ns)
		})
	}
}

func openRedis(t *testing.T, url, ns string) core.Backplane {
	bp, err := redistransport.Open(url, ns,
		redistransport.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond),
		redistransport.WithLogger(discard))
	if err != nil {
		t.Fatalf("redistransport.Open(%s): %v", url, err)
	}
	return bp
}

// redisInfoField returns a field of a section of the server's INFO.
func redisInfoField(t *testing.T, s *testenv.RedisServer, section, field string) string {
	t.Helper()
	info, err := s.Do("INFO", section)
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

func natsBroker(t *testing.T) *broker {
	s := testenv.StartNATS(t)
	return &broker{
		addr: fmt.Sprintf("127.0.0.1:%d", s.Port()), kill: s.Shutdown, start: s.Restart,
		open: func(t *testing.T, addr, ns string) core.Backplane {
			return openNATS(t, "nats://"+addr, ns)
		},
	}
}

// jetStreamBroker is the JetStream mode with file storage over an
// embedded nats-server whose store directory outlives its restarts.
func jetStreamBroker(t *testing.T) *broker {
	s := testenv.StartNATS(t, testenv.WithNATSJetStream())
	return &broker{
		addr: fmt.Sprintf("127.0.0.1:%d", s.Port()), kill: s.Shutdown, start: s.Restart,
		open: func(t *testing.T, addr, ns string) core.Backplane {
			return openNATS(t, "nats://"+addr+"?jetstream=true&storage=file", ns)
		},
	}
}

func openNATS(t *testing.T, url, ns string) core.Backplane {
	bp, err := natstransport.Open(url, ns,
		natstransport.WithReconnectWait(50*time.Millisecond),
		natstransport.WithConnectTimeout(time.Second),
		natstransport.WithLogger(discard),
		// Stay behind the proxy: never dial what the server advertises.
		natstransport.WithNATSOptions(nats.IgnoreDiscoveredServers()))
	if err != nil {
		t.Fatalf("natstransport.Open(%s): %v", url, err)
	}
	return bp
}
