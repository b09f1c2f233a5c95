package servicebustransport_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv/sbfake"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

// ExampleOpen connects two instances, each with a pre-provisioned
// subscription of its own, through a fake namespace (the connection string
// of a real one works the same way).
func ExampleOpen() {
	srv, err := sbfake.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.AddTopic("backplane.orders", "instance-a", "instance-b")

	a, err := servicebustransport.Open(srv.ConnectionString(), "orders", servicebustransport.WithSubscription("instance-a"))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := servicebustransport.Open(srv.ConnectionString(), "orders", servicebustransport.WithSubscription("instance-b"))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	if err := b.Subscribe(ctx, core.HandlerFuncs{Message: func(p []byte) { got <- string(p) }}); err != nil {
		log.Fatal(err)
	}
	if err := a.Publish(ctx, []byte("invalidate order:42")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	fmt.Println(a.Topic(), a.Limits().MaxPayload)
	// Output:
	// invalidate order:42
	// backplane.orders 261632
}

// ExampleNewAdminProvisioner gives every instance a subscription of its
// own, created in Subscribe and deleted in Close. The connection string
// needs the Manage right. With Microsoft Entra ID, use admin.NewClient and
// OpenWithCredential with the same azcore.TokenCredential instead.
func ExampleNewAdminProvisioner() {
	const cs = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=manage;SharedAccessKey=..."
	adm, err := admin.NewClientFromConnectionString(cs, nil)
	if err != nil {
		log.Fatal(err)
	}
	p := servicebustransport.NewAdminProvisioner(adm)
	p.AutoDeleteOnIdle = 10 * time.Minute
	tr, err := servicebustransport.Open(cs, "orders", servicebustransport.WithProvisioner(p))
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	// Pass tr to core.New; Start subscribes, which creates the
	// subscription.
}
