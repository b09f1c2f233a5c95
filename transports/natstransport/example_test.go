package natstransport_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// runExampleServer starts an in-process nats-server so that the examples
// are self-contained; in a service the URL points at your NATS deployment.
func runExampleServer() (url string, stop func()) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(5 * time.Second) {
		log.Fatal("nats-server not ready")
	}
	return srv.ClientURL(), func() { srv.Shutdown(); srv.WaitForShutdown() }
}

// Example opens a Transport from a URL, subscribes and publishes a batch.
// Every instance on the same namespace receives every message, its own
// included.
func Example() {
	url, stop := runExampleServer()
	defer stop()

	tr, err := natstransport.Open(url, "orders")
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan string, 2)
	err = tr.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) { got <- string(p) },
		Event:   func(ev core.Event) { fmt.Println("event:", ev.Kind) },
	})
	if err != nil {
		log.Fatal(err)
	}
	// One call, two messages, one round trip.
	if err := tr.Publish(ctx, []byte("user:42"), []byte("user:43")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("received:", <-got)
	fmt.Println("received:", <-got)
	// Output:
	// event: connected
	// received: user:42
	// received: user:43
}

// ExampleNew uses a connection the application already has. The Transport
// leaves the connection's callbacks alone and does not close it.
func ExampleNew() {
	url, stop := runExampleServer()
	defer stop()

	nc, err := nats.Connect(url, nats.Name("orders-service"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	tr, err := natstransport.New(nc, "orders")
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	fmt.Println("subject:", tr.Subject())
	fmt.Println("max payload:", tr.Limits().MaxPayload)
	// Output:
	// subject: backplane.orders
	// max payload: 1048576
}

// ExampleOpen shows the connection options. Open does no I/O: the
// connection is made by Connect or by the first Subscribe or Publish.
func ExampleOpen() {
	tr, err := natstransport.Open("tls://nats-1.internal:4222,tls://nats-2.internal:4222", "orders",
		natstransport.WithUserInfo("orders", "secret"),
		natstransport.WithRootCAFiles("/etc/nats/ca.pem"),
		natstransport.WithReconnectWait(time.Second),
		natstransport.WithName("orders-service"),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	fmt.Println(tr.Subject(), tr.Conn() == nil)
	// Output: backplane.orders true
}
