package rabbitmqtransport_test

import (
	"context"
	"errors"
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
	_ "github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// FuzzOpenURL feeds arbitrary query strings to the amqp:// opener: it
// never panics or dials, and what it refuses is an invalid option or an
// unknown parameter.
func FuzzOpenURL(f *testing.F) {
	for _, q := range []string{
		"", "exchange_prefix=x.&queue_name=q", "max_payload=10&prefetch=1",
		"queue_max_length=none&queue_max_bytes=-1", "heartbeat=0&connect_timeout=1s",
		"reconnect_backoff=1ms&max_reconnect_backoff=1ms", "tls_ca=/nonexistent",
		"concurrent_publish=4", "bogus=1", "heartbeat=%zz",
	} {
		f.Add("amqp", q)
		f.Add("amqps", q)
	}
	f.Fuzz(func(t *testing.T, scheme, query string) {
		if scheme != "amqp" && scheme != "amqps" {
			scheme = "amqp"
		}
		bp, err := transports.Open(context.Background(), scheme+"://127.0.0.1:1/?"+query, "ns")
		if err != nil {
			if !errors.Is(err, core.ErrInvalidOption) && !errors.Is(err, transports.ErrUnknownParameter) {
				t.Fatalf("Open(?%s): %v: neither ErrInvalidOption nor ErrUnknownParameter", query, err)
			}
			return
		}
		if err := bp.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}
