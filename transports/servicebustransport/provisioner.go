package servicebustransport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

// Provisioner creates and deletes the per-instance subscription of a
// Transport. Subscribe calls Provision once; Close calls Deprovision with
// the name Provision returned.
type Provisioner interface {
	// Provision creates a subscription on topic for one instance and
	// returns its name. Once it returns, the subscription exists: messages
	// sent to the topic from then on are kept for it.
	Provision(ctx context.Context, topic string) (subscription string, err error)
	// Deprovision deletes the subscription. A subscription that is already
	// gone is not an error.
	Deprovision(ctx context.Context, topic, subscription string) error
}

// SubscriptionAdmin is the part of *admin.Client that AdminProvisioner
// uses.
type SubscriptionAdmin interface {
	CreateSubscription(ctx context.Context, topicName, subscriptionName string, options *admin.CreateSubscriptionOptions) (admin.CreateSubscriptionResponse, error)
	DeleteSubscription(ctx context.Context, topicName, subscriptionName string, options *admin.DeleteSubscriptionOptions) (admin.DeleteSubscriptionResponse, error)
}

// Defaults of AdminProvisioner.
const (
	// DefaultSubscriptionPrefix starts the name of every subscription an
	// AdminProvisioner creates; a random 24-digit hex suffix follows.
	DefaultSubscriptionPrefix = "bp-"
	// DefaultAutoDeleteOnIdle is how long Service Bus keeps an idle
	// subscription of an instance that died without Close. Five minutes is
	// the service's minimum.
	DefaultAutoDeleteOnIdle = 5 * time.Minute
)

// AdminProvisioner provisions a subscription per instance through the
// Service Bus administration API (admin.Client, which needs the Manage
// right). Every subscription gets AutoDeleteOnIdle, so the subscriptions of
// instances that crashed are deleted by the service.
type AdminProvisioner struct {
	// Admin creates and deletes subscriptions; an *admin.Client.
	Admin SubscriptionAdmin
	// Prefix starts every subscription name. Empty means
	// DefaultSubscriptionPrefix. Names are at most 50 characters, so the
	// prefix is at most 26.
	Prefix string
	// AutoDeleteOnIdle is the subscriptions' auto-delete-on-idle interval.
	// Zero means DefaultAutoDeleteOnIdle; Service Bus rejects less than 5
	// minutes.
	AutoDeleteOnIdle time.Duration
	// MessageTTL is the subscriptions' default message time to live: how
	// long a message waits for an instance that is away. Zero means the
	// topic's default.
	MessageTTL time.Duration
}

// NewAdminProvisioner returns an AdminProvisioner with the defaults; a is
// usually an *admin.Client.
func NewAdminProvisioner(a SubscriptionAdmin) *AdminProvisioner {
	return &AdminProvisioner{Admin: a}
}

// isoDuration formats d as an ISO 8601 duration in whole seconds.
func isoDuration(d time.Duration) string {
	return fmt.Sprintf("PT%dS", int64((d+time.Second-1)/time.Second))
}

// Provision creates a subscription with a random name.
func (p *AdminProvisioner) Provision(ctx context.Context, topic string) (string, error) {
	prefix := p.Prefix
	if prefix == "" {
		prefix = DefaultSubscriptionPrefix
	}
	if len(prefix) > 26 {
		return "", fmt.Errorf("servicebustransport: subscription prefix %q longer than 26 characters", prefix)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	idle := p.AutoDeleteOnIdle
	if idle == 0 {
		idle = DefaultAutoDeleteOnIdle
	}
	props := &admin.SubscriptionProperties{AutoDeleteOnIdle: new(isoDuration(idle))}
	if p.MessageTTL > 0 {
		props.DefaultMessageTimeToLive = new(isoDuration(p.MessageTTL))
	}
	if _, err := p.Admin.CreateSubscription(ctx, topic, name, &admin.CreateSubscriptionOptions{Properties: props}); err != nil {
		return "", fmt.Errorf("servicebustransport: create subscription %s/%s: %w", topic, name, err)
	}
	return name, nil
}

// Deprovision deletes the subscription; 404 Not Found counts as deleted.
func (p *AdminProvisioner) Deprovision(ctx context.Context, topic, subscription string) error {
	_, err := p.Admin.DeleteSubscription(ctx, topic, subscription, nil)
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("servicebustransport: delete subscription %s/%s: %w", topic, subscription, err)
	}
	return nil
}
