package rabbitmqtransport_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// brokerURL is the broker the examples talk to.
func brokerURL() string {
	if u := os.Getenv("BACKPLANE_RABBITMQ_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// Two instances of a service share the namespace "orders"; Open dials
// (and Close closes) each one's connection.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := fmt.Sprintf("orders-%d", time.Now().UnixNano()) // fresh, for the example

	a, err := rabbitmqtransport.Open(brokerURL(), ns)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := rabbitmqtransport.Open(brokerURL(), ns)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	got := make(chan string)
	err = b.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) { got <- string(p) }, // p is only valid during the call
		Event:   func(ev core.Event) { fmt.Println("b:", ev.Kind) },
	})
	if err != nil {
		log.Fatal(err)
	}
	// Subscribe has returned: b's queue is bound, so whatever is published
	// from now on reaches it. Publish returns once the broker confirmed
	// both messages.
	if err := a.Publish(ctx, []byte("invalidate order:7"), []byte("invalidate order:8")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("b got:", <-got)
	fmt.Println("b got:", <-got)
	// Output:
	// b: connected
	// b got: invalidate order:7
	// b got: invalidate order:8
}

// ExampleNew uses a connection the application already has; Close leaves
// it open. Reconnecting it is the application's business: when it closes,
// the Transport reports a disconnect and stays down.
func ExampleNew() {
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	tr, err := rabbitmqtransport.New(conn, fmt.Sprintf("orders-%d", time.Now().UnixNano()))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	if err := tr.Subscribe(ctx, core.HandlerFuncs{Message: func(p []byte) { got <- string(p) }}); err != nil {
		log.Fatal(err)
	}
	if err := tr.Publish(ctx, []byte("user:42")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("own message:", <-got)
	_ = tr.Close()
	fmt.Println("connection still open:", !conn.IsClosed())
	// Output:
	// own message: user:42
	// connection still open: true
}

// A URL names the broker and the transport's parameters; the scheme picks
// this package once it is imported.
func Example_uRL() {
	bp, err := transports.Open(context.Background(),
		"amqp://guest:guest@127.0.0.1:5672/?exchange_prefix=cache.&queue_max_length=10000&heartbeat=10s",
		"orders")
	if err != nil {
		log.Fatal(err)
	}
	defer bp.Close()
	tr := bp.(*rabbitmqtransport.Transport)
	fmt.Println("exchange:", tr.Exchange())
	fmt.Println("max payload:", tr.Limits().MaxPayload)
	// Output:
	// exchange: cache.orders
	// max payload: 1048576
}
