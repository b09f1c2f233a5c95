package core_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// fastBeat: heartbeats often enough that the tests' peer tables are
// complete quickly.
var fastBeat = core.WithHeartbeat(20*time.Millisecond, 200*time.Millisecond)

// ackBackplane wraps a transport: it can hold back delivery (a slow
// peer), and drop what its instance publishes as acknowledgements (a peer
// that stops acknowledging) or as its hello too (a peer of an earlier
// release).
type ackBackplane struct {
	*memtransport.Transport
	delay     time.Duration // of each invalidation's delivery
	latency   time.Duration // of each Publish
	dropAcks  atomic.Bool   // acknowledgements that confirm something
	dropHello atomic.Bool   // acknowledgements for nobody
}

func isAck(p []byte) (ack, hello bool) {
	env, err := core.DecodeEnvelope(p)
	if err != nil || env.Op != core.OpInvalidate || len(env.Keys) == 0 || env.Keys[0] != "\x00backplane.ack" {
		return false, false
	}
	return true, len(env.Keys) == 1
}

func (b *ackBackplane) Publish(ctx context.Context, payloads ...[]byte) error {
	var keep [][]byte
	for _, p := range payloads {
		ack, hello := isAck(p)
		if (ack && !hello && b.dropAcks.Load()) || (hello && b.dropHello.Load()) {
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		return nil
	}
	time.Sleep(b.latency)
	return b.Transport.Publish(ctx, keep...)
}

func (b *ackBackplane) Subscribe(ctx context.Context, h core.Handler) error {
	if b.delay == 0 {
		return b.Transport.Subscribe(ctx, h)
	}
	return b.Transport.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) {
			if env, err := core.DecodeEnvelope(p); err == nil && env.Op == core.OpInvalidate {
				time.Sleep(b.delay)
			}
			h.HandleMessage(p)
		},
		Event: h.HandleEvent,
	})
}

func openAck(t *testing.T, hub *memtransport.Hub, b *ackBackplane, opts ...core.Option) *core.Cache {
	t.Helper()
	if b == nil {
		b = &ackBackplane{}
	}
	b.Transport = hub.New(ns)
	c, err := core.Open(context.Background(), newStore(t), b, append([]core.Option{core.WithLogger(discard), fastBeat}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func peersKnown(t *testing.T, n int, cs ...*core.Cache) {
	t.Helper()
	for _, c := range cs {
		eventually(t, "every peer heard", func() bool { return c.Health().Peers == n })
	}
}

// Right after InvalidateAcked returns nil, a slow peer has evicted too;
// after a plain Invalidate it has not yet.
func TestInvalidateAckedWaitsForSlowPeer(t *testing.T) {
	hub := memtransport.NewHub()
	a := openAck(t, hub, nil)
	slow := openAck(t, hub, &ackBackplane{delay: 30 * time.Millisecond})
	peersKnown(t, 1, a, slow)
	ctx := context.Background()
	for i, acked := range []bool{false, true} {
		key := []string{"plain", "acked"}[i]
		mustFill(t, slow, key)
		var err error
		if acked {
			err = a.InvalidateAcked(ctx, key)
		} else {
			err = a.Invalidate(ctx, key)
		}
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		_, cached := slow.Get(key)
		if acked && cached {
			t.Fatal("the slow peer still serves the key after InvalidateAcked returned")
		}
		if !acked && !cached {
			t.Log("the slow peer evicted before the plain Invalidate returned (a loaded machine): the comparison shows nothing this run")
		}
	}
}

func mustFill(t *testing.T, c *core.Cache, key string) {
	t.Helper()
	if _, err := c.GetOrLoad(context.Background(), key, load("v")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the key cached", func() bool { _, ok := c.Get(key); return ok })
}

// Keys, tags and Clear: each acknowledged form returns once every peer
// applied it.
func TestAckedForms(t *testing.T) {
	hub := memtransport.NewHub()
	a := openAck(t, hub, nil)
	b := openAck(t, hub, &ackBackplane{delay: 5 * time.Millisecond})
	c := openAck(t, hub, &ackBackplane{delay: 5 * time.Millisecond})
	peersKnown(t, 2, a, b, c)
	ctx := context.Background()
	for _, peer := range []*core.Cache{b, c} {
		if _, err := peer.GetOrLoadWithTags(ctx, "tagged", []string{"t"}, load("v")); err != nil {
			t.Fatal(err)
		}
		mustFill(t, peer, "other")
	}
	if err := a.InvalidateTagsAcked(ctx, "t"); err != nil {
		t.Fatalf("InvalidateTagsAcked: %v", err)
	}
	for _, peer := range []*core.Cache{b, c} {
		if _, ok := peer.Get("tagged"); ok {
			t.Fatal("a peer serves an entry of the tag after InvalidateTagsAcked returned")
		}
	}
	if err := a.ClearAcked(ctx); err != nil {
		t.Fatalf("ClearAcked: %v", err)
	}
	for _, peer := range []*core.Cache{b, c} {
		if _, ok := peer.Get("other"); ok {
			t.Fatal("a peer serves an entry after ClearAcked returned")
		}
	}
	if s := b.Stats(); s.AcksSent == 0 || a.Stats().AcksReceived == 0 {
		t.Fatalf("acks sent %d by b, received %d by a", s.AcksSent, a.Stats().AcksReceived)
	}
}

// A peer that stops acknowledging makes the call fail by the deadline,
// naming it; the invalidation still reached it.
func TestAckedFailsForSilentPeer(t *testing.T) {
	hub := memtransport.NewHub()
	a := openAck(t, hub, nil, core.WithAckTimeout(300*time.Millisecond))
	mute := &ackBackplane{}
	m := openAck(t, hub, mute)
	peersKnown(t, 1, a, m)
	mustFill(t, m, "k")
	mute.dropAcks.Store(true)
	err := a.InvalidateAcked(context.Background(), "k")
	var ae *core.AckError
	if !errors.As(err, &ae) || !errors.Is(err, core.ErrNotAcknowledged) {
		t.Fatalf("InvalidateAcked with a mute peer: %v, want an *AckError", err)
	}
	if len(ae.Peers) != 1 || ae.Peers[0].Reason != "no confirmation" || !strings.Contains(err.Error(), ae.Peers[0].ID[:8]) {
		t.Fatalf("AckError %+v (%v), want the mute peer, no confirmation", ae, err)
	}
	eventually(t, "the invalidation to reach the mute peer", func() bool { _, ok := m.Get("k"); return !ok })
	// The caller's own deadline bounds the call too.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.InvalidateAcked(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, core.ErrNotAcknowledged) {
		t.Fatalf("InvalidateAcked past the caller's deadline: %v", err)
	}
}

// A peer of an earlier release never says it acknowledges: the call fails
// at once, naming it, rather than waiting for the deadline.
func TestAckedFailsAtOnceForEarlierRelease(t *testing.T) {
	hub := memtransport.NewHub()
	a := openAck(t, hub, nil, core.WithAckTimeout(time.Hour))
	old := &ackBackplane{}
	old.dropAcks.Store(true)
	old.dropHello.Store(true)
	openAck(t, hub, old)
	peersKnown(t, 1, a)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := a.InvalidateAcked(ctx, "k")
	var ae *core.AckError
	if !errors.As(err, &ae) || len(ae.Peers) != 1 || ae.Peers[0].Reason != "earlier release" || ae.Err != nil {
		t.Fatalf("InvalidateAcked with an earlier release: %v, want it named as such before any deadline", err)
	}
}

// A peer that leaves during the call counts as confirmed; one that joins
// is asked too.
func TestAckedPeersComeAndGo(t *testing.T) {
	hub := memtransport.NewHub()
	a := openAck(t, hub, nil)
	leaving := &ackBackplane{}
	l := openAck(t, hub, leaving)
	peersKnown(t, 1, a, l)
	leaving.dropAcks.Store(true) // it would never confirm, but it leaves
	done := make(chan error, 1)
	go func() { done <- a.InvalidateAcked(context.Background(), "k") }()
	_ = l.Close()
	if err := <-done; err != nil {
		t.Fatalf("InvalidateAcked while the only peer left: %v", err)
	}
	joiner := openAck(t, hub, &ackBackplane{delay: 5 * time.Millisecond})
	peersKnown(t, 1, a, joiner)
	mustFill(t, joiner, "j")
	if err := a.InvalidateAcked(context.Background(), "j"); err != nil {
		t.Fatalf("InvalidateAcked with a new peer: %v", err)
	}
	if _, ok := joiner.Get("j"); ok {
		t.Fatal("the new peer serves the key after InvalidateAcked returned")
	}
}

// A burst of concurrent acknowledged calls costs few acknowledgements.
func TestAcksAreCoalesced(t *testing.T) {
	hub := memtransport.NewHub()
	// Publishing takes a while, as over a network: calls and answers
	// that arrive meanwhile go out together.
	a := openAck(t, hub, &ackBackplane{latency: 2 * time.Millisecond})
	b := openAck(t, hub, &ackBackplane{latency: 2 * time.Millisecond})
	peersKnown(t, 1, a, b)
	before := b.Stats().AcksSent
	const calls = 50
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() { errs <- a.InvalidateAcked(context.Background(), "k"+string(rune('a'+i%26))) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if sent := b.Stats().AcksSent - before; sent >= calls {
		t.Fatalf("%d acknowledgements for %d concurrent calls: not coalesced", sent, calls)
	} else {
		t.Logf("%d acknowledgements for %d concurrent calls", sent, calls)
	}
}

func TestAckedNeedsHeartbeats(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	if err := a.InvalidateAcked(context.Background(), "k"); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "HeartbeatInterval") {
		t.Fatalf("InvalidateAcked without heartbeats: %v, want an error naming HeartbeatInterval", err)
	}
}

// An instance of an earlier release reads requests and acknowledgements
// as invalidations of keys it does not have: it drops nothing, counts no
// rejection, and answers nothing.
func TestEarlierReleaseReadsAckMessages(t *testing.T) {
	id := core.NewSourceID()
	for _, keys := range [][]string{
		{"product:1", "\x00backplane.ack?"},
		{"\x00backplane.ack", "\x00" + id.String() + ":42"},
		{"\x00backplane.ack"},
	} {
		p, err := (&core.Envelope{Op: core.OpInvalidate, Source: id, Seq: 1, Keys: keys}).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		for name, decode := range map[string]func([]byte) (core.Envelope, error){"earlier": core.DecodeEnvelopeV1, "this": core.DecodeEnvelope} {
			env, err := decode(p)
			if err != nil || env.Op != core.OpInvalidate || len(env.Keys) != len(keys) {
				t.Fatalf("%s release decodes %q as %+v, %v", name, keys, env, err)
			}
		}
	}
}

// An instance whose own link was down longer than a heartbeat timeout
// has heard no peer meanwhile, but that does not make them gone: right
// after its link is back (over a log, without a flush), an acknowledged
// call still waits for them.
func TestAckedAfterOwnOutageWaitsForPeers(t *testing.T) {
	hub := memtransport.NewHub(memtransport.WithDurable(1000))
	ab := &ackBackplane{}
	a := openAck(t, hub, ab)
	b := openAck(t, hub, &ackBackplane{delay: 30 * time.Millisecond})
	peersKnown(t, 1, a, b)
	mustFill(t, b, "k")
	ab.Transport.Disconnect(nil)
	eventually(t, "a disconnected", func() bool { return !a.Health().Connected })
	time.Sleep(400 * time.Millisecond) // two heartbeat timeouts without hearing anyone
	// Had a taken b for gone, an acknowledged call right after the
	// reconnect could find no peer to wait for, before b's next message
	// comes through.
	if n, lost := a.Health().Peers, a.Stats().PeersLost; n != 1 || lost != 0 {
		t.Fatalf("after its own outage a knows %d peers and counts %d lost; want b still known", n, lost)
	}
	ab.Transport.Reconnect()
	eventually(t, "a reconnected", func() bool { return a.Health().Connected })
	if err := a.InvalidateAcked(context.Background(), "k"); err != nil {
		t.Fatalf("InvalidateAcked after an outage: %v", err)
	}
	if _, ok := b.Get("k"); ok {
		t.Fatal("the peer still serves the key: the call did not wait for a peer it had not heard during its own outage")
	}
}

// With signing, an acknowledgement cannot be forged: a rogue publisher's
// acknowledgement under a mute peer's ID confirms nothing.
func TestForgedAckConfirmsNothing(t *testing.T) {
	hub := memtransport.NewHub()
	kr := keyring(t, keyOld)
	a := openAck(t, hub, nil, core.WithKeyring(kr), core.WithAckTimeout(300*time.Millisecond))
	mute := &ackBackplane{}
	m := openAck(t, hub, mute, core.WithKeyring(kr))
	peersKnown(t, 1, a, m)
	mute.dropAcks.Store(true)
	rogue := hub.New(ns)
	t.Cleanup(func() { _ = rogue.Close() })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			forged, err := (&core.Envelope{Op: core.OpInvalidate, Source: m.ID(), Seq: 1 << 40, Sent: time.Now(),
				Keys: []string{"\x00backplane.ack", "\x00" + a.ID().String() + ":" + strconv.FormatUint(1<<40+seq, 10)}}).MarshalBinary()
			if err != nil {
				t.Error(err)
				return
			}
			_ = rogue.Publish(context.Background(), forged)
		}
	})
	err := a.InvalidateAcked(context.Background(), "k")
	close(stop)
	wg.Wait()
	var ae *core.AckError
	if !errors.As(err, &ae) || len(ae.Peers) != 1 || ae.Peers[0].ID != m.ID().String() {
		t.Fatalf("InvalidateAcked with forged acknowledgements of a mute peer: %v; want it unconfirmed", err)
	}
	if a.Stats().Rejected == 0 {
		t.Fatal("the forged acknowledgements were not rejected")
	}
}
