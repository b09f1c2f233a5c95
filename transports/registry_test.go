package transports_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// This test binary imports memtransport only: the other schemes of the
// module are unknown here, and their errors name the package to import.
func TestOpenUnregisteredScheme(t *testing.T) {
	tests := []struct {
		url  string
		want []string
	}{
		{"nats://127.0.0.1:4222", []string{`"nats"`, "registered: mem", `import _ "github.com/backplane-go/backplane/transports/natstransport"`}},
		{"rediss://user:s3cret@h:6380", []string{`"rediss"`, "transports/redistransport", "user:xxxxx@h:6380"}},
		{"sb://ns.servicebus.windows.net?key_name=k&key=s3cret", []string{"transports/servicebustransport"}},
		{"amqps://guest:s3cret@h:5671/", []string{`"amqps"`, "transports/rabbitmqtransport", "guest:xxxxx@h:5671"}},
		{"kafka://k:9092", []string{`"kafka"`, "registered: mem"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			bp, err := transports.Open(context.Background(), tt.url, "ns")
			if err == nil {
				_ = bp.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, transports.ErrUnknownScheme) {
				t.Errorf("%v does not wrap ErrUnknownScheme", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%v shows a secret", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestOpenMemAndClients(t *testing.T) {
	ctx := context.Background()
	bp, err := transports.Open(ctx, "mem://registry-test?namespace=fromurl", "ns")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	if _, ok := bp.(*memtransport.Transport); !ok {
		t.Fatalf("mem:// opened a %T", bp)
	}
	if _, err := transports.Open(ctx, "mem://", ""); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("empty namespace: %v", err)
	}
	var got transports.Request
	transports.Register("Custom", func(_ context.Context, r transports.Request) (core.Backplane, error) {
		got = r
		return memtransport.NewHub().New(r.Namespace), nil
	})
	bp2, err := transports.Open(ctx, "CUSTOM://x", "ns", transports.WithClient(42), transports.WithClient(nil), transports.WithClient("text"))
	if err != nil {
		t.Fatal(err)
	}
	defer bp2.Close()
	if n, ok := transports.Client[int](got); !ok || n != 42 {
		t.Errorf("Client[int] = %v, %v", n, ok)
	}
	if s, ok := transports.Client[string](got); !ok || s != "text" {
		t.Errorf("Client[string] = %v, %v", s, ok)
	}
	if _, ok := transports.Client[error](got); ok || len(got.Clients) != 2 {
		t.Errorf("clients %v", got.Clients)
	}
}
