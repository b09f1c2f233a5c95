package main

import (
	"strings"
	"testing"
	"time"

	"github.com/backplane-go/backplane/internal/testenv"
)

// Mistakes a new user makes get an error that names the setting and the
// likely cause, with the usage or connect exit code, within --timeout.
func TestFirstMistakes(t *testing.T) {
	redis := strings.TrimPrefix(testenv.RedisURL(t), "redis://") // host:port of a plain Redis
	nats := strings.TrimPrefix(testenv.NATSURL(t), "nats://")    // host:port of NATS
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"invalidate without the URL", []string{"invalidate", "-n", "catalog", "product:1"}, exitUsage,
			[]string{`"product:1" is not a broker URL`, "URL first, then the keys"}},
		{"negative timeout", []string{"check", "--timeout", "-1s", "nats://" + nats}, exitUsage,
			[]string{"--timeout -1s", "positive"}},
		{"zero timeout", []string{"tail", "--timeout", "0s", "nats://" + nats, "-n", "c"}, exitUsage,
			[]string{"--timeout 0s"}},
		{"rediss to a plain Redis", []string{"check", "--timeout", "1s", "rediss://" + redis}, exitConnect,
			[]string{"TLS handshake", "use redis:// for a plain one"}},
		{"nats to a Redis port", []string{"check", "--timeout", "1s", "nats://" + redis}, exitConnect,
			[]string{"did not answer as a NATS server", "4222"}},
		{"redis to a NATS port", []string{"check", "--timeout", "1s", "redis://" + nats}, exitConnect,
			[]string{"does not speak the protocol"}},
		{"unknown scheme", []string{"tail", "kafka://k:9092", "-n", "c"}, exitUsage,
			[]string{"unknown scheme", "sb://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := cli(t, "", tt.args...)
			r.expect(t, tt.code, tt.want...)
			if took := time.Since(start); took > 4*time.Second {
				t.Errorf("took %v with --timeout 1s", took)
			}
		})
	}
}
