package servicebustransport_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/internal/testenv/sbfake"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

// TestMain fails the package when a goroutine outlives its tests. The
// SDK's links end their background goroutines (the claim renewer) a moment
// after they are closed, later on a loaded machine than goleak's own
// retries wait: leaks are looked for until none is left or 10 s passed.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := goleak.Find()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines outlived the tests: %v\n", err)
				code = 1
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// quiet discards the Transports' log in tests: handler panics and
// connection diagnostics are expected there.
var quiet = slog.New(slog.DiscardHandler)

const waitTimeout = 20 * time.Second

// fastRetries makes the SDK retry quickly against the fake.
var fastRetries = &azservicebus.ClientOptions{RetryOptions: azservicebus.RetryOptions{
	MaxRetries: 10, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond,
}}

func startFake(t testing.TB) *sbfake.Server {
	t.Helper()
	s, err := sbfake.Start(sbfake.WithHeartbeat(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// adminClient is the SDK's admin client on the fake's in-process
// administration API.
func adminClient(t testing.TB, srv *sbfake.Server) *admin.Client {
	t.Helper()
	adm, err := admin.NewClientFromConnectionString(srv.ConnectionString(), &admin.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: srv.AdminTransport()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return adm
}

// fakeAdmin is a SubscriptionAdmin over the fake: it creates and deletes
// subscriptions there and records the calls.
type fakeAdmin struct {
	srv *sbfake.Server

	mu      sync.Mutex
	created []admin.CreateSubscriptionOptions
	names   []string
	deleted []string
	failDel error
}

func (a *fakeAdmin) CreateSubscription(_ context.Context, topic, name string, o *admin.CreateSubscriptionOptions) (admin.CreateSubscriptionResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		a.srv.AddTopic(topic, name)
	}
	a.created = append(a.created, *o)
	a.names = append(a.names, name)
	return admin.CreateSubscriptionResponse{}, nil
}

func (a *fakeAdmin) DeleteSubscription(_ context.Context, topic, name string, _ *admin.DeleteSubscriptionOptions) (admin.DeleteSubscriptionResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failDel != nil {
		return admin.DeleteSubscriptionResponse{}, a.failDel
	}
	if a.srv != nil {
		a.srv.RemoveSubscription(topic, name)
	}
	a.deleted = append(a.deleted, name)
	return admin.DeleteSubscriptionResponse{}, nil
}

var _ servicebustransport.SubscriptionAdmin = (*admin.Client)(nil)

// notFound is the error admin.Client returns for a missing entity.
var notFound = &azcore.ResponseError{StatusCode: 404, ErrorCode: "NotFound"}

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
