package memtransport_test

import (
	"context"
	"fmt"
	"log"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func Example() {
	ctx := context.Background()
	hub := memtransport.NewHub()
	defer hub.Close()

	// Two instances of a service on the namespace "orders".
	a, b := hub.New("orders"), hub.New("orders")

	got := make(chan string)
	err := b.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) { got <- string(p) }, // p is only valid during the call
		Event:   func(ev core.Event) { fmt.Println("b:", ev.Kind) },
	})
	if err != nil {
		log.Fatal(err)
	}

	if err := a.Publish(ctx, []byte("invalidate order:7")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("b got:", <-got)

	// Fault injection: b loses its connection, and messages while cut.
	b.Disconnect(nil)
	_ = a.Publish(ctx, []byte("lost"))
	b.Reconnect()
	_ = a.Publish(ctx, []byte("invalidate order:8"))
	fmt.Println("b got:", <-got)
	// Output:
	// b: connected
	// b got: invalidate order:7
	// b: disconnected
	// b: reconnected
	// b got: invalidate order:8
}
