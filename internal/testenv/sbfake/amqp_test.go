package sbfake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/backplane-go/backplane/internal/testenv/sbfake"
)

// dial connects with go-amqp directly, which lets a test set the idle
// timeout and the settle modes.
func dial(t *testing.T, s *sbfake.Server, idle time.Duration) *amqp.Session {
	t.Helper()
	c, err := amqp.Dial(ctx(t), "amqp://"+s.Addr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous(), IdleTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	se, err := c.NewSession(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return se
}

// TestHeartbeats: a client that requires a frame every 200 ms stays
// connected through a second without traffic.
func TestHeartbeats(t *testing.T) {
	s := start(t, sbfake.WithHeartbeat(50*time.Millisecond))
	s.AddTopic("t", "a")
	se := dial(t, s, 200*time.Millisecond)
	r, err := se.NewReceiver(ctx(t), "t/Subscriptions/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	idle, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := r.Receive(idle, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle receive: %v; want the deadline, not a connection error", err)
	}
	snd, err := se.NewSender(ctx(t), "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.Send(ctx(t), amqp.NewMessage([]byte("x")), nil); err != nil {
		t.Fatalf("send after idling: %v", err)
	}
	m, err := r.Receive(ctx(t), nil)
	if err != nil || string(m.GetData()) != "x" {
		t.Fatalf("receive after idling: %v", err)
	}
	if err := r.AcceptMessage(ctx(t), m); err != nil {
		t.Fatalf("accept: %v", err)
	}
	// Settled by the client (mode first): Accept returns without waiting.
	if !eventually(func() bool { return s.Pending("t", "a") == 0 }) {
		t.Fatalf("pending after accept: %d", s.Pending("t", "a"))
	}
}

// TestSettleModes: with rcv-settle-mode second the server confirms each
// settlement; released messages come back first without a higher delivery
// count; a link that goes away returns its locked messages.
func TestSettleModes(t *testing.T) {
	s := start(t)
	s.AddTopic("t", "a")
	se := dial(t, s, 0)
	snd, err := se.NewSender(ctx(t), "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"1", "2"} {
		if err := snd.Send(ctx(t), amqp.NewMessage([]byte(b)), nil); err != nil {
			t.Fatal(err)
		}
	}
	r, err := se.NewReceiver(ctx(t), "t/Subscriptions/a", &amqp.ReceiverOptions{
		SettlementMode: amqp.ReceiverSettleModeSecond.Ptr(), Credit: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Receive(ctx(t), nil)
	if err != nil || string(m.GetData()) != "1" {
		t.Fatalf("first: %v", err)
	}
	if err := r.ReleaseMessage(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	m, err = r.Receive(ctx(t), nil)
	if err != nil || string(m.GetData()) != "1" || m.Header.DeliveryCount != 0 {
		t.Fatalf("after release: %q, delivery count %d, %v", m.GetData(), m.Header.DeliveryCount, err)
	}
	if err := r.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return s.Pending("t", "a") == 2 }) {
		t.Fatalf("pending after the link closed with a locked message: %d", s.Pending("t", "a"))
	}
}

// TestRemoveSubscriptionAndDropEntity: deleting a subscription detaches
// its receivers with amqp:not-found; DropEntity closes only the
// connections with a link to the entity.
func TestRemoveSubscriptionAndDropEntity(t *testing.T) {
	s := start(t)
	s.AddTopic("t", "a", "b")
	seA, seB := dial(t, s, 0), dial(t, s, 0)
	ra, err := seA.NewReceiver(ctx(t), "t/Subscriptions/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seB.NewReceiver(ctx(t), "t/Subscriptions/b", nil); err != nil {
		t.Fatal(err)
	}
	if n := s.DropEntity("t/subscriptions/B"); n != 1 {
		t.Fatalf("DropEntity closed %d connections; want 1", n)
	}
	if !eventually(func() bool { return s.Connections() == 1 }) {
		t.Fatalf("%d connections left; want 1", s.Connections())
	}
	s.RemoveSubscription("t", "a")
	_, err = ra.Receive(ctx(t), nil)
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Condition != amqp.ErrCondNotFound {
		t.Fatalf("receive from a deleted subscription: %v", err)
	}
	if s.Pending("t", "a") != -1 {
		t.Fatal("deleted subscription still reports pending messages")
	}
}

func eventually(cond func() bool) bool {
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
