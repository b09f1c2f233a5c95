package natstransport_test

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// cutOff makes a subscribed Transport that reaches srv through a proxy,
// so that the test can keep it away from the server (refuse, then reset)
// while others publish.
func cutOff(t *testing.T, srv *testenv.NATSServer, ns string, opts ...natstransport.Option) (*natstransport.Transport, *recorder, *faultproxy.Proxy) {
	t.Helper()
	var ps shipped.Proxies
	pu, p := ps.Via(t, srv.URL())
	tr, rec := subscribed(t, pu, ns, opts...)
	return tr, rec, p
}

// publishAll publishes each message once; the publisher's connection is
// up.
func publishAll(t *testing.T, tr *natstransport.Transport, prefix string, n int) []string {
	t.Helper()
	var msgs []string
	for i := range n {
		m := fmt.Sprintf("%s%d", prefix, i)
		if err := tr.Publish(ctxT(t), []byte(m)); err != nil {
			t.Fatalf("Publish %s: %v", m, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func lastEvent(r *recorder, k core.EventKind) core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Kind == k {
			return r.events[i]
		}
	}
	return core.Event{}
}

// TestJetStreamRestart: a subscriber is kept away while messages are
// stored, then the server restarts. With file storage the stream survives
// and the subscriber resumes where it stopped (Resumed, every message
// once, in order); with memory storage the stream is gone, which the
// subscriber reports as a loss.
func TestJetStreamRestart(t *testing.T) {
	for _, tc := range []struct {
		storage natstransport.Storage
		resumes bool
	}{
		{natstransport.StorageFile, true},
		{natstransport.StorageMemory, false},
	} {
		t.Run(string(tc.storage), func(t *testing.T) {
			srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
			ns := namespace(t)
			opt := jsOpt(tc.storage)
			pub, recPub := subscribed(t, srv.URL(), ns, opt)
			_, rec, p := cutOff(t, srv, ns, opt)
			want := publishAll(t, pub, "a", 10)
			waitFor(t, "the first messages", func() bool { return len(rec.messages()) == 10 })

			p.SetRefuse(true)
			p.Reset()
			waitFor(t, "the subscriber disconnected", func() bool { return rec.count(core.EventDisconnected) == 1 })
			want = append(want, publishAll(t, pub, "b", 10)...)

			srv.Restart()
			waitFor(t, "the publisher reconnected", func() bool { return recPub.count(core.EventReconnected) == 1 })
			if ev := lastEvent(recPub, core.EventReconnected); ev.Resumed != tc.resumes {
				t.Errorf("publisher: Reconnected.Resumed = %v (err %v), want %v", ev.Resumed, ev.Err, tc.resumes)
			}
			after := publishAll(t, pub, "c", 10)
			p.SetRefuse(false)
			waitFor(t, "the subscriber reconnected", func() bool { return rec.count(core.EventReconnected) == 1 })
			ev := lastEvent(rec, core.EventReconnected)
			if !tc.resumes {
				if ev.Resumed || !errors.Is(ev.Err, natstransport.ErrStreamLoss) {
					t.Fatalf("Reconnected after the stream was lost: Resumed %v, Err %v; want a loss (ErrStreamLoss)", ev.Resumed, ev.Err)
				}
				publishUntil(t, pub, rec, "after the loss")
				return
			}
			if !ev.Resumed {
				t.Fatalf("Reconnected.Resumed = false (err %v), want a resume from the file store", ev.Err)
			}
			want = append(want, after...)
			waitFor(t, "every message", func() bool { return len(rec.messages()) >= len(want) })
			if got := rec.messages(); !slices.Equal(got, want) {
				t.Fatalf("received %q\nwant %q (once each, in order)", got, want)
			}
			if n := rec.count(core.EventLoss); n != 0 {
				t.Fatalf("%d losses reported, want none", n)
			}
		})
	}
}

// TestJetStreamTrimmedPosition: retention removes messages that a cut
// subscriber had not received; on reconnect it reports a loss, and
// delivery goes on.
func TestJetStreamTrimmedPosition(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
	ns := namespace(t)
	opt := natstransport.WithJetStream(natstransport.JetStreamOptions{Storage: natstransport.StorageMemory, MaxMsgs: 5})
	pub := open(t, srv.URL(), ns, opt)
	_, rec, p := cutOff(t, srv, ns, opt)
	publishAll(t, pub, "a", 3)
	waitFor(t, "the first messages", func() bool { return len(rec.messages()) == 3 })

	p.SetRefuse(true)
	p.Reset()
	waitFor(t, "the subscriber disconnected", func() bool { return rec.count(core.EventDisconnected) == 1 })
	publishAll(t, pub, "b", 20) // the stream keeps the last 5
	p.SetRefuse(false)
	waitFor(t, "the subscriber reconnected", func() bool { return rec.count(core.EventReconnected) == 1 })
	ev := lastEvent(rec, core.EventReconnected)
	if ev.Resumed || !errors.Is(ev.Err, natstransport.ErrStreamLoss) || !strings.Contains(ev.Err.Error(), "retention") {
		t.Fatalf("Reconnected past a trimmed position: Resumed %v, Err %v; want a loss by retention", ev.Resumed, ev.Err)
	}
	publishUntil(t, pub, rec, "after the loss")
}

// TestJetStreamResumeWithoutLoss: a cut within the retention resumes.
func TestJetStreamResumeWithoutLoss(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
	ns := namespace(t)
	opt := jsOpt(natstransport.StorageMemory)
	pub := open(t, srv.URL(), ns, opt)
	_, rec, p := cutOff(t, srv, ns, opt)
	want := publishAll(t, pub, "a", 3)
	waitFor(t, "the first messages", func() bool { return len(rec.messages()) == 3 })
	p.SetRefuse(true)
	p.Reset()
	waitFor(t, "the subscriber disconnected", func() bool { return rec.count(core.EventDisconnected) == 1 })
	want = append(want, publishAll(t, pub, "b", 20)...)
	p.SetRefuse(false)
	waitFor(t, "the subscriber reconnected", func() bool { return rec.count(core.EventReconnected) == 1 })
	if ev := lastEvent(rec, core.EventReconnected); !ev.Resumed {
		t.Fatalf("Reconnected.Resumed = false (err %v), want a resume", ev.Err)
	}
	waitFor(t, "every message", func() bool { return len(rec.messages()) >= len(want) })
	if got := rec.messages(); !slices.Equal(got, want) {
		t.Fatalf("received %q\nwant %q", got, want)
	}
}

// TestJetStreamStreamRecreated: the stream is deleted and created again
// while the subscriber stays connected; it reports a loss and reads the
// new stream.
func TestJetStreamStreamRecreated(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
	ns := namespace(t)
	opt := jsOpt(natstransport.StorageMemory)
	pub := open(t, srv.URL(), ns, opt)
	sub, rec := subscribed(t, srv.URL(), ns, opt)
	publishAll(t, pub, "a", 3)
	waitFor(t, "the first messages", func() bool { return len(rec.messages()) == 3 })
	deleteStream(srv.URL(), sub.Stream())
	waitFor(t, "a loss", func() bool { return rec.count(core.EventLoss) > 0 })
	if ev := lastEvent(rec, core.EventLoss); !errors.Is(ev.Err, natstransport.ErrStreamLoss) {
		t.Fatalf("EventLoss.Err = %v, want ErrStreamLoss", ev.Err)
	}
	publishUntil(t, pub, rec, "on the new stream")
}

func TestJetStreamURL(t *testing.T) {
	tr, err := natstransport.Open("nats://127.0.0.1:1?jetstream=true&retention=10m&storage=memory&replicas=1", "ns")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tr.Close()
	if !tr.Limits().Durable {
		t.Error("Limits().Durable = false in the JetStream mode")
	}
	if tr.Stream() == "" {
		t.Error("no stream name in the JetStream mode")
	}
	plain, err := natstransport.Open("nats://127.0.0.1:1", "ns")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer plain.Close()
	if plain.Limits().Durable || plain.Stream() != "" {
		t.Error("core NATS mode claims to be durable")
	}
	for _, bad := range []string{
		"nats://h:1?jetstream=maybe",
		"nats://h:1?jetstream=true&storage=tape",
		"nats://h:1?jetstream=true&replicas=9",
		"nats://h:1?jetstream=true&retention=-1s",
		"nats://h:1?storage=file",
		"nats://h:1?jetstream=true&colour=blue",
	} {
		if _, err := natstransport.Open(bad, "ns"); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Open(%q) = %v, want ErrInvalidOption", bad, err)
		}
	}
	opts, err := natstransport.JetStreamURLOptions(url.Values{"jetstream": {"true"}, "max_msgs": {"100"}})
	if err != nil || len(opts) != 1 {
		t.Fatalf("JetStreamURLOptions = %d options, %v", len(opts), err)
	}
}

func TestStreamNamesDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, ns := range []string{"a.b", "a_b", "a-b", "a_2Eb", "A.b"} {
		tr, err := natstransport.Open("nats://127.0.0.1:1", ns, jsOpt(natstransport.StorageFile))
		if err != nil {
			t.Fatal(err)
		}
		name := tr.Stream()
		_ = tr.Close()
		if other, ok := seen[name]; ok {
			t.Fatalf("namespaces %q and %q share the stream %q", other, ns, name)
		}
		seen[name] = ns
		if strings.ContainsAny(name, ".*> ") {
			t.Fatalf("stream name %q of %q has characters NATS refuses", name, ns)
		}
	}
}

// TestJetStreamReplay: a replaying subscriber reads what the stream still
// holds, oldest first, then what comes next, with no loss reported for
// what retention removed before it subscribed.
func TestJetStreamReplay(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
	ns := namespace(t)
	js := natstransport.JetStreamOptions{Storage: natstransport.StorageMemory, MaxMsgs: 4}
	pub := open(t, srv.URL(), ns, natstransport.WithJetStream(js))
	publishAll(t, pub, "m", 10)
	js.Replay = true
	_, rec := subscribed(t, srv.URL(), ns, natstransport.WithJetStream(js))
	// The stream is full: the next message pushes the oldest out, so it
	// is published once the retained ones were read.
	waitFor(t, "the retained messages", func() bool { return len(rec.messages()) >= 4 })
	publishAll(t, pub, "n", 1)
	want := []string{"m6", "m7", "m8", "m9", "n0"}
	waitFor(t, "the next message", func() bool { return len(rec.messages()) >= len(want) })
	got := rec.messages()

	if !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
	if n := rec.count(core.EventLoss); n != 0 {
		t.Fatalf("%d losses reported for messages removed before Subscribe", n)
	}
}
