package testenv

import (
	"testing"
)

func TestStartRedisKillRestart(t *testing.T) {
	s := StartRedis(t)
	if out, err := s.Do("PING"); err != nil || out != "PONG" {
		t.Fatalf("PING = %q, %v", out, err)
	}
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	if v, err := s.Do("GET", "k"); err != nil || v != "" {
		t.Fatalf("GET after restart = %q, %v; want empty (no persistence)", v, err)
	}
	if len(s.Clients(t)) == 0 {
		t.Fatal("CLIENT LIST is empty")
	}
}

func TestStartRedisCluster(t *testing.T) {
	c := StartRedisCluster(t, 3)
	for _, n := range c.Nodes {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil || redisInfoField(info, "cluster_state") != "ok" {
			t.Fatalf("%s: CLUSTER INFO = %q, %v", n.Addr(), info, err)
		}
	}
	c.Restart()
}

func TestStartRedisClusterWithReplicas(t *testing.T) {
	c := StartRedisCluster(t, 3, WithRedisReplicas(1))
	if len(c.Replicas) != 3 || len(c.Addrs()) != 6 {
		t.Fatalf("%d replicas, %d addresses; want 3 and 6", len(c.Replicas), len(c.Addrs()))
	}
	// Kill a master: its replica takes over and the cluster is ok again.
	c.Nodes[0].Kill()
	c.WaitStateOK(t)
	repl, err := c.Replicas[0].Do("INFO", "replication")
	if err != nil || redisInfoField(repl, "role") != "master" {
		t.Fatalf("replica of the killed master: role %q (%v); want master", redisInfoField(repl, "role"), err)
	}
}

func TestStartRedisTLS(t *testing.T) {
	s := StartRedisTLS(t)
	if out, err := s.Do("PING"); err != nil || out != "PONG" {
		t.Fatalf("PING over TLS = %q, %v", out, err)
	}
	if _, err := RedisDo(s.Addr(), nil, "PING"); err == nil {
		t.Fatal("plaintext PING answered on the TLS port")
	}
}

func TestRedisURL(t *testing.T) {
	if u := RedisURL(t); u == "" {
		t.Fatal("empty URL")
	}
}
