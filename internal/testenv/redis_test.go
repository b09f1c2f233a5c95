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
