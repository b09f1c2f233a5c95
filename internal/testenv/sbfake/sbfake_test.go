package sbfake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/internal/testenv/sbfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 20 * time.Second

func start(t *testing.T, opts ...sbfake.Option) *sbfake.Server {
	t.Helper()
	s, err := sbfake.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *sbfake.Server) *azservicebus.Client {
	t.Helper()
	c, err := azservicebus.NewClientFromConnectionString(s.ConnectionString(), &azservicebus.ClientOptions{
		RetryOptions: azservicebus.RetryOptions{MaxRetries: 20, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

func receiver(t *testing.T, c *azservicebus.Client, topic, sub string, mode azservicebus.ReceiveMode) *azservicebus.Receiver {
	t.Helper()
	r, err := c.NewReceiverForSubscription(topic, sub, &azservicebus.ReceiverOptions{ReceiveMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func sender(t *testing.T, c *azservicebus.Client, topic string) *azservicebus.Sender {
	t.Helper()
	s, err := c.NewSender(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// receiveN receives until it has n messages.
func receiveN(t *testing.T, r *azservicebus.Receiver, n int) []*azservicebus.ReceivedMessage {
	t.Helper()
	c := ctx(t)
	var out []*azservicebus.ReceivedMessage
	for len(out) < n {
		msgs, err := r.ReceiveMessages(c, n-len(out), &azservicebus.ReceiveMessagesOptions{TimeAfterFirstMessage: time.Millisecond})
		if err != nil {
			t.Fatalf("receive (have %d of %d): %v", len(out), n, err)
		}
		out = append(out, msgs...)
	}
	return out
}

func TestFanOutToSubscriptions(t *testing.T) {
	s := start(t)
	s.AddTopic("t", "a", "b")
	c := client(t, s)
	ra := receiver(t, c, "t", "a", azservicebus.ReceiveModeReceiveAndDelete)
	rb := receiver(t, c, "t", "b", azservicebus.ReceiveModeReceiveAndDelete)
	if err := sender(t, c, "t").SendMessage(ctx(t), &azservicebus.Message{Body: []byte("hello")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*azservicebus.Receiver{ra, rb} {
		m := receiveN(t, r, 1)[0]
		if string(m.Body) != "hello" {
			t.Fatalf("body %q", m.Body)
		}
		if m.SequenceNumber == nil || *m.SequenceNumber != 1 {
			t.Fatalf("sequence number %v", m.SequenceNumber)
		}
	}
	if n := s.Pending("t", "a") + s.Pending("t", "b"); n != 0 {
		t.Fatalf("%d messages left after ReceiveAndDelete", n)
	}
}

func TestPeekLockCompleteAndAbandon(t *testing.T) {
	s := start(t)
	s.AddTopic("t", "a")
	c := client(t, s)
	r := receiver(t, c, "t", "a", azservicebus.ReceiveModePeekLock)
	if err := sender(t, c, "t").SendMessage(ctx(t), &azservicebus.Message{Body: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	m := receiveN(t, r, 1)[0]
	if err := r.AbandonMessage(ctx(t), m, nil); err != nil {
		t.Fatalf("abandon: %v", err)
	}
	m = receiveN(t, r, 1)[0]
	if m.DeliveryCount != 2 { // the first delivery counts as 1
		t.Fatalf("delivery count after abandon: %d", m.DeliveryCount)
	}
	if s.Pending("t", "a") != 1 {
		t.Fatalf("locked message not pending: %d", s.Pending("t", "a"))
	}
	if err := r.CompleteMessage(ctx(t), m, nil); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if n := s.Pending("t", "a"); n != 0 {
		t.Fatalf("%d messages left after Complete", n)
	}
	// Management operations reach the fake too.
	peeked, err := r.PeekMessages(ctx(t), 1, nil)
	if err != nil || len(peeked) != 0 {
		t.Fatalf("peek: %v, %d messages", err, len(peeked))
	}
}

func TestBatchAndLargeMessage(t *testing.T) {
	s := start(t)
	s.AddTopic("t", "a")
	c := client(t, s)
	r := receiver(t, c, "t", "a", azservicebus.ReceiveModeReceiveAndDelete)
	snd := sender(t, c, "t")
	b, err := snd.NewMessageBatch(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := b.AddMessage(&azservicebus.Message{Body: fmt.Appendf(nil, "m%d", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := snd.SendMessageBatch(ctx(t), b, nil); err != nil {
		t.Fatal(err)
	}
	got := receiveN(t, r, 10)
	for i, m := range got {
		if want := fmt.Sprintf("m%d", i); string(m.Body) != want {
			t.Fatalf("message %d: %q, want %q", i, m.Body, want)
		}
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 200*1024/16) // 200 KiB: several frames both ways
	if err := snd.SendMessage(ctx(t), &azservicebus.Message{Body: big}, nil); err != nil {
		t.Fatal(err)
	}
	if m := receiveN(t, r, 1)[0]; !bytes.Equal(m.Body, big) {
		t.Fatalf("large message: got %d bytes", len(m.Body))
	}

	tooBig := make([]byte, sbfake.DefaultMaxMessageSize+1)
	if err := snd.SendMessage(ctx(t), &azservicebus.Message{Body: tooBig}, nil); !errors.Is(err, azservicebus.ErrMessageTooLarge) {
		t.Fatalf("message over max-message-size: %v", err)
	}
}

func TestUnknownEntity(t *testing.T) {
	s := start(t)
	s.AddTopic("t", "a")
	c := client(t, s)
	err := sender(t, c, "nope").SendMessage(ctx(t), &azservicebus.Message{Body: []byte("x")}, nil)
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Condition != amqp.ErrCondNotFound {
		t.Fatalf("send to unknown topic: %v", err)
	}
	r := receiver(t, c, "t", "nope", azservicebus.ReceiveModeReceiveAndDelete)
	_, err = r.ReceiveMessages(ctx(t), 1, nil)
	if !errors.As(err, &amqpErr) || amqpErr.Condition != amqp.ErrCondNotFound {
		t.Fatalf("receive from unknown subscription: %v", err)
	}
}

func TestRecoversFromDroppedConnections(t *testing.T) {
	s := start(t, sbfake.WithHeartbeat(50*time.Millisecond))
	s.AddTopic("t", "a")
	c := client(t, s)
	r := receiver(t, c, "t", "a", azservicebus.ReceiveModeReceiveAndDelete)
	snd := sender(t, c, "t")
	if err := snd.SendMessage(ctx(t), &azservicebus.Message{Body: []byte("before")}, nil); err != nil {
		t.Fatal(err)
	}
	receiveN(t, r, 1)
	if n := s.DropAll(); n != 1 {
		t.Fatalf("dropped %d connections, want 1", n)
	}
	s.Refuse(200 * time.Millisecond)
	if err := snd.SendMessage(ctx(t), &azservicebus.Message{Body: []byte("after")}, nil); err != nil {
		t.Fatalf("send after drop: %v", err)
	}
	if m := receiveN(t, r, 1)[0]; string(m.Body) != "after" {
		t.Fatalf("got %q", m.Body)
	}
	if s.Accepted() < 2 {
		t.Fatalf("accepted %d connections; the client did not reconnect", s.Accepted())
	}
}

// TestSmallFrames: with a 1 KiB frame size on the server, the client splits
// what it sends and the server splits what it delivers.
func TestSmallFrames(t *testing.T) {
	s := start(t, sbfake.WithMaxFrameSize(1024))
	s.AddTopic("t", "a")
	c := client(t, s)
	r := receiver(t, c, "t", "a", azservicebus.ReceiveModePeekLock)
	body := bytes.Repeat([]byte("abcdefgh"), 4096) // 32 KiB: 32+ frames each way
	if err := sender(t, c, "t").SendMessage(ctx(t), &azservicebus.Message{Body: body}, nil); err != nil {
		t.Fatal(err)
	}
	m := receiveN(t, r, 1)[0]
	if !bytes.Equal(m.Body, body) {
		t.Fatalf("got %d bytes", len(m.Body))
	}
	if err := r.CompleteMessage(ctx(t), m, nil); err != nil {
		t.Fatal(err)
	}
}
