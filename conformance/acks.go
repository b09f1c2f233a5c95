package conformance

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// muteAcks is a Backplane that drops what its instance publishes as
// acknowledgements: a peer that stops acknowledging, or, with hello too,
// a peer of an earlier release, which never says it can. It hides a
// Sender: the engine publishes through Publish.
type muteAcks struct {
	core.Backplane
	hello bool
}

func (m muteAcks) Publish(ctx context.Context, payloads ...[]byte) error {
	keep := payloads[:0:0]
	for _, p := range payloads {
		env, err := core.DecodeEnvelope(p)
		if err == nil && env.Op == core.OpInvalidate && len(env.Keys) > 0 && env.Keys[0] == "\x00backplane.ack" &&
			(len(env.Keys) > 1 || m.hello) {
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		return nil
	}
	return m.Backplane.Publish(ctx, keep...)
}

// caseAckedMutePeer: an acknowledged call that a live peer does not
// confirm fails, naming the peer, instead of hanging; the invalidation
// still reaches the peer. A peer that never said it can acknowledge (an
// earlier release) fails the call at once.
func (s *cacheSuite) caseAckedMutePeer(t *testing.T) {
	t.Parallel()
	for _, earlier := range []bool{false, true} {
		ns := newNamespace(t)
		a, _ := s.openOn(t, ns, 0, core.WithAckTimeout(time.Second))
		mute := muteAcks{Backplane: s.h.Backplane.New(t, ns), hello: earlier}
		ctx, cancel := context.WithTimeout(context.Background(), s.h.Backplane.bound())
		b, err := core.Open(ctx, s.h.NewStore(t), mute, append([]core.Option{
			core.WithHeartbeat(100*time.Millisecond, 500*time.Millisecond),
			core.WithLogger(slog.New(slog.DiscardHandler)),
		}, s.h.Options...)...)
		cancel()
		if err != nil {
			t.Fatalf("conformance: open the mute instance: %v", err)
		}
		t.Cleanup(func() { _ = closeWithin(b, 10*time.Second) })
		s.waitFor(t, "a to hear the mute instance", func() bool { return a.Health().Peers == 1 })
		s.fill(t, b, "k", "v")
		ctx, cancel = context.WithTimeout(context.Background(), s.h.Backplane.bound())
		err = a.InvalidateAcked(ctx, "k")
		cancel()
		var ae *core.AckError
		if !errors.As(err, &ae) || len(ae.Peers) != 1 || ae.Peers[0].ID != b.ID().String() {
			t.Fatalf("InvalidateAcked with a peer that does not acknowledge (earlier release: %v) = %v; want an *AckError naming it", earlier, err)
		}
		if ae.Err != nil {
			t.Fatalf("InvalidateAcked ran into the caller's deadline (%v) instead of AckTimeout", ae.Err)
		}
		// A peer that does not answer may also be judged quiet, when its
		// heartbeats are late on a loaded machine: both name it.
		want := []string{"no confirmation", "went quiet"}
		if earlier {
			want = []string{"earlier release"}
		}
		if !slices.Contains(want, ae.Peers[0].Reason) {
			t.Fatalf("reason %q, want one of %q", ae.Peers[0].Reason, want)
		}
		s.waitFor(t, "the invalidation to reach the mute instance", func() bool { return absent(b, "k") })
	}
}
