package servicebustransport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv/sbfake"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// open makes a Transport on the fake with a pre-provisioned subscription.
func open(t *testing.T, srv *sbfake.Server, ns, sub string, opts ...servicebustransport.Option) *servicebustransport.Transport {
	t.Helper()
	srv.AddTopic(servicebustransport.DefaultTopicPrefix+ns, sub)
	opts = append([]servicebustransport.Option{
		servicebustransport.WithSubscription(sub),
		servicebustransport.WithClientOptions(fastRetries),
		servicebustransport.WithLogger(quiet),
	}, opts...)
	tr, err := servicebustransport.Open(srv.ConnectionString(), ns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// collector records what a handler receives.
type collector struct {
	mu     sync.Mutex
	msgs   []string
	events []core.EventKind
	full   []core.Event
}

func (c *collector) HandleMessage(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, string(p))
}

func (c *collector) HandleEvent(ev core.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev.Kind)
	c.full = append(c.full, ev)
}

// kinds returns the kinds of the events received so far.
func (c *collector) kinds() []core.EventKind {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]core.EventKind(nil), c.events...)
}

// reconnects returns the EventReconnected events received so far.
func (c *collector) reconnects() []core.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []core.Event
	for _, ev := range c.full {
		if ev.Kind == core.EventReconnected {
			out = append(out, ev)
		}
	}
	return out
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func TestOptionValidation(t *testing.T) {
	srv := startFake(t)
	p := servicebustransport.NewAdminProvisioner(&fakeAdmin{})
	cases := []struct {
		name string
		ns   string
		opts []servicebustransport.Option
	}{
		{"no subscription or provisioner", "ns", nil},
		{"both subscription and provisioner", "ns", []servicebustransport.Option{
			servicebustransport.WithSubscription("s"), servicebustransport.WithProvisioner(p)}},
		{"empty namespace without topic", "", []servicebustransport.Option{servicebustransport.WithSubscription("s")}},
		{"bad topic", "ns", []servicebustransport.Option{servicebustransport.WithSubscription("s"), servicebustransport.WithTopic("a?b")}},
		{"tiny max message size", "ns", []servicebustransport.Option{servicebustransport.WithSubscription("s"), servicebustransport.WithMaxMessageSize(100)}},
		{"receive batch too large", "ns", []servicebustransport.Option{servicebustransport.WithSubscription("s"), servicebustransport.WithReceiveBatch(5001)}},
		{"negative recover wait", "ns", []servicebustransport.Option{servicebustransport.WithSubscription("s"), servicebustransport.WithRecoverWait(-1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := servicebustransport.Open(srv.ConnectionString(), c.ns, c.opts...)
			if !errors.Is(err, core.ErrInvalidOption) {
				if tr != nil {
					_ = tr.Close()
				}
				t.Fatalf("error %v; want core.ErrInvalidOption", err)
			}
		})
	}
	if _, err := servicebustransport.New(nil, "ns", servicebustransport.WithSubscription("s")); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("New(nil): %v", err)
	}
	if _, err := servicebustransport.Open("not a connection string", "ns", servicebustransport.WithSubscription("s")); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("Open with a bad connection string: %v", err)
	}
}

func TestTopicAndLimits(t *testing.T) {
	srv := startFake(t)
	tr := open(t, srv, "ns", "a")
	if tr.Topic() != "backplane.ns" || tr.Subscription() != "a" {
		t.Fatalf("topic %q, subscription %q", tr.Topic(), tr.Subscription())
	}
	if got, want := tr.Limits().MaxPayload, servicebustransport.DefaultMaxMessageSize-servicebustransport.MessageOverhead; got != want {
		t.Fatalf("MaxPayload %d, want %d", got, want)
	}
	if l := tr.Limits(); l.Durable || l.Reorders {
		t.Fatalf("ReceiveAndDelete limits %+v; want neither Durable nor Reorders", l)
	}
	// PeekLock releases what arrives between two receive calls: it comes
	// back after later messages.
	if l := open(t, srv, "ns", "p", servicebustransport.WithPeekLock(true)).Limits(); l.Durable || !l.Reorders {
		t.Fatalf("PeekLock limits %+v; want Reorders, not Durable", l)
	}
	srv.AddTopic("custom", "a")
	tr2, err := servicebustransport.Open(srv.ConnectionString(), "ignored", servicebustransport.WithTopic("custom"),
		servicebustransport.WithSubscription("a"), servicebustransport.WithMaxMessageSize(1<<20), servicebustransport.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if tr2.Topic() != "custom" || tr2.Limits().MaxPayload != 1<<20-servicebustransport.MessageOverhead {
		t.Fatalf("topic %q, limits %+v", tr2.Topic(), tr2.Limits())
	}
}

// TestBatchesSplit publishes more than one batch holds in one call; all
// arrive, in order.
func TestBatchesSplit(t *testing.T) {
	srv := startFake(t)
	tr := open(t, srv, "split", "a")
	c := &collector{}
	if err := tr.Subscribe(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 100*1024)
	var want []string
	var payloads [][]byte
	for i := range 7 { // 7 x 100 KiB: at least 3 batches of at most 256 KiB
		p := fmt.Sprintf("%d:%s", i, big)
		want = append(want, p)
		payloads = append(payloads, []byte(p))
	}
	if err := tr.Publish(ctxT(t), payloads...); err != nil {
		t.Fatal(err)
	}
	if !eventually(waitTimeout, func() bool { return c.count() == len(want) }) {
		t.Fatalf("received %d of %d", c.count(), len(want))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range want {
		if c.msgs[i] != want[i] {
			t.Fatalf("message %d out of order", i)
		}
	}
}

// TestTopicSmallerThanConfigured: a topic whose real max message size is
// below Options.MaxMessageSize fails the payload with ErrPayloadTooLarge.
func TestTopicSmallerThanConfigured(t *testing.T) {
	srv, err := sbfake.Start(sbfake.WithMaxMessageSize(64 * 1024))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tr := open(t, srv, "small", "a")
	err = tr.Publish(ctxT(t), make([]byte, 100*1024))
	if !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Fatalf("error %v; want ErrPayloadTooLarge", err)
	}
}

func TestSubscribeUnknownEntities(t *testing.T) {
	srv := startFake(t)
	srv.AddTopic("backplane.known", "a")
	for _, c := range []struct{ name, ns, sub string }{
		{"unknown topic", "unknown", "a"},
		{"unknown subscription", "known", "b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := servicebustransport.Open(srv.ConnectionString(), c.ns, servicebustransport.WithSubscription(c.sub),
				servicebustransport.WithClientOptions(fastRetries), servicebustransport.WithLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			err = tr.Subscribe(ctxT(t), &collector{})
			if err == nil || !strings.Contains(err.Error(), "not-found") {
				t.Fatalf("Subscribe: %v; want amqp:not-found", err)
			}
			// A failed Subscribe may be retried once the entity exists.
			srv.AddTopic("backplane."+c.ns, c.sub)
			if err := tr.Subscribe(ctxT(t), &collector{}); err != nil {
				t.Fatalf("Subscribe after the entity was created: %v", err)
			}
		})
	}
}

func TestProvisioner(t *testing.T) {
	srv := startFake(t)
	srv.AddTopic("backplane.prov")
	p := &servicebustransport.AdminProvisioner{Admin: adminClient(t, srv), Prefix: "svc-", AutoDeleteOnIdle: 10 * time.Minute, MessageTTL: 90 * time.Second}
	tr, err := servicebustransport.Open(srv.ConnectionString(), "prov", servicebustransport.WithProvisioner(p),
		servicebustransport.WithClientOptions(fastRetries), servicebustransport.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Subscription() != "" {
		t.Fatalf("subscription %q before Subscribe", tr.Subscription())
	}
	if err := tr.Subscribe(ctxT(t), &collector{}); err != nil {
		t.Fatal(err)
	}
	name := tr.Subscription()
	if !strings.HasPrefix(name, "svc-") || len(name) != 4+24 {
		t.Fatalf("subscription name %q", name)
	}
	if srv.Pending("backplane.prov", name) != 0 {
		t.Fatalf("subscription %q not on the fake", name)
	}
	// The subscription is made (PUT), then read (GET: its identity, since
	// the provisioner's admin.Client is the Inspector).
	reqs := srv.AdminRequests()
	if len(reqs) != 2 || reqs[0].Method != "PUT" || reqs[1].Method != "GET" || reqs[0].Path != "backplane.prov/Subscriptions/"+name ||
		!strings.Contains(reqs[0].Body, "<AutoDeleteOnIdle>PT600S</AutoDeleteOnIdle>") ||
		!strings.Contains(reqs[0].Body, "<DefaultMessageTimeToLive>PT90S</DefaultMessageTimeToLive>") {
		t.Fatalf("admin requests %+v", reqs)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	reqs = srv.AdminRequests()
	if len(reqs) != 3 || reqs[2].Method != "DELETE" || srv.Pending("backplane.prov", name) != -1 {
		t.Fatalf("admin requests %+v; subscription still there: %v", reqs, srv.Pending("backplane.prov", name) != -1)
	}
}

func TestAdminProvisionerDefaultsAndErrors(t *testing.T) {
	adm := &fakeAdmin{}
	p := servicebustransport.NewAdminProvisioner(adm)
	name, err := p.Provision(context.Background(), "t")
	if err != nil || !strings.HasPrefix(name, servicebustransport.DefaultSubscriptionPrefix) {
		t.Fatalf("Provision: %q, %v", name, err)
	}
	props := adm.created[0].Properties
	if *props.AutoDeleteOnIdle != "PT300S" || props.DefaultMessageTimeToLive != nil {
		t.Fatalf("defaults: AutoDeleteOnIdle %q, TTL %v", *props.AutoDeleteOnIdle, props.DefaultMessageTimeToLive)
	}
	adm.failDel = notFound
	if err := p.Deprovision(context.Background(), "t", name); err != nil {
		t.Fatalf("Deprovision of a missing subscription: %v", err)
	}
	boom := errors.New("boom")
	adm.failDel = boom
	if err := p.Deprovision(context.Background(), "t", name); !errors.Is(err, boom) {
		t.Fatalf("Deprovision error %v; want boom", err)
	}
	p.Prefix = strings.Repeat("p", 27)
	if _, err := p.Provision(context.Background(), "t"); err == nil {
		t.Fatal("a 27-character prefix was accepted")
	}
}

// TestCloseReportsDeprovisionError: Close returns the Provisioner's error;
// later calls return nil.
func TestCloseReportsDeprovisionError(t *testing.T) {
	srv := startFake(t)
	srv.AddTopic("backplane.closeerr")
	boom := errors.New("boom")
	adm := &fakeAdmin{srv: srv}
	tr, err := servicebustransport.Open(srv.ConnectionString(), "closeerr",
		servicebustransport.WithProvisioner(servicebustransport.NewAdminProvisioner(adm)), servicebustransport.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Subscribe(ctxT(t), &collector{}); err != nil {
		t.Fatal(err)
	}
	adm.mu.Lock()
	adm.failDel = boom
	adm.mu.Unlock()
	if err := tr.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: %v; want boom", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v; want nil", err)
	}
	if err := tr.Publish(ctxT(t), []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := tr.Subscribe(ctxT(t), &collector{}); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

// TestMessagesKeptWhileAway: messages sent while an instance's connection
// is down (and new connections are refused) wait in its subscription and
// arrive after EventReconnected.
func TestMessagesKeptWhileAway(t *testing.T) {
	srv := startFake(t)
	a := open(t, srv, "away", "a")
	b := open(t, srv, "away", "b")
	ca := &collector{}
	if err := a.Subscribe(ctxT(t), ca); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctxT(t), &collector{}); err != nil {
		t.Fatal(err)
	}
	srv.Refuse(time.Hour)
	if !eventually(waitTimeout, func() bool { return srv.DropEntity("backplane.away/Subscriptions/a") > 0 }) {
		t.Fatal("no connection to drop")
	}
	if !eventually(waitTimeout, func() bool {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		return len(ca.events) >= 2
	}) {
		t.Fatalf("events %v; want connected, disconnected", ca.events)
	}
	// b connected before the refusal and keeps its connection.
	if err := b.Publish(ctxT(t), []byte("while-away")); err != nil {
		t.Fatal(err)
	}
	if srv.Pending("backplane.away", "a") != 1 {
		t.Fatalf("pending for a: %d", srv.Pending("backplane.away", "a"))
	}
	srv.Refuse(0)
	if !eventually(waitTimeout, func() bool { return ca.count() == 1 }) {
		t.Fatalf("the message kept while away did not arrive (events %v)", ca.events)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	want := []core.EventKind{core.EventConnected, core.EventDisconnected, core.EventReconnected}
	if fmt.Sprint(ca.events) != fmt.Sprint(want) {
		t.Fatalf("events %v; want %v", ca.events, want)
	}
}

// TestNoHandlerCallAfterClose closes while messages stream in.
func TestNoHandlerCallAfterClose(t *testing.T) {
	srv := startFake(t)
	sub := open(t, srv, "closing", "a")
	pub := open(t, srv, "closing", "b")
	var closed atomic.Bool
	var late atomic.Int64
	var got atomic.Int64
	h := core.HandlerFuncs{Message: func([]byte) {
		got.Add(1)
		if closed.Load() {
			late.Add(1)
		}
	}}
	if err := sub.Subscribe(ctxT(t), h); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			_ = pub.Publish(ctx, []byte("m"))
			cancel()
		}
	})
	if !eventually(waitTimeout, func() bool { return got.Load() > 10 }) {
		t.Fatal("no messages")
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	close(stop)
	wg.Wait()
	if n := late.Load(); n != 0 {
		t.Fatalf("%d handler calls after Close returned", n)
	}
}

var _ servicebustransport.SubscriptionAdmin = (*fakeAdmin)(nil)

// staticCred is an azcore.TokenCredential that is never asked for a token
// in these tests (nothing dials).
type staticCred struct{}

func (staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestOpenWithCredential: the constructor does no I/O, and Close of a
// Transport that never connected returns at once.
func TestOpenWithCredential(t *testing.T) {
	tr, err := servicebustransport.OpenWithCredential("contoso.servicebus.windows.net", staticCred{}, "ns",
		servicebustransport.WithSubscription("s"), servicebustransport.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Topic() != "backplane.ns" || tr.Client() == nil {
		t.Fatalf("topic %q, client %v", tr.Topic(), tr.Client())
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := servicebustransport.OpenWithCredential("contoso.servicebus.windows.net", nil, "ns",
		servicebustransport.WithSubscription("s")); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("nil credential: %v", err)
	}
}

// TestLinkError: a link error without a connection loss (the subscription
// is deleted under the receiver) is reported as EventDisconnected; once the
// subscription exists again, re-attaching succeeds (EventReconnected) and
// delivery resumes.
func TestLinkError(t *testing.T) {
	srv := startFake(t)
	a := open(t, srv, "linkerr", "a", servicebustransport.WithRecoverWait(10*time.Millisecond),
		servicebustransport.WithInspector(adminClient(t, srv)))
	c := &collector{}
	if err := a.Subscribe(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	srv.RemoveSubscription("backplane.linkerr", "a")
	events := func() []core.EventKind {
		c.mu.Lock()
		defer c.mu.Unlock()
		return append([]core.EventKind(nil), c.events...)
	}
	if !eventually(waitTimeout, func() bool { return len(events()) >= 2 }) {
		t.Fatalf("events %v; want connected, disconnected", events())
	}
	srv.AddTopic("backplane.linkerr", "a")
	if !eventually(waitTimeout, func() bool { return len(events()) >= 3 }) {
		t.Fatalf("events %v; want a reconnect after the subscription is back", events())
	}
	want := []core.EventKind{core.EventConnected, core.EventDisconnected, core.EventReconnected}
	if fmt.Sprint(events()) != fmt.Sprint(want) {
		t.Fatalf("events %v; want %v", events(), want)
	}
	// It was made again (a CreatedAt of its own, if the Transport did not
	// see it missing), and the messages published meanwhile are lost.
	if ev := c.reconnects()[0]; ev.Resumed || !errors.Is(ev.Err, servicebustransport.ErrSubscriptionRecreated) {
		t.Fatalf("EventReconnected %+v; want Resumed false and ErrSubscriptionRecreated", ev)
	}
	if err := a.Publish(ctxT(t), []byte("back")); err != nil {
		t.Fatal(err)
	}
	if !eventually(waitTimeout, func() bool { return c.count() == 1 }) {
		t.Fatal("no delivery after the subscription came back")
	}
}

// TestCloseHandedOffByHandler: a Close that the handler hands to another
// goroutine (a handler never calls Close itself) returns once the handler
// call returned; no handler call follows, and the subscription it
// provisioned is deleted.
func TestCloseHandedOffByHandler(t *testing.T) {
	srv := startFake(t)
	srv.AddTopic("backplane.selfclose")
	var tr *servicebustransport.Transport
	var calls atomic.Int64
	var inHandler atomic.Bool
	var atClose atomic.Int64
	closed := make(chan error, 1)
	h := core.HandlerFuncs{Message: func([]byte) {
		inHandler.Store(true)
		defer inHandler.Store(false)
		if calls.Add(1) == 1 {
			go func() {
				err := tr.Close()
				atClose.Store(calls.Load())
				if err == nil && inHandler.Load() {
					err = errors.New("Close returned while the handler call was running")
				}
				closed <- err
			}()
		}
	}}
	var err error
	tr, err = servicebustransport.Open(srv.ConnectionString(), "selfclose",
		servicebustransport.WithProvisioner(servicebustransport.NewAdminProvisioner(adminClient(t, srv))),
		servicebustransport.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Subscribe(ctxT(t), h); err != nil {
		t.Fatal(err)
	}
	name := tr.Subscription()
	if err := tr.Publish(ctxT(t), []byte("1"), []byte("2"), []byte("3")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close handed off by the handler: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close handed off by the handler did not return")
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n, m := atClose.Load(), calls.Load(); n != m {
		t.Fatalf("%d handler calls after Close returned", m-n)
	}
	if srv.Pending("backplane.selfclose", name) != -1 {
		t.Fatal("the provisioned subscription was not deleted")
	}
}

// TestOptionErrorTexts pins the text of option errors, which name the
// setting at fault.
func TestOptionErrorTexts(t *testing.T) {
	sub := servicebustransport.WithSubscription("s")
	cases := []struct {
		ns   string
		opts []servicebustransport.Option
		want string
	}{
		{"", []servicebustransport.Option{sub}, "backplane: invalid option: servicebustransport: empty namespace and no Topic"},
		{"ns", []servicebustransport.Option{sub, servicebustransport.WithTopic("a?b")}, `backplane: invalid option: servicebustransport: invalid topic name "a?b"`},
		{"ns", nil, "backplane: invalid option: servicebustransport: set exactly one of Subscription and Provisioner"},
		{"ns", []servicebustransport.Option{sub, servicebustransport.WithMaxMessageSize(100)}, "backplane: invalid option: servicebustransport: MaxMessageSize 100 <= 512"},
		{"ns", []servicebustransport.Option{sub, servicebustransport.WithReceiveBatch(5001)}, "backplane: invalid option: servicebustransport: ReceiveBatch 5001 not in 1..5000"},
		{"ns", []servicebustransport.Option{sub, servicebustransport.WithRecoverWait(-time.Second)}, "backplane: invalid option: servicebustransport: RecoverWait -1s < 0"},
		{"ns", []servicebustransport.Option{sub, func(o *servicebustransport.Options) { o.SettleTimeout = -time.Second }}, "backplane: invalid option: servicebustransport: SettleTimeout -1s < 0"},
	}
	for _, c := range cases {
		_, err := servicebustransport.Open("Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=k;UseDevelopmentEmulator=true", c.ns, c.opts...)
		if err == nil || err.Error() != c.want || !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Open = %v; want %q wrapping core.ErrInvalidOption", err, c.want)
		}
	}
}
