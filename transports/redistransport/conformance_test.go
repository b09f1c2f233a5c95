package redistransport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// open returns a transport that owns a client of url whose connections all
// carry a name unique to this instance, so that Disconnect can find its
// subscriber connection even on a shared server.
func open(t testing.TB, url, ns string, opts ...redistransport.Option) core.Backplane {
	t.Helper()
	opts = append(append([]redistransport.Option{redistransport.WithClientName(uniq("cf"))}, fastRecovery...), opts...)
	tr, err := redistransport.Open(url, ns, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return tr
}

// disconnect CLIENT KILLs bp's subscriber connection (in the stream mode,
// its reader's: the connection that runs XREAD), found by its client name on
// every node it may be on. Only that one connection is closed, so this is
// safe on a shared server. If the subscriber is reconnecting from an
// earlier fault, it waits until there is a connection to kill.
func disconnect(t testing.TB, bp core.Backplane) {
	t.Helper()
	tr := bp.(*redistransport.Transport)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var name string
	switch c := tr.Client().(type) {
	case *redis.Client:
		name = c.Options().ClientName
	case *redis.ClusterClient:
		name = c.Options().ClientName
	}
	killed := 0
	kill := func(ctx context.Context, c *redis.Client) error {
		list, err := c.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			f := map[string]string{}
			for _, kv := range strings.Fields(line) {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			reader := f["cmd"] == "xread"
			if f["name"] != name || (!reader && f["sub"] == "0" && f["ssub"] == "0" && f["psub"] == "0") {
				continue
			}
			if c.ClientKillByFilter(ctx, "ID", f["id"]).Val() > 0 {
				killed++
			}
		}
		return nil
	}
	ok := eventually(bound, func() bool {
		var err error
		switch c := tr.Client().(type) {
		case *redis.Client:
			err = kill(ctx, c)
		case *redis.ClusterClient:
			err = c.ForEachShard(ctx, kill)
		}
		if err != nil {
			t.Logf("disconnect: %v", err)
		}
		return killed > 0
	})
	if !ok {
		t.Fatalf("disconnect: no subscriber connection named %q within %v", name, bound)
	}
}

// sharedHarness uses the machine's Redis (BACKPLANE_REDIS_URL or
// 127.0.0.1:6379), which must not be restarted; Disconnect closes only the
// instance's own connection. Every instance connects through a TCP proxy
// of its own, so that Stall can hold the server's replies to it.
func sharedHarness(t *testing.T) conformance.BackplaneHarness {
	target := testenv.RedisURL(t)
	var proxies shipped.Proxies
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pu, p := proxies.Via(t, target)
			bp := open(t, pu, ns)
			proxies.Add(bp, p)
			return bp
		},
		Ordered:    true,
		Disconnect: disconnect,
		Stall:      proxies.Stall,
	}
}

// privateHarness uses a private redis-server that RestartBroker kills with
// SIGKILL and starts again on the same port.
func privateHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartRedis(t)
	return conformance.BackplaneHarness{
		New:           func(t testing.TB, ns string) core.Backplane { return open(t, srv.URL(), ns) },
		Ordered:       true,
		Disconnect:    disconnect,
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

// clusterHarness uses a private 3-master Redis Cluster with sharded pub/sub;
// RestartBroker kills every node and starts them again.
func clusterHarness(t *testing.T) conformance.BackplaneHarness {
	cl := testenv.StartRedisCluster(t, 3)
	return conformance.BackplaneHarness{
		New:           func(t testing.TB, ns string) core.Backplane { return open(t, cl.URL(), ns) },
		Ordered:       true,
		Disconnect:    disconnect,
		RestartBroker: func(testing.TB) { cl.Restart() },
		// A cluster restart includes the cluster becoming ok again.
		Bound: 10 * time.Second,
	}
}

// clusterClassicHarness is the cluster with classic pub/sub: PUBLISH goes to
// any node and reaches the subscribers over the cluster bus, so the order
// of separate Publish calls is not guaranteed.
func clusterClassicHarness(t *testing.T) conformance.BackplaneHarness {
	cl := testenv.StartRedisCluster(t, 3)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			return open(t, cl.URL(), ns, redistransport.WithPubSubMode(redistransport.PubSubClassic))
		},
		Disconnect:    disconnect,
		RestartBroker: func(testing.TB) { cl.Restart() },
		Bound:         10 * time.Second,
	}
}

// streamSharedHarness is the stream mode on the machine's Redis, every
// instance through a proxy of its own (Stall).
func streamSharedHarness(t *testing.T) conformance.BackplaneHarness {
	target := testenv.RedisURL(t)
	var proxies shipped.Proxies
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pu, p := proxies.Via(t, target)
			bp := open(t, pu+"?mode=stream", ns)
			proxies.Add(bp, p)
			dropStream(t, target, bp.(*redistransport.Transport).Channel())
			return bp
		},
		Ordered:    true,
		Disconnect: disconnect,
		Stall:      proxies.Stall,
	}
}

// streamPrivateHarness is the stream mode on a private redis-server without
// persistence: a restart loses the stream, which the transport reports.
func streamPrivateHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartRedis(t)
	return conformance.BackplaneHarness{
		New:           func(t testing.TB, ns string) core.Backplane { return open(t, srv.URL()+"?mode=stream", ns) },
		Ordered:       true,
		Disconnect:    disconnect,
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

// streamAOFHarness is the stream mode on a private redis-server that
// fsyncs its append-only file before every reply: a restart keeps the
// stream, and subscribers resume.
func streamAOFHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartRedis(t, testenv.WithRedisArgs("--appendonly", "yes", "--appendfsync", "always"))
	return conformance.BackplaneHarness{
		New:           func(t testing.TB, ns string) core.Backplane { return open(t, srv.URL()+"?mode=stream", ns) },
		Ordered:       true,
		Disconnect:    disconnect,
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

// streamClusterHarness is the stream mode on a private 3-master Redis
// Cluster; RestartBroker kills every node and starts them again (without
// persistence: a loss).
func streamClusterHarness(t *testing.T) conformance.BackplaneHarness {
	cl := testenv.StartRedisCluster(t, 3)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			return open(t, cl.URL(), ns, redistransport.WithStream(redistransport.StreamOptions{}))
		},
		Ordered:       true,
		Disconnect:    disconnect,
		RestartBroker: func(testing.TB) { cl.Restart() },
		Bound:         10 * time.Second,
	}
}

var harnesses = []shipped.Harness{
	{Name: "shared", Make: sharedHarness},
	{Name: "private", Make: privateHarness},
	{Name: "cluster", Make: clusterHarness},
	{Name: "cluster-classic", Make: clusterClassicHarness},
	{Name: "stream-shared", Make: streamSharedHarness},
	{Name: "stream-private", Make: streamPrivateHarness},
	{Name: "stream-aof", Make: streamAOFHarness},
	{Name: "stream-cluster", Make: streamClusterHarness},
}

// TestConformance runs the Backplane suite on every harness.
func TestConformance(t *testing.T) { shipped.RunBackplane(t, harnesses) }

// TestCacheConformance runs the engine end to end over this transport with
// every store the module ships, on every harness.
func TestCacheConformance(t *testing.T) { shipped.RunCacheOn(t, harnesses) }
