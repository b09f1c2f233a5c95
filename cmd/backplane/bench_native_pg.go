package main

import (
	"context"
	"encoding/base64"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/backplane-go/backplane/transports/pgtransport"
)

// pgNativePipe publishes with pg_notify on a connection of pub's pool and
// listens on a connection of its own dialled with sub's pool's
// configuration (LISTEN and WaitForNotification), bypassing the
// transport but carrying the payload as the transport does (base64).
func pgNativePipe(ctx context.Context, pub, sub *pgtransport.Transport, onMsg func([]byte), closeAll func(), classify func(error) error) (*pipe, error) {
	conn, err := pgx.ConnectConfig(ctx, sub.Pool().Config().ConnConfig)
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{sub.Channel()}.Sanitize())
		if err != nil {
			_ = conn.Close(context.Background())
		}
	}
	if err != nil {
		closeAll()
		return nil, classify(err)
	}
	listenCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			n, err := conn.WaitForNotification(listenCtx)
			if err != nil {
				return
			}
			if p, err := base64.StdEncoding.DecodeString(n.Payload); err == nil {
				onMsg(p)
			}
		}
	})
	pool, channel := pub.Pool(), pub.Channel()
	return &pipe{
		label: "pgx client",
		publish: func(ctx context.Context, p []byte) error {
			_, err := pool.Exec(ctx, "SELECT pg_notify($1, $2)", channel, base64.StdEncoding.EncodeToString(p))
			return err
		},
		flush: func(context.Context) error { return nil },
		close: func() {
			stop()
			wg.Wait()
			_ = conn.Close(context.Background())
			closeAll()
		},
	}, nil
}
