package memtransport

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// BenchmarkPublish measures one publisher broadcasting 64 byte payloads to
// subs subscribers, batch payloads per Publish call, until every subscriber
// handled every message. ns/op is per payload.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{1, 4} {
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("subs=%d/batch=%d", subs, batch), func(b *testing.B) {
				h := NewHub()
				defer h.Close()
				var handled atomic.Int64
				pub := h.New("bench")
				for i := 0; i < subs; i++ {
					tr := h.New("bench")
					err := tr.Subscribe(context.Background(), core.HandlerFuncs{
						Message: func([]byte) { handled.Add(1) },
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				payloads := make([][]byte, batch)
				for i := range payloads {
					payloads[i] = make([]byte, 64)
				}
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				sent := 0
				for sent < b.N {
					n := min(batch, b.N-sent)
					if err := pub.Publish(ctx, payloads[:n]...); err != nil {
						b.Fatal(err)
					}
					sent += n
				}
				want := int64(sent * subs)
				for handled.Load() < want {
					time.Sleep(10 * time.Microsecond)
				}
			})
		}
	}
}
