package servicebustransport_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/backplane-go/backplane/transports/servicebustransport"
)

// TestSubscriptionDeletedWhileAwayIsProvisionedAgain: a provisioned
// subscription deleted under a running instance (as AutoDeleteOnIdle does
// after a long outage) is provisioned again, and the reconnect reports the
// loss instead of the Transport retrying the deleted one for ever. In
// PeekLock mode the messages of the new subscription are completed.
func TestSubscriptionDeletedWhileAwayIsProvisionedAgain(t *testing.T) {
	for _, peekLock := range []bool{false, true} {
		t.Run(fmt.Sprintf("peek_lock=%v", peekLock), func(t *testing.T) {
			srv := startFake(t)
			const topic = "backplane.gone"
			srv.AddTopic(topic)
			tr, err := servicebustransport.Open(srv.ConnectionString(), "gone",
				servicebustransport.WithProvisioner(servicebustransport.NewAdminProvisioner(adminClient(t, srv))),
				servicebustransport.WithPeekLock(peekLock),
				servicebustransport.WithRecoverWait(10*time.Millisecond),
				servicebustransport.WithClientOptions(fastRetries), servicebustransport.WithLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			c := &collector{}
			if err := tr.Subscribe(ctxT(t), c); err != nil {
				t.Fatal(err)
			}
			first := tr.Subscription()
			srv.RemoveSubscription(topic, first)
			if !eventually(waitTimeout, func() bool { return len(c.reconnects()) > 0 }) {
				t.Fatalf("no EventReconnected after the subscription was deleted (events %v)", c.kinds())
			}
			ev := c.reconnects()[0]
			if ev.Resumed || !errors.Is(ev.Err, servicebustransport.ErrSubscriptionRecreated) {
				t.Fatalf("EventReconnected %+v; want Resumed false and ErrSubscriptionRecreated", ev)
			}
			second := tr.Subscription()
			if second == first || srv.Pending(topic, second) < 0 {
				t.Fatalf("subscription %q after %q was deleted; want a new one on the fake", second, first)
			}
			if err := tr.Publish(ctxT(t), []byte("after")); err != nil {
				t.Fatal(err)
			}
			if !eventually(waitTimeout, func() bool { return c.count() == 1 }) {
				t.Fatal("no delivery from the subscription provisioned again")
			}
			if !eventually(waitTimeout, func() bool { return srv.Pending(topic, second) == 0 }) {
				t.Fatalf("%d messages left in the subscription provisioned again; want them completed", srv.Pending(topic, second))
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if srv.Pending(topic, second) != -1 {
				t.Fatalf("Close left the subscription %q provisioned again", second)
			}
		})
	}
}

// logRecorder is a slog.Handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logRecorder) logged(part string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, part) {
			return true
		}
	}
	return false
}

// TestReconnectSaysWhetherTheSubscriptionSurvived: after an outage the
// EventReconnected never claims a resume, and its Err says whether the
// subscription survived: with an Inspector by its CreatedAt, without one
// only when the Transport saw it missing.
func TestReconnectSaysWhetherTheSubscriptionSurvived(t *testing.T) {
	for _, c := range []struct {
		name      string
		inspector bool
		recreate  bool // delete and make the subscription again while away
		waitGone  bool // until the Transport saw it missing
		want      error
		wantText  string
	}{
		{name: "survived, inspected", inspector: true, want: servicebustransport.ErrResumeUnproven, wantText: "the same subscription"},
		{name: "survived, not inspected", want: servicebustransport.ErrResumeUnproven, wantText: "no Options.Inspector"},
		{name: "recreated, inspected", inspector: true, recreate: true, want: servicebustransport.ErrSubscriptionRecreated, wantText: "created at"},
		{name: "recreated, seen missing", recreate: true, waitGone: true, want: servicebustransport.ErrSubscriptionRecreated, wantText: "not found while away"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startFake(t)
			logs := &logRecorder{}
			opts := []servicebustransport.Option{
				servicebustransport.WithRecoverWait(10 * time.Millisecond),
				servicebustransport.WithLogger(slog.New(logs)),
			}
			if c.inspector {
				opts = append(opts, servicebustransport.WithInspector(adminClient(t, srv)))
			}
			a := open(t, srv, "survive", "a", opts...)
			b := open(t, srv, "survive", "b")
			ca := &collector{}
			if err := a.Subscribe(ctxT(t), ca); err != nil {
				t.Fatal(err)
			}
			if err := b.Subscribe(ctxT(t), &collector{}); err != nil {
				t.Fatal(err)
			}
			const path = "backplane.survive/Subscriptions/a"
			if c.waitGone {
				srv.RemoveSubscription("backplane.survive", "a")
				if !eventually(waitTimeout, func() bool { return logs.logged("deleted while the instance was away") }) {
					t.Fatal("the Transport did not log the missing subscription")
				}
			} else {
				srv.Refuse(time.Hour)
				if !eventually(waitTimeout, func() bool { return srv.DropEntity(path) > 0 }) {
					t.Fatal("no connection to drop")
				}
			}
			if !eventually(waitTimeout, func() bool { return len(ca.kinds()) >= 2 }) {
				t.Fatalf("events %v; want connected, disconnected", ca.kinds())
			}
			if c.recreate && !c.waitGone {
				srv.RemoveSubscription("backplane.survive", "a")
			}
			if c.recreate {
				srv.AddTopic("backplane.survive", "a")
			}
			// b kept its connection: what it publishes now waits in a's
			// subscription.
			if err := b.Publish(ctxT(t), []byte("while-away")); err != nil {
				t.Fatal(err)
			}
			srv.Refuse(0)
			if !eventually(waitTimeout, func() bool { return len(ca.reconnects()) > 0 }) {
				t.Fatalf("no EventReconnected (events %v)", ca.kinds())
			}
			ev := ca.reconnects()[0]
			if ev.Resumed || !errors.Is(ev.Err, c.want) || !strings.Contains(ev.Err.Error(), c.wantText) {
				t.Fatalf("EventReconnected %+v; want Resumed false and %v saying %q", ev, c.want, c.wantText)
			}
			if !eventually(waitTimeout, func() bool { return ca.count() == 1 }) {
				t.Fatal("the message published while away did not arrive")
			}
		})
	}
}

// TestReconnectCountsDeadLettered: messages dead-lettered while the
// instance was away are named in the EventReconnected's Err.
func TestReconnectCountsDeadLettered(t *testing.T) {
	srv := startFake(t)
	a := open(t, srv, "dlq", "a", servicebustransport.WithRecoverWait(10*time.Millisecond),
		servicebustransport.WithInspector(adminClient(t, srv)), servicebustransport.WithPeekLock(true))
	b := open(t, srv, "dlq", "b")
	ca := &collector{}
	if err := a.Subscribe(ctxT(t), ca); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctxT(t), &collector{}); err != nil {
		t.Fatal(err)
	}
	srv.Refuse(time.Hour)
	if !eventually(waitTimeout, func() bool { return srv.DropEntity("backplane.dlq/Subscriptions/a") > 0 }) {
		t.Fatal("no connection to drop")
	}
	if !eventually(waitTimeout, func() bool { return len(ca.kinds()) >= 2 }) {
		t.Fatalf("events %v; want connected, disconnected", ca.kinds())
	}
	if err := b.Publish(ctxT(t), []byte("dead"), []byte("alive")); err != nil {
		t.Fatal(err)
	}
	if n := srv.DeadLetter("backplane.dlq", "a", 1); n != 1 {
		t.Fatalf("dead-lettered %d messages; want 1", n)
	}
	srv.Refuse(0)
	if !eventually(waitTimeout, func() bool { return len(ca.reconnects()) > 0 }) {
		t.Fatalf("no EventReconnected (events %v)", ca.kinds())
	}
	ev := ca.reconnects()[0]
	if ev.Resumed || !errors.Is(ev.Err, servicebustransport.ErrResumeUnproven) || !strings.Contains(ev.Err.Error(), "1 messages were dead-lettered") {
		t.Fatalf("EventReconnected %+v; want ErrResumeUnproven naming 1 dead-lettered message", ev)
	}
}

// failingInspector cannot read subscriptions.
type failingInspector struct{ err error }

func (f failingInspector) GetSubscriptionRuntimeProperties(context.Context, string, string, *admin.GetSubscriptionRuntimePropertiesOptions) (*admin.GetSubscriptionRuntimePropertiesResponse, error) {
	return nil, f.err
}

// TestSubscribeFailsWithoutInspection: an Inspector that cannot read the
// subscription fails Subscribe with an error that names the setting.
func TestSubscribeFailsWithoutInspection(t *testing.T) {
	srv := startFake(t)
	boom := errors.New("403 Forbidden")
	a := open(t, srv, "noinspect", "a", servicebustransport.WithInspector(failingInspector{boom}))
	err := a.Subscribe(ctxT(t), &collector{})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "Options.Inspector") {
		t.Fatalf("Subscribe: %v; want the Inspector's error, naming Options.Inspector", err)
	}
}
