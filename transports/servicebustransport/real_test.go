package servicebustransport_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

// RealEnv names the connection string of a real namespace to run the
// suites against. It needs the Manage right: the harness creates a topic per
// test namespace (deleted at the end) and provisions subscriptions with an
// AdminProvisioner.
const RealEnv = "SERVICEBUS_CONNECTION_STRING"

// realHarness runs on a real namespace. It cannot cut connections or
// restart the service, so those cases are skipped.
func realHarness(t *testing.T) conformance.BackplaneHarness {
	cs := os.Getenv(RealEnv)
	if cs == "" {
		t.Skip("SKIPPED: no real Service Bus namespace (set " + RealEnv + " to a connection string with the Manage right)")
	}
	adm, err := admin.NewClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	var mu sync.Mutex
	topics := map[string]bool{}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for topic := range topics {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := adm.DeleteTopic(ctx, topic, nil); err != nil {
				t.Logf("delete topic %s: %v", topic, err)
			}
			cancel()
		}
	})
	p := servicebustransport.NewAdminProvisioner(adm)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			topic := servicebustransport.DefaultTopicPrefix + ns
			mu.Lock()
			if !topics[topic] {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := adm.CreateTopic(ctx, topic, nil)
				cancel()
				var re *azcore.ResponseError
				if err != nil && !(errors.As(err, &re) && re.StatusCode == http.StatusConflict) {
					mu.Unlock()
					t.Fatalf("create topic %s: %v", topic, err)
				}
				topics[topic] = true
			}
			mu.Unlock()
			tr, err := servicebustransport.Open(cs, ns, servicebustransport.WithProvisioner(p), servicebustransport.WithLogger(quiet))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return tr
		},
		// Service Bus does not promise FIFO without sessions.
		Ordered: false,
		Bound:   15 * time.Second,
	}
}

// TestConformanceRealNamespace runs the Backplane suite on a real
// namespace when RealEnv is set.
func TestConformanceRealNamespace(t *testing.T) {
	conformance.RunBackplane(t, realHarness(t))
}

// TestCacheConformanceRealNamespace runs the Cache suite on a real
// namespace when RealEnv is set.
func TestCacheConformanceRealNamespace(t *testing.T) {
	conformance.RunCache(t, conformance.CacheHarness{
		Backplane: realHarness(t),
		NewStore: func(t testing.TB) core.LocalStore {
			s, err := bigcachestore.New(bigcachestore.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		StaleBound: 10 * time.Second,
	})
}
