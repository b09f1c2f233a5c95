package servicebustransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/backplane-go/backplane/core"
)

// errLinkLost is the cause of an EventDisconnected when the SDK reported a
// failed receive without an error of its own (it recovers the link on the
// next call).
var errLinkLost = errors.New("servicebustransport: receive link or connection failed")

// closeLinkTimeout bounds closing the receiver, the sender and an owned
// client in Close: on a broken connection there is nothing to wait for.
const closeLinkTimeout = 2 * time.Second

// maxRecoverWait caps the growing pause between re-attach attempts.
const maxRecoverWait = 5 * time.Second

// Transport is a core.Backplane over an Azure Service Bus topic with one
// subscription per instance. It is safe for concurrent use.
type Transport struct {
	opts       Options
	client     *azservicebus.Client
	owned      bool
	sender     *azservicebus.Sender
	maxPayload int
	log        *slog.Logger

	mu           sync.Mutex
	closed       bool
	subscribed   bool
	subscription string
	provisioned  bool
	receiver     *azservicebus.Receiver
	cancel       context.CancelFunc

	wg sync.WaitGroup
	// closeDone is closed when the first Close has released everything.
	closeDone chan struct{}
}

var _ core.Backplane = (*Transport)(nil)

// New returns a Transport on namespace over a client the caller made and
// keeps: Close does not close it. It does no I/O.
func New(client *azservicebus.Client, namespace string, opts ...Option) (*Transport, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: servicebustransport: nil client", core.ErrInvalidOption)
	}
	o, err := resolve(namespace, opts)
	if err != nil {
		return nil, err
	}
	return newTransport(client, false, o)
}

// Open returns a Transport on namespace with a client of its own made from
// a Service Bus connection string (Options.ClientOptions apply); Close
// closes it. It does no I/O: the connection is made by the first Subscribe
// or Publish.
func Open(connectionString, namespace string, opts ...Option) (*Transport, error) {
	o, err := resolve(namespace, opts)
	if err != nil {
		return nil, err
	}
	c, err := azservicebus.NewClientFromConnectionString(connectionString, clientOptions(o))
	if err != nil {
		return nil, fmt.Errorf("%w: servicebustransport: %v", core.ErrInvalidOption, err)
	}
	return newTransport(c, true, o)
}

// OpenWithCredential is Open for a fully qualified namespace
// ("<name>.servicebus.windows.net") and a Microsoft Entra ID credential,
// for example one from azidentity.
func OpenWithCredential(fullyQualifiedNamespace string, cred azcore.TokenCredential, namespace string, opts ...Option) (*Transport, error) {
	o, err := resolve(namespace, opts)
	if err != nil {
		return nil, err
	}
	c, err := azservicebus.NewClient(fullyQualifiedNamespace, cred, clientOptions(o))
	if err != nil {
		return nil, fmt.Errorf("%w: servicebustransport: %v", core.ErrInvalidOption, err)
	}
	return newTransport(c, true, o)
}

func clientOptions(o Options) *azservicebus.ClientOptions {
	if o.ClientOptions != nil {
		return o.ClientOptions
	}
	return &azservicebus.ClientOptions{RetryOptions: azservicebus.RetryOptions{
		RetryDelay:    100 * time.Millisecond,
		MaxRetryDelay: 2 * time.Second,
	}}
}

func newTransport(c *azservicebus.Client, owned bool, o Options) (*Transport, error) {
	s, err := c.NewSender(o.Topic, nil)
	if err != nil {
		if owned {
			_ = c.Close(context.Background())
		}
		return nil, fmt.Errorf("servicebustransport: sender for %s: %w", o.Topic, err)
	}
	return &Transport{
		opts:       o,
		client:     c,
		owned:      owned,
		sender:     s,
		maxPayload: o.MaxMessageSize - MessageOverhead,
		log:        o.Logger.With("transport", "servicebus", "topic", o.Topic),
		closeDone:  make(chan struct{}),
	}, nil
}

// Topic returns the topic the Transport sends to and receives from.
func (t *Transport) Topic() string { return t.opts.Topic }

// Subscription returns this instance's subscription: the configured one,
// or the one the Provisioner made (empty until Subscribe made it).
func (t *Transport) Subscription() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subscription != "" {
		return t.subscription
	}
	return t.opts.Subscription
}

// Client returns the Service Bus client.
func (t *Transport) Client() *azservicebus.Client { return t.client }

// Limits reports Options.MaxMessageSize minus MessageOverhead, and in
// PeekLock mode Reorders: messages that reach the client between two
// receive calls are released, and come back after later ones. It never
// reports Durable: see "After an Outage" in the package documentation.
func (t *Transport) Limits() core.Limits {
	return core.Limits{MaxPayload: t.maxPayload, Reorders: t.opts.PeekLock}
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Publish sends the payloads as one or more message batches, in order,
// and returns once Service Bus accepted all of them.
func (t *Transport) Publish(ctx context.Context, payloads ...[]byte) error {
	if t.isClosed() {
		return core.ErrClosed
	}
	for i, p := range payloads {
		if len(p) > t.maxPayload {
			return fmt.Errorf("%w: servicebustransport: payload %d has %d bytes, limit %d", core.ErrPayloadTooLarge, i, len(p), t.maxPayload)
		}
	}
	if len(payloads) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("servicebustransport: publish: %w", err)
	}
	batch, err := t.newBatch(ctx)
	if err != nil {
		return err
	}
	for i, p := range payloads {
		err := batch.AddMessage(&azservicebus.Message{Body: p}, nil)
		if errors.Is(err, azservicebus.ErrMessageTooLarge) && batch.NumMessages() > 0 {
			if err := t.send(ctx, batch); err != nil {
				return err
			}
			if batch, err = t.newBatch(ctx); err != nil {
				return err
			}
			err = batch.AddMessage(&azservicebus.Message{Body: p}, nil)
		}
		if errors.Is(err, azservicebus.ErrMessageTooLarge) {
			return fmt.Errorf("%w: servicebustransport: payload %d (%d bytes) exceeds the topic's max message size, below Options.MaxMessageSize", core.ErrPayloadTooLarge, i, len(p))
		}
		if err != nil {
			return fmt.Errorf("servicebustransport: publish: %w", err)
		}
	}
	return t.send(ctx, batch)
}

func (t *Transport) newBatch(ctx context.Context) (*azservicebus.MessageBatch, error) {
	b, err := t.sender.NewMessageBatch(ctx, nil)
	if err != nil {
		return nil, t.publishErr(ctx, err)
	}
	return b, nil
}

func (t *Transport) send(ctx context.Context, b *azservicebus.MessageBatch) error {
	if err := t.sender.SendMessageBatch(ctx, b, nil); err != nil {
		return t.publishErr(ctx, err)
	}
	return nil
}

// publishErr wraps a send error, with ErrClosed or the context's error
// when they are the cause.
func (t *Transport) publishErr(ctx context.Context, err error) error {
	if t.isClosed() {
		return fmt.Errorf("%w: %v", core.ErrClosed, err)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("servicebustransport: publish: %w (%v)", cerr, err)
	}
	return fmt.Errorf("servicebustransport: publish: %w", err)
}

// Subscribe provisions the subscription (with a Provisioner), attaches the
// receiver, and starts delivery to h. It returns once the subscription
// exists and the receiver link is attached; see the package documentation
// for what that means on Service Bus.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return fmt.Errorf("%w: servicebustransport: nil handler", core.ErrInvalidOption)
	}
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return core.ErrClosed
	case t.subscribed:
		t.mu.Unlock()
		return core.ErrAlreadySubscribed
	}
	t.subscribed = true
	t.mu.Unlock()

	a, err := t.attach(ctx)
	t.mu.Lock()
	if err == nil && t.closed {
		err = core.ErrClosed
	}
	if err != nil {
		t.subscribed = false
		t.mu.Unlock()
		if rerr := t.release(a.recv, a.name, a.provisioned); rerr != nil {
			t.log.Warn("servicebustransport: cleanup after a failed Subscribe", "err", rerr)
		}
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t.receiver, t.subscription, t.provisioned, t.cancel = a.recv, a.name, a.provisioned, cancel
	t.wg.Add(1)
	t.mu.Unlock()
	go t.run(runCtx, a, h)
	return nil
}

func (t *Transport) receiveMode() azservicebus.ReceiveMode {
	if t.opts.PeekLock {
		return azservicebus.ReceiveModePeekLock
	}
	return azservicebus.ReceiveModeReceiveAndDelete
}

// attach makes the subscription (if provisioned) and an attached receiver,
// and reads the subscription's identity (with an Inspector).
func (t *Transport) attach(ctx context.Context) (a attachment, err error) {
	a.name = t.opts.Subscription
	if p := t.opts.Provisioner; p != nil {
		if a.name, err = p.Provision(ctx, t.opts.Topic); err != nil {
			return attachment{}, fmt.Errorf("servicebustransport: provision: %w", err)
		}
		a.provisioned = true
	}
	a.recv, err = t.client.NewReceiverForSubscription(t.opts.Topic, a.name, &azservicebus.ReceiverOptions{ReceiveMode: t.receiveMode()})
	if err != nil {
		return a, fmt.Errorf("servicebustransport: receiver for %s/%s: %w", t.opts.Topic, a.name, err)
	}
	// Peeking attaches the receiver link and the management link: it
	// fails here, not later, for a missing entity or missing rights.
	if _, err := a.recv.PeekMessages(ctx, 1, nil); err != nil {
		return a, fmt.Errorf("servicebustransport: attach to %s/%s: %w", t.opts.Topic, a.name, err)
	}
	id, found, err := t.inspect(ctx, a.name)
	if err == nil && !found {
		err = fmt.Errorf("servicebustransport: subscription %s/%s attached but not found by Options.Inspector", t.opts.Topic, a.name)
	}
	if err != nil {
		return a, err
	}
	a.id = id
	return a, nil
}

// release closes a receiver and deletes a provisioned subscription.
func (t *Transport) release(recv *azservicebus.Receiver, name string, provisioned bool) error {
	if recv != nil {
		lctx, cancel := context.WithTimeout(context.Background(), closeLinkTimeout)
		if err := recv.Close(lctx); err != nil {
			t.log.Debug("servicebustransport: close receiver", "err", err)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.SettleTimeout)
	defer cancel()
	if provisioned {
		return t.opts.Provisioner.Deprovision(ctx, t.opts.Topic, name)
	}
	return nil
}

// run receives until ctx ends. It makes every handler call.
func (t *Transport) run(ctx context.Context, a attachment, h core.Handler) {
	defer t.wg.Done()
	t.event(h, core.Event{Kind: core.EventConnected, Time: time.Now()})
	settle, stopSettler := t.startSettler(ctx, a.recv)
	defer func() { stopSettler() }()
	opts := &azservicebus.ReceiveMessagesOptions{TimeAfterFirstMessage: time.Microsecond}
	wait := t.opts.RecoverWait
	var out *outage // non-nil while delivery is down
	for {
		if out != nil {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			wait = min(2*wait, maxRecoverWait)
			before := a.recv
			ev, ok := t.reattach(ctx, &a, out)
			if a.recv != before {
				// Completions of the deleted subscription's messages are
				// moot: stop its settler, start one for the new receiver.
				stopSettler()
				settle, stopSettler = t.startSettler(ctx, a.recv)
			}
			if ctx.Err() != nil {
				return
			}
			if !ok {
				continue
			}
			out, wait = nil, t.opts.RecoverWait
			t.event(h, ev)
		}
		msgs, err := a.recv.ReceiveMessages(ctx, t.opts.ReceiveBatch, opts)
		if ctx.Err() != nil {
			return
		}
		if len(msgs) == 0 {
			if err == nil {
				err = errLinkLost
			}
			t.log.Warn("servicebustransport: receive failed; re-attaching", "err", err)
			out = &outage{}
			t.event(h, core.Event{Kind: core.EventDisconnected, Err: err, Time: time.Now()})
			continue
		}
		for _, m := range msgs {
			if ctx.Err() != nil {
				return
			}
			t.message(h, m.Body)
			if settle != nil {
				select {
				case settle <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// startSettler starts, in PeekLock mode, the goroutine that completes
// recv's messages: completions run on a goroutine of their own, so that a
// slow or failing one (the SDK retries it) does not hold up delivery. It
// returns the settler's queue (nil in ReceiveAndDelete mode) and a
// function that stops it.
func (t *Transport) startSettler(ctx context.Context, recv *azservicebus.Receiver) (chan<- *azservicebus.ReceivedMessage, func()) {
	if !t.opts.PeekLock {
		return nil, func() {}
	}
	sctx, cancel := context.WithCancel(ctx)
	ch := make(chan *azservicebus.ReceivedMessage, t.opts.ReceiveBatch)
	t.wg.Add(1)
	go t.settler(sctx, recv, ch)
	return ch, cancel
}

// settler completes PeekLock messages until ctx ends. A failure leaves
// the message to be delivered again after its lock expires: a duplicate,
// which is harmless. Completions still queued when ctx ends are dropped
// the same way.
func (t *Transport) settler(ctx context.Context, recv *azservicebus.Receiver, ch <-chan *azservicebus.ReceivedMessage) {
	defer t.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			cctx, cancel := context.WithTimeout(ctx, t.opts.SettleTimeout)
			if err := recv.CompleteMessage(cctx, m, nil); err != nil && ctx.Err() == nil {
				t.log.Debug("servicebustransport: complete failed; the message will be delivered again", "err", err)
			}
			cancel()
		}
	}
}

func (t *Transport) message(h core.Handler, p []byte) {
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("servicebustransport: handler panicked in HandleMessage", "panic", r)
		}
	}()
	h.HandleMessage(p)
}

func (t *Transport) event(h core.Handler, ev core.Event) {
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("servicebustransport: handler panicked in HandleEvent", "panic", r, "event", ev.Kind.String())
		}
	}()
	h.HandleEvent(ev)
}

// Close stops delivery, waits for a running handler call, closes the
// receiver and the sender, deletes a provisioned subscription, and closes
// the client if the Transport made it. It returns the Provisioner's error,
// if any: failures to close links on a connection that is already broken
// are only logged (at debug level), since nothing is left to release.
//
// Close is idempotent: later calls wait for the first to finish and return
// nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.closeDone
		return nil
	}
	t.closed = true
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	t.wg.Wait()
	// Read after delivery stopped: the run loop replaces a subscription
	// deleted while the instance was away.
	t.mu.Lock()
	recv, name, provisioned := t.receiver, t.subscription, t.provisioned
	t.mu.Unlock()
	return t.finish(recv, name, provisioned)
}

// finish releases everything once delivery has stopped.
func (t *Transport) finish(recv *azservicebus.Receiver, name string, provisioned bool) error {
	defer close(t.closeDone)
	err := t.release(recv, name, provisioned)
	ctx, stop := context.WithTimeout(context.Background(), closeLinkTimeout)
	defer stop()
	if err := t.sender.Close(ctx); err != nil {
		t.log.Debug("servicebustransport: close sender", "err", err)
	}
	if t.owned {
		if err := t.client.Close(ctx); err != nil {
			t.log.Debug("servicebustransport: close client", "err", err)
		}
	}
	return err
}
