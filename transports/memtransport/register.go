package memtransport

import (
	"context"
	"fmt"
	"sync"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Importing this package registers the mem:// scheme with
// transports.Open: mem://[name] is the process-wide hub SharedHub(name).
func init() {
	transports.Register("mem", openURL)
}

// urlParams are the query parameters of mem:// (besides namespace).
var urlParams = []string{"max_payload", "queue_size"}

var sharedHubs = struct {
	sync.Mutex
	m map[string]*Hub
}{m: map[string]*Hub{}}

// SharedHub returns the process-wide hub that mem://name URLs connect to,
// creating it with opts on first use (later calls ignore opts). The hub of
// mem:// (no name) is called "default". Tests use it to inject faults.
func SharedHub(name string, opts ...HubOption) *Hub {
	if name == "" {
		name = "default"
	}
	sharedHubs.Lock()
	defer sharedHubs.Unlock()
	h := sharedHubs.m[name]
	if h == nil {
		h = NewHub(opts...)
		sharedHubs.m[name] = h
	}
	return h
}

// openURL opens mem://[name]?max_payload=N&queue_size=N.
func openURL(_ context.Context, req transports.Request) (core.Backplane, error) {
	u := req.URL
	if err := transports.CheckParams(u, urlParams...); err != nil {
		return nil, err
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%w: mem:// takes a hub name, not a path (mem://name)", core.ErrInvalidOption)
	}
	p := transports.NewParams(u)
	opts := []HubOption{WithLogger(req.Logger)}
	p.Int("max_payload", func(n int) { opts = append(opts, WithMaxPayload(n)) })
	p.Int("queue_size", func(n int) { opts = append(opts, WithQueueSize(n)) })
	if p.Err() != nil {
		return nil, p.Err()
	}
	return SharedHub(u.Host, opts...).New(req.Namespace), nil
}
