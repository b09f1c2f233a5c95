package conformance

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// runHostile runs the engine against a rogue: another instance of the
// harness's transport, on the same namespace, that publishes what it
// likes. The engine must keep its memory bounded, its liveness checks and
// its gap detection working, count every wipe, shrug off replays when
// messages are signed, and say in Health when it cannot hear a peer.
func (s *cacheSuite) runHostile(t *testing.T) {
	t.Run("ForgedOwnEchoIgnored", s.caseForgedOwnEcho)
	t.Run("ForgedSequenceNumberDoesNotBlindGapDetection", s.caseForgedSeq)
	t.Run("RemoteClearCounted", s.caseRemoteClearCounted)
	t.Run("ForgedPeersBounded", s.caseForgedPeers)
	t.Run("SignedReplaysCostNothing", s.caseSignedReplays)
	t.Run("MismatchedKeysUnhealthy", s.caseMismatchedKeys)
}

// rogue is a subscribed backplane on ns that records what it receives.
type rogue struct {
	t  *testing.T
	bp core.Backplane
	mu sync.Mutex
	// heard are the payloads received, in order.
	heard [][]byte
}

func (s *cacheSuite) rogue(t *testing.T, ns string) *rogue {
	t.Helper()
	r := &rogue{t: t, bp: s.h.Backplane.New(t, ns)}
	ctx, cancel := context.WithTimeout(context.Background(), s.h.Backplane.bound())
	defer cancel()
	err := r.bp.Subscribe(ctx, core.HandlerFuncs{Message: func(p []byte) {
		r.mu.Lock()
		r.heard = append(r.heard, slices.Clone(p))
		r.mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("conformance: subscribe the rogue: %v", err)
	}
	t.Cleanup(func() { _ = r.bp.Close() })
	return r
}

// send publishes envelopes as they are, unsigned.
func (r *rogue) send(envs ...core.Envelope) {
	r.t.Helper()
	payloads := make([][]byte, len(envs))
	for i := range envs {
		p, err := envs[i].MarshalBinary()
		if err != nil {
			r.t.Fatalf("conformance: encode a forged envelope: %v", err)
		}
		payloads[i] = p
	}
	r.raw(payloads...)
}

// raw publishes payloads as they are.
func (r *rogue) raw(payloads ...[]byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(payloads) > 0 {
		n := min(len(payloads), 64)
		if err := r.bp.Publish(ctx, payloads[:n]...); err != nil {
			r.t.Fatalf("conformance: the rogue's publish: %v", err)
		}
		payloads = payloads[n:]
	}
}

// from returns the payloads heard so far whose source is id.
func (r *rogue) from(id core.SourceID) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, p := range r.heard {
		if env, err := core.DecodeEnvelope(p); err == nil && env.Source == id {
			out = append(out, p)
		}
	}
	return out
}

// A message under an instance's own ID that it did not send (here one
// published an hour ahead, which would keep the link looking fresh for an
// hour) is rejected: it is no own echo.
func (s *cacheSuite) caseForgedOwnEcho(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	c, _ := s.openOn(t, ns, 0)
	r := s.rogue(t, ns)
	s.waitFor(t, "own heartbeats to come back", func() bool { return c.Stats().IgnoredOwn > 0 })
	r.send(core.Envelope{Op: core.OpHeartbeat, Source: c.ID(), Seq: 1, Sent: time.Now().Add(time.Hour)})
	s.waitFor(t, "the forged own message to be rejected", func() bool { return c.Stats().Rejected >= 1 })
	h := c.Health()
	if !h.Rejecting || !strings.Contains(h.RejectCause, "forged") {
		t.Fatalf("health after a forged own message: Rejecting %v, cause %q; want the forgery named", h.Rejecting, h.RejectCause)
	}
}

// A forged heartbeat under a live peer's ID that announces the highest
// possible sequence number costs a flush, but does not stop the detection
// of later gaps: once the peer's real messages show that the number was
// wrong, a jump in its numbers is seen again.
func (s *cacheSuite) caseForgedSeq(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	a, _ := s.openOn(t, ns, 0)
	b, _ := s.openOn(t, ns, 1)
	r := s.rogue(t, ns)
	s.waitFor(t, "b to hear a", func() bool { return b.Health().Peers >= 1 })
	gaps := b.Stats().Gaps
	r.send(core.Envelope{Op: core.OpHeartbeat, Source: a.ID(), Seq: math.MaxUint64, Sent: time.Now()})
	s.waitFor(t, "the forged jump to count as a gap", func() bool { return b.Stats().Gaps > gaps })
	for i := range 3 {
		if err := a.Invalidate(context.Background(), "k"+string(rune('0'+i))); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
	}
	s.waitFor(t, "the real numbers to restart a's numbering", func() bool { return b.Stats().Gaps > gaps+1 })
	// a's numbers are known again: a jump ahead of them is a gap. The
	// count is taken once x is cached, so that only a later gap counts.
	s.fill(t, b, "x", "v")
	gaps = b.Stats().Gaps
	r.send(core.Envelope{Op: core.OpHeartbeat, Source: a.ID(), Seq: 1_000_000, Sent: time.Now()})
	s.waitFor(t, "a jump after the forgery to count as a gap", func() bool { return b.Stats().Gaps > gaps })
	if !absent(b, "x") {
		t.Fatal("the gap did not flush")
	}
}

// A Clear from anyone wipes the store and is counted, with its cause.
func (s *cacheSuite) caseRemoteClearCounted(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	c, _ := s.openOn(t, ns, 0)
	r := s.rogue(t, ns)
	s.fill(t, c, "k", "v")
	flushes := c.Stats().Flushes
	r.send(core.Envelope{Op: core.OpClear, Source: core.NewSourceID(), Seq: 1, Sent: time.Now()})
	// The count moves once the wipe is done.
	s.waitFor(t, "the Clear to be counted", func() bool { return c.Stats().Flushes > flushes })
	if st, h := c.Stats(), c.Health(); st.Flushes != flushes+1 || h.LastFlushCause != "remote-clear" {
		t.Fatalf("after a peer's Clear: %d flushes (want %d), last cause %q (want remote-clear)", st.Flushes, flushes+1, h.LastFlushCause)
	}
	if !absent(c, "k") {
		t.Fatal("a counted Clear left an entry")
	}
}

// Heartbeats from ever new source IDs, each announcing many messages,
// leave the peer table within Options.MaxPeers; the refused ones are
// counted.
func (s *cacheSuite) caseForgedPeers(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	const maxPeers, forged = 8, 200
	c, _ := s.openOn(t, ns, 0, core.WithReceiveLimits(maxPeers, 64))
	r := s.rogue(t, ns)
	envs := make([]core.Envelope, forged)
	for i := range envs {
		envs[i] = core.Envelope{Op: core.OpHeartbeat, Source: core.NewSourceID(), Seq: 1000, Sent: time.Now()}
	}
	received := c.Stats().Received
	r.send(envs...)
	s.waitFor(t, "the forged heartbeats to arrive", func() bool { return c.Stats().Received >= received+forged })
	if h, st := c.Health(), c.Stats(); h.Peers > maxPeers || st.PeersRefused < forged-maxPeers {
		t.Fatalf("after %d forged peers: %d peers tracked (max %d), %d refused", forged, h.Peers, maxPeers, st.PeersRefused)
	}
}

// With signing on, replays of a peer's messages, while it runs and after
// it left, cost nothing: no eviction, no gap, no flush; they are counted.
func (s *cacheSuite) caseSignedReplays(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t, "shared")
	ns := newNamespace(t)
	a, _ := s.openOn(t, ns, 0, core.WithKeyring(kr))
	b, _ := s.openOn(t, ns, 1, core.WithKeyring(kr))
	r := s.rogue(t, ns)
	s.waitFor(t, "b to hear a", func() bool { return b.Health().Peers >= 1 })
	if err := a.Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	s.waitFor(t, "the rogue to capture a's invalidation", func() bool { return len(r.from(a.ID())) > 0 })
	s.waitFor(t, "b to apply it", func() bool { return b.Stats().KeysEvicted >= 1 })
	s.fill(t, b, "k", "v2")
	before := b.Stats()
	r.raw(r.from(a.ID())...)
	s.waitFor(t, "the replays to be counted", func() bool { return b.Stats().Replayed > before.Replayed })
	if v, ok := b.Get("k"); !ok || string(v) != "v2" {
		t.Fatalf("a replay evicted k (%q, %v)", v, ok)
	}
	if err := closeWithin(a, 10*time.Second); err != nil {
		t.Fatalf("close a: %v", err)
	}
	s.waitFor(t, "b to see a leave", func() bool { return b.Health().Peers == 0 })
	before = b.Stats()
	captured := r.from(a.ID())
	r.raw(captured...)
	s.waitFor(t, "the replays of the departed peer to be counted", func() bool {
		return b.Stats().Replayed >= before.Replayed+uint64(len(captured))
	})
	if st := b.Stats(); st.Flushes != before.Flushes || st.Gaps != before.Gaps {
		t.Fatalf("replays of a departed peer cost %d flushes and %d gaps; want none", st.Flushes-before.Flushes, st.Gaps-before.Gaps)
	}
}

// Two instances with different signing keys hear nothing of each other:
// both say so in Health.
func (s *cacheSuite) caseMismatchedKeys(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	a, _ := s.openOn(t, ns, 0, core.WithKeyring(testKeyring(t, "one")))
	b, _ := s.openOn(t, ns, 1, core.WithKeyring(testKeyring(t, "two")))
	for _, c := range []*core.Cache{a, b} {
		s.waitFor(t, "the other's messages to be rejected", func() bool {
			h := c.Health()
			return h.Rejecting && !h.Healthy() && h.Rejected > 0
		})
	}
}

// testKeyring returns a keyring with one key derived from name.
func testKeyring(t *testing.T, name string) *core.Keyring {
	t.Helper()
	secret := []byte(strings.Repeat(name, 32/len(name)+1)[:32])
	kr, err := core.NewKeyring(core.SigningKey{ID: name, Secret: secret})
	if err != nil {
		t.Fatalf("conformance: keyring: %v", err)
	}
	return kr
}
