package fxmodule

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

func init() {
	RegisterTransport("sb", openServiceBus)
	RegisterTransport("servicebus", openServiceBus)
}

// serviceBusParams are the query parameters of sb:// and servicebus://.
var serviceBusParams = []string{
	"key_name", "key", "emulator", "topic", "subscription", "provision",
	"peek_lock", "max_message_size", "receive_batch",
}

// openServiceBus opens sb://HOST[:PORT]?key_name=K&key=S&... : a Service
// Bus namespace with a shared access key. Without subscription=NAME, each
// instance creates its own subscription with the admin client
// (provision=admin, the default), deleted on Close and auto-deleted when
// idle; provision=none requires subscription.
func openServiceBus(_ context.Context, req TransportRequest) (core.Backplane, error) {
	u := req.URL
	if err := CheckParams(u, serviceBusParams...); err != nil {
		return nil, err
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: fxmodule: %s://HOST: no host", core.ErrInvalidOption, u.Scheme)
	}
	p := &params{q: u.Query()}
	keyName, _ := p.str("key_name")
	key, _ := p.str("key")
	if keyName == "" || key == "" {
		return nil, fmt.Errorf("%w: fxmodule: %s:// needs key_name and key (a shared access policy of the namespace)", core.ErrInvalidOption, u.Scheme)
	}
	var emulator bool
	p.bool("emulator", func(b bool) { emulator = b })
	opts := []servicebustransport.Option{servicebustransport.WithLogger(req.Logger)}
	if v, ok := p.str("topic"); ok {
		opts = append(opts, servicebustransport.WithTopic(v))
	}
	sub, hasSub := p.str("subscription")
	if hasSub {
		opts = append(opts, servicebustransport.WithSubscription(sub))
	}
	p.bool("peek_lock", func(b bool) { opts = append(opts, servicebustransport.WithPeekLock(b)) })
	p.int("max_message_size", func(n int) { opts = append(opts, servicebustransport.WithMaxMessageSize(n)) })
	p.int("receive_batch", func(n int) { opts = append(opts, servicebustransport.WithReceiveBatch(n)) })
	if p.err != nil {
		return nil, p.err
	}
	// Escape nothing: the SDK parses the connection string by ';' and '='
	// and a key may contain '='.
	if strings.ContainsAny(keyName+key, ";") {
		return nil, fmt.Errorf("%w: fxmodule: key_name and key must not contain ';'", core.ErrInvalidOption)
	}
	cs := fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s", u.Host, keyName, key)
	if emulator {
		cs += ";UseDevelopmentEmulator=true"
	}
	switch prov, _ := p.str("provision"); prov {
	case "", "admin":
		if !hasSub {
			a, err := admin.NewClientFromConnectionString(cs, nil)
			if err != nil {
				return nil, fmt.Errorf("%w: fxmodule: admin client: %v", core.ErrInvalidOption, err)
			}
			opts = append(opts, servicebustransport.WithProvisioner(servicebustransport.NewAdminProvisioner(a)))
		}
	case "none":
		if !hasSub {
			return nil, fmt.Errorf("%w: fxmodule: provision=none needs subscription=NAME", core.ErrInvalidOption)
		}
	default:
		return nil, fmt.Errorf("%w: fxmodule: provision=%q, want admin or none", core.ErrInvalidOption, prov)
	}
	return servicebustransport.Open(cs, req.Namespace, opts...)
}
