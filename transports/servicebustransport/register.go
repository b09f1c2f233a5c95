package servicebustransport

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Importing this package registers the sb:// and servicebus:// schemes
// with transports.Open (and so with fxmodule).
func init() {
	transports.Register("sb", openURL)
	transports.Register("servicebus", openURL)
}

// urlParams are the query parameters of sb:// and servicebus:// (besides
// namespace).
var urlParams = []string{
	"key_name", "key", "emulator", "topic", "subscription", "provision",
	"peek_lock", "max_message_size", "receive_batch",
}

// openURL opens sb://HOST[:PORT]?key_name=K&key=S&... : a Service
// Bus namespace with a shared access key. Without subscription=NAME, each
// instance creates its own subscription with the admin client
// (provision=admin, the default), deleted on Close and auto-deleted when
// idle, and the same admin client is the Inspector that tells, after an
// outage, whether the subscription survived; provision=none requires
// subscription.
func openURL(_ context.Context, req transports.Request) (core.Backplane, error) {
	u := req.URL
	if err := transports.CheckParams(u, urlParams...); err != nil {
		return nil, err
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: servicebustransport: %s://HOST: no host", core.ErrInvalidOption, u.Scheme)
	}
	p := transports.NewParams(u)
	keyName, _ := p.Str("key_name")
	key, _ := p.Str("key")
	if keyName == "" || key == "" {
		return nil, fmt.Errorf("%w: servicebustransport: %s:// needs key_name and key (a shared access policy of the namespace)", core.ErrInvalidOption, u.Scheme)
	}
	var emulator bool
	p.Bool("emulator", func(b bool) { emulator = b })
	opts := []Option{WithLogger(req.Logger)}
	if v, ok := p.Str("topic"); ok {
		opts = append(opts, WithTopic(v))
	}
	sub, hasSub := p.Str("subscription")
	if hasSub {
		opts = append(opts, WithSubscription(sub))
	}
	p.Bool("peek_lock", func(b bool) { opts = append(opts, WithPeekLock(b)) })
	p.Int("max_message_size", func(n int) { opts = append(opts, WithMaxMessageSize(n)) })
	p.Int("receive_batch", func(n int) { opts = append(opts, WithReceiveBatch(n)) })
	if p.Err() != nil {
		return nil, p.Err()
	}
	// Escape nothing: the SDK parses the connection string by ';' and '='
	// and a key may contain '='.
	if strings.ContainsAny(keyName+key, ";") {
		return nil, fmt.Errorf("%w: servicebustransport: key_name and key must not contain ';'", core.ErrInvalidOption)
	}
	cs := fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s", u.Host, keyName, key)
	if emulator {
		cs += ";UseDevelopmentEmulator=true"
	}
	switch prov, _ := p.Str("provision"); prov {
	case "", "admin":
		if !hasSub {
			a, err := admin.NewClientFromConnectionString(cs, nil)
			if err != nil {
				return nil, fmt.Errorf("%w: servicebustransport: admin client: %v", core.ErrInvalidOption, err)
			}
			opts = append(opts, WithProvisioner(NewAdminProvisioner(a)))
		}
	case "none":
		if !hasSub {
			return nil, fmt.Errorf("%w: servicebustransport: provision=none needs subscription=NAME", core.ErrInvalidOption)
		}
	default:
		return nil, fmt.Errorf("%w: servicebustransport: provision=%q, want admin or none", core.ErrInvalidOption, prov)
	}
	return Open(cs, req.Namespace, opts...)
}
