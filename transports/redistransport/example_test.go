package redistransport_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// redisURL is the server the examples talk to.
func redisURL() string {
	if u := os.Getenv("BACKPLANE_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// Two instances of a service share the namespace "orders"; Open creates
// (and Close closes) each one's client.
func Example() {
	ctx := context.Background()
	ns := fmt.Sprintf("orders-%d", time.Now().UnixNano()) // fresh, for the example

	a, err := redistransport.Open(redisURL(), ns)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := redistransport.Open(redisURL(), ns)
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
	// Subscribe has returned: whatever is published from now on reaches b.
	// Both payloads travel in one round trip.
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

// New uses a client the application already has and leaves it open.
func ExampleNew() {
	opts, err := redis.ParseURL(redisURL())
	if err != nil {
		log.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()

	bp, err := redistransport.New(client, "orders", redistransport.WithMaxPayload(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	defer bp.Close()
	fmt.Println(bp.Channel(), bp.Sharded(), bp.Limits().MaxPayload)
	// Output:
	// backplane:{orders} false 65536
}

// With a cluster client the transport uses sharded pub/sub; the option
// falls back to classic pub/sub.
func ExampleWithPubSubMode() {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7000"}})
	defer client.Close()

	sharded, err := redistransport.New(client, "orders")
	if err != nil {
		log.Fatal(err)
	}
	defer sharded.Close()
	classic, err := redistransport.New(client, "orders", redistransport.WithPubSubMode(redistransport.PubSubClassic))
	if err != nil {
		log.Fatal(err)
	}
	defer classic.Close()
	fmt.Println(sharded.Sharded(), classic.Sharded())
	// Output:
	// true false
}

// The stream mode, chosen in the URL: a namespace's messages are entries of
// one stream, trimmed to about 100000 entries and 10 minutes, and an
// instance whose connection breaks resumes where it stopped, or says that
// it could not (core.Event.Resumed).
func Example_stream() {
	ctx := context.Background()
	ns := fmt.Sprintf("orders-%d", time.Now().UnixNano()) // fresh, for the example
	url := redisURL() + "?mode=stream&maxlen=100000&retention=10m"

	a, err := redistransport.Open(url, ns)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := redistransport.Open(url, ns)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	fmt.Println("durable:", b.Limits().Durable)

	got := make(chan string)
	err = b.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) { got <- string(p) },
		Event: func(ev core.Event) {
			if ev.Kind == core.EventReconnected {
				fmt.Println("b: reconnected, resumed:", ev.Resumed)
			} else {
				fmt.Println("b:", ev.Kind)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := a.Publish(ctx, []byte("invalidate order:7"), []byte("invalidate order:8")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("b got:", <-got)
	fmt.Println("b got:", <-got)
	// The stream outlives the instances: delete it when the namespace
	// goes out of use.
	_ = a.Client().Del(ctx, a.Channel()).Err()
	// Output:
	// durable: true
	// b: connected
	// b got: invalidate order:7
	// b got: invalidate order:8
}
