package natstransport_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// jsOpt selects the JetStream mode with a short retention: the streams of
// the tests expire by themselves on the shared server.
func jsOpt(storage natstransport.Storage) natstransport.Option {
	return natstransport.WithJetStream(natstransport.JetStreamOptions{Storage: storage, MaxAge: time.Minute})
}

// dropStreams deletes, when the test ends, the streams of the namespaces
// used on a server other tests share. Register it before the instances,
// so that it runs after they are closed.
type dropStreams struct {
	mu    sync.Mutex
	names map[string]bool
}

func (d *dropStreams) add(t testing.TB, url string, tr *natstransport.Transport) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.names[tr.Stream()] {
		return
	}
	if d.names == nil {
		d.names = map[string]bool{}
	}
	d.names[tr.Stream()] = true
	name := tr.Stream()
	t.Cleanup(func() { deleteStream(url, name) })
}

func deleteStream(url, name string) {
	nc, err := nats.Connect(url)
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = js.DeleteStream(ctx, name)
}

// jsSharedHarness is sharedHarness in the JetStream mode: the machine's
// server (JetStream on), each instance behind a proxy of its own.
func jsSharedHarness(t *testing.T) conformance.BackplaneHarness {
	target := testenv.NATSURL(t)
	var proxies shipped.Proxies
	var drop dropStreams
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pu, p := proxies.Via(t, target)
			tr := connected(t, pu, ns, jsOpt(natstransport.StorageFile), natstransport.WithNATSOptions(nats.IgnoreDiscoveredServers()))
			drop.add(t, target, tr)
			proxies.Add(tr, p)
			return tr
		},
		Ordered:    true,
		Disconnect: proxies.Reset,
		Stall:      proxies.Stall,
	}
}

// jsEmbeddedHarness uses an embedded server with JetStream whose store
// directory survives RestartBroker: with file storage a restart resumes,
// with memory storage it loses the stream, which the Transports report.
func jsEmbeddedHarness(storage natstransport.Storage) func(t *testing.T) conformance.BackplaneHarness {
	return func(t *testing.T) conformance.BackplaneHarness {
		srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
		return conformance.BackplaneHarness{
			New: func(t testing.TB, ns string) core.Backplane {
				return connected(t, srv.URL(), ns, jsOpt(storage))
			},
			Ordered: true,
			Disconnect: func(t testing.TB, bp core.Backplane) {
				kick(t, bp.(*natstransport.Transport).Conn(), func(string) *testenv.NATSServer { return srv })
			},
			RestartBroker: func(testing.TB) { srv.Restart() },
			// A restart includes the recovery of the JetStream store.
			Bound: 10 * time.Second,
		}
	}
}

// jsCallerConnHarness is jsEmbeddedHarness (file storage) with Transports
// made by New over connections the harness dials and closes itself.
func jsCallerConnHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartNATS(t, testenv.WithNATSJetStream())
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
				nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			t.Cleanup(nc.Close)
			tr, err := natstransport.New(nc, ns, natstransport.WithLogger(quiet), jsOpt(natstransport.StorageFile))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return tr
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			kick(t, bp.(*natstransport.Transport).Conn(), func(string) *testenv.NATSServer { return srv })
		},
		RestartBroker: func(testing.TB) { srv.Restart() },
		Bound:         10 * time.Second,
	}
}

var jsHarnesses = []shipped.Harness{
	{Name: "jetstream-shared", Make: jsSharedHarness},
	{Name: "jetstream-file", Make: jsEmbeddedHarness(natstransport.StorageFile)},
	{Name: "jetstream-memory", Make: jsEmbeddedHarness(natstransport.StorageMemory)},
	{Name: "jetstream-caller-conn", Make: jsCallerConnHarness},
}

// TestJetStreamConformance runs the Backplane suite on the JetStream mode,
// its resume-or-loss case included.
func TestJetStreamConformance(t *testing.T) { shipped.RunBackplane(t, jsHarnesses) }

// TestJetStreamCacheConformance runs the engine end to end over the
// JetStream mode with every shipped store.
func TestJetStreamCacheConformance(t *testing.T) { shipped.RunCacheOn(t, jsHarnesses) }
