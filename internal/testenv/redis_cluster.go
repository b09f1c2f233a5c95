package testenv

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clusterReadyTimeout bounds how long a cluster may take to reach
// cluster_state:ok.
const clusterReadyTimeout = 30 * time.Second

// RedisCluster is a private Redis Cluster owned by one test and stopped when
// it ends.
type RedisCluster struct {
	t testing.TB
	// Nodes are the masters the cluster started with, in slot order.
	Nodes []*RedisServer
	// Replicas are the replicas it started with: Replicas[i*r+j] is the
	// j-th replica of Nodes[i] (r replicas per master). After a failover
	// roles change; the slices do not.
	Replicas []*RedisServer
}

// RedisClusterOption configures StartRedisCluster.
type RedisClusterOption func(*redisClusterConfig)

type redisClusterConfig struct{ replicas int }

// WithRedisReplicas gives every master n replicas, so that the cluster fails
// over when a master dies (cluster-node-timeout is 2 seconds).
func WithRedisReplicas(n int) RedisClusterOption {
	return func(c *redisClusterConfig) { c.replicas = n }
}

// StartRedisCluster starts masters private redis-server nodes in cluster
// mode (at least 3), splits the 16384 slots evenly between them, joins them
// (with replicas when asked) and waits until every node reports
// cluster_state:ok, knows every other node and every replica is in sync.
func StartRedisCluster(t testing.TB, masters int, opts ...RedisClusterOption) *RedisCluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("testenv: a Redis cluster needs at least 3 masters, got %d", masters)
	}
	var cfg redisClusterConfig
	for _, o := range opts {
		o(&cfg)
	}
	c := &RedisCluster{t: t}
	start := func() *RedisServer {
		busPort := FreePort(t)
		return StartRedis(t, WithRedisArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-require-full-coverage", "yes",
			"--cluster-replica-validity-factor", "0",
		))
	}
	for i := 0; i < masters; i++ {
		c.Nodes = append(c.Nodes, start())
	}
	for i := 0; i < masters*cfg.replicas; i++ {
		c.Replicas = append(c.Replicas, start())
	}
	const slots = 16384
	for i, n := range c.Nodes {
		lo := i * slots / masters
		hi := (i+1)*slots/masters - 1
		if _, err := n.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			t.Fatalf("testenv: CLUSTER ADDSLOTSRANGE on %s: %v", n.Addr(), err)
		}
		if _, err := n.Do("CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			t.Fatalf("testenv: CLUSTER SET-CONFIG-EPOCH on %s: %v", n.Addr(), err)
		}
	}
	first := c.Nodes[0]
	for _, n := range c.All()[1:] {
		if _, err := first.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(n.Port()), n.busPort()); err != nil {
			t.Fatalf("testenv: CLUSTER MEET %s: %v", n.Addr(), err)
		}
	}
	if len(c.Replicas) > 0 {
		c.waitFor(c.known)
		for i, r := range c.Replicas {
			master := c.Nodes[i/cfg.replicas]
			id, err := master.Do("CLUSTER", "MYID")
			if err != nil {
				t.Fatalf("testenv: CLUSTER MYID on %s: %v", master.Addr(), err)
			}
			if _, err := r.Do("CLUSTER", "REPLICATE", id); err != nil {
				t.Fatalf("testenv: CLUSTER REPLICATE on %s: %v", r.Addr(), err)
			}
		}
	}
	c.waitReady()
	return c
}

// All returns every node, masters first.
func (c *RedisCluster) All() []*RedisServer {
	return append(append([]*RedisServer(nil), c.Nodes...), c.Replicas...)
}

// busPort returns the node's cluster bus port.
func (s *RedisServer) busPort() string {
	for j, a := range s.args {
		if a == "--cluster-port" && j+1 < len(s.args) {
			return s.args[j+1]
		}
	}
	return ""
}

// waitReady polls every node until it reports cluster_state:ok, knows all
// nodes and sees every slot assigned, and every replica is in sync.
func (c *RedisCluster) waitReady() {
	c.t.Helper()
	c.waitFor(c.ready)
}

// WaitStateOK waits until every node that answers PING reports
// cluster_state:ok and sees every slot owned by a reachable master that is
// not failing; after a master was killed, that means its replica has taken
// over.
func (c *RedisCluster) WaitStateOK(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		err := c.stateOK()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: Redis cluster not ok after %v: %v", clusterReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *RedisCluster) stateOK() error {
	for _, n := range c.All() {
		if _, err := n.Do("PING"); err != nil {
			continue // down
		}
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if st := redisInfoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", n.Addr(), st)
		}
		// A master that died a moment ago still owns its slots until the
		// cluster fails it over: every slot owner must be reachable.
		nodes, err := n.Do("CLUSTER", "NODES")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 { // no slots
				continue
			}
			flags, link := f[2], f[7]
			if strings.Contains(flags, "fail") || (!strings.Contains(flags, "myself") && link != "connected") {
				return fmt.Errorf("%s: slot owner %s is %s, link %s", n.Addr(), f[1], flags, link)
			}
		}
	}
	return nil
}

func (c *RedisCluster) waitFor(cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testenv: Redis cluster not ready after %v: %v", clusterReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// known reports whether every node knows every other node.
func (c *RedisCluster) known() error {
	want := strconv.Itoa(len(c.All()))
	for _, n := range c.All() {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if k := redisInfoField(info, "cluster_known_nodes"); k != want {
			return fmt.Errorf("%s: cluster_known_nodes:%s, want %s", n.Addr(), k, want)
		}
	}
	return nil
}

func (c *RedisCluster) ready() error {
	if err := c.known(); err != nil {
		return err
	}
	for _, n := range c.All() {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if st := redisInfoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", n.Addr(), st)
		}
		if s := redisInfoField(info, "cluster_slots_ok"); s != "16384" {
			return fmt.Errorf("%s: cluster_slots_ok:%s", n.Addr(), s)
		}
		repl, err := n.Do("INFO", "replication")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if redisInfoField(repl, "role") == "slave" && redisInfoField(repl, "master_link_status") != "up" {
			return fmt.Errorf("%s: replica link %s", n.Addr(), redisInfoField(repl, "master_link_status"))
		}
	}
	return nil
}

// Addrs returns the host:port addresses of all nodes, masters first.
func (c *RedisCluster) Addrs() []string {
	var addrs []string
	for _, n := range c.All() {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// URL returns a redis:// URL with every node, in the form that
// redis.ParseClusterURL understands (redis://a?addr=b&addr=c).
func (c *RedisCluster) URL() string { return redisURLWithAddrs("redis", c.Addrs()) }

// Restart kills every node with SIGKILL, starts them again on the same
// ports (they keep their cluster configuration) and waits until the cluster
// is ok again.
func (c *RedisCluster) Restart() {
	c.t.Helper()
	all := c.All()
	for _, n := range all {
		n.Kill()
	}
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, n := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.restart()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.t.Fatalf("testenv: restart cluster node %s: %v", all[i].Addr(), err)
		}
	}
	c.waitReady()
}

// KillNamedSubscribers CLIENT KILLs the subscribed connections named name on
// every node and returns how many it killed.
func (c *RedisCluster) KillNamedSubscribers(t testing.TB, name string) int {
	t.Helper()
	n := 0
	for _, node := range c.All() {
		n += RedisKillNamedSubscribers(t, node.Addr(), nil, name)
	}
	return n
}

// KillSubscribers CLIENT KILLs every subscribed connection on every node.
func (c *RedisCluster) KillSubscribers(t testing.TB) int {
	t.Helper()
	n := 0
	for _, node := range c.All() {
		n += node.KillSubscribers(t)
	}
	return n
}

// String lists the nodes.
func (c *RedisCluster) String() string { return "RedisCluster(" + strings.Join(c.Addrs(), ",") + ")" }
