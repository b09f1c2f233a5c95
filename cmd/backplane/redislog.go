package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisLog routes go-redis's own log lines (pool diagnostics such as a
// connection closed under a blocked read at Close) to the CLI's logger,
// which prints them only with --verbose: they never clutter the output.
type redisLog struct{ g *globals }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.g.logger().Debug("go-redis: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// quietRedis installs redisLog for g; go-redis's logger is process-wide.
func quietRedis(g *globals) { redis.SetLogger(redisLog{g}) }
