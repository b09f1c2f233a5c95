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

// RedisCluster is a private Redis Cluster of masters without replicas, owned
// by one test and stopped when it ends.
type RedisCluster struct {
	t     testing.TB
	Nodes []*RedisServer
}

// StartRedisCluster starts masters private redis-server nodes in cluster
// mode (at least 3), splits the 16384 slots evenly between them, joins them
// and waits until every node reports cluster_state:ok and knows every
// other node.
func StartRedisCluster(t testing.TB, masters int) *RedisCluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("testenv: a Redis cluster needs at least 3 masters, got %d", masters)
	}
	c := &RedisCluster{t: t}
	for i := 0; i < masters; i++ {
		busPort := FreePort(t)
		c.Nodes = append(c.Nodes, StartRedis(t, WithRedisArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-require-full-coverage", "yes",
		)))
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
	for _, n := range c.Nodes[1:] {
		bus := ""
		for j, a := range n.args {
			if a == "--cluster-port" {
				bus = n.args[j+1]
			}
		}
		if _, err := first.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(n.Port()), bus); err != nil {
			t.Fatalf("testenv: CLUSTER MEET %s: %v", n.Addr(), err)
		}
	}
	c.waitReady()
	return c
}

// waitReady polls every node until it reports cluster_state:ok, knows all
// nodes and sees every slot assigned.
func (c *RedisCluster) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		err := c.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testenv: Redis cluster not ready after %v: %v", clusterReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *RedisCluster) ready() error {
	want := strconv.Itoa(len(c.Nodes))
	for _, n := range c.Nodes {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if st := redisInfoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", n.Addr(), st)
		}
		if k := redisInfoField(info, "cluster_known_nodes"); k != want {
			return fmt.Errorf("%s: cluster_known_nodes:%s, want %s", n.Addr(), k, want)
		}
		if s := redisInfoField(info, "cluster_slots_ok"); s != "16384" {
			return fmt.Errorf("%s: cluster_slots_ok:%s", n.Addr(), s)
		}
	}
	return nil
}

// Addrs returns the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
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
	for _, n := range c.Nodes {
		n.Kill()
	}
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.restart()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.t.Fatalf("testenv: restart cluster node %s: %v", c.Nodes[i].Addr(), err)
		}
	}
	c.waitReady()
}

// KillNamedSubscribers CLIENT KILLs the subscribed connections named name on
// every node and returns how many it killed.
func (c *RedisCluster) KillNamedSubscribers(t testing.TB, name string) int {
	t.Helper()
	n := 0
	for _, node := range c.Nodes {
		n += RedisKillNamedSubscribers(t, node.Addr(), nil, name)
	}
	return n
}

// KillSubscribers CLIENT KILLs every subscribed connection on every node.
func (c *RedisCluster) KillSubscribers(t testing.TB) int {
	t.Helper()
	n := 0
	for _, node := range c.Nodes {
		n += node.KillSubscribers(t)
	}
	return n
}

// String lists the nodes.
func (c *RedisCluster) String() string { return "RedisCluster(" + strings.Join(c.Addrs(), ",") + ")" }
