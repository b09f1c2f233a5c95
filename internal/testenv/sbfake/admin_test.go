package sbfake_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

// TestAdminClient drives the fake's administration API with the SDK's
// admin.Client.
func TestAdminClient(t *testing.T) {
	s := start(t)
	adm, err := admin.NewClientFromConnectionString(s.ConnectionString(), &admin.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: s.AdminTransport()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx(t), "t", nil); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	idle := "PT5M"
	res, err := adm.CreateSubscription(ctx(t), "t", "a", &admin.CreateSubscriptionOptions{
		Properties: &admin.SubscriptionProperties{AutoDeleteOnIdle: &idle},
	})
	if err != nil {
		t.Fatalf("CreateSubscription: %v", err)
	}
	if res.AutoDeleteOnIdle == nil || *res.AutoDeleteOnIdle != "PT5M" {
		t.Fatalf("AutoDeleteOnIdle in the response: %v", res.AutoDeleteOnIdle)
	}
	if s.Pending("t", "a") != 0 {
		t.Fatal("the subscription was not created")
	}
	reqs := s.AdminRequests()
	if last := reqs[len(reqs)-1]; last.Method != http.MethodPut || last.Path != "t/Subscriptions/a" ||
		!strings.Contains(last.Body, "<AutoDeleteOnIdle>PT5M</AutoDeleteOnIdle>") {
		t.Fatalf("last request %+v", last)
	}
	first, err := adm.GetSubscriptionRuntimeProperties(ctx(t), "t", "a", nil)
	if err != nil || first == nil || first.CreatedAt.IsZero() || first.TotalMessageCount != 0 || first.DeadLetterMessageCount != 0 {
		t.Fatalf("GetSubscriptionRuntimeProperties: %+v, %v", first, err)
	}
	if _, err := adm.DeleteSubscription(ctx(t), "t", "a", nil); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	if gone, err := adm.GetSubscriptionRuntimeProperties(ctx(t), "t", "a", nil); gone != nil || err != nil {
		t.Fatalf("GetSubscriptionRuntimeProperties of a deleted subscription: %+v, %v; want nil, nil", gone, err)
	}
	// A subscription made again under the same name is another entity.
	if _, err := adm.CreateSubscription(ctx(t), "t", "a", nil); err != nil {
		t.Fatalf("CreateSubscription again: %v", err)
	}
	again, err := adm.GetSubscriptionRuntimeProperties(ctx(t), "t", "a", nil)
	if err != nil || again == nil || !again.CreatedAt.After(first.CreatedAt) {
		t.Fatalf("the subscription made again: %+v, %v; want a CreatedAt after %v", again, err, first.CreatedAt)
	}
	if _, err := adm.DeleteSubscription(ctx(t), "t", "a", nil); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	if s.Pending("t", "a") != -1 {
		t.Fatal("the subscription was not deleted")
	}
	_, err = adm.DeleteSubscription(ctx(t), "t", "a", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Fatalf("second DeleteSubscription: %v; want 404", err)
	}
	if _, err := adm.CreateSubscription(ctx(t), "missing", "a", nil); !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Fatalf("subscription on a missing topic: %v; want 404", err)
	}
	if _, err := adm.DeleteTopic(ctx(t), "t", nil); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
}
