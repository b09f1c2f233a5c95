// The watcher: the goroutine that turns connection and subscription
// changes into events, and reconciles its view with nats.go's.

package natstransport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
)

// reconcileInterval is how often the watcher compares its view of the
// connection with nats.go's, in case a status notification was missed
// (nats.go drops status notifications when a listener's buffer is full).
const reconcileInterval = time.Second

// errMissedDisconnect is the cause of an EventDisconnected that the watcher
// synthesises when it finds that the connection was re-established without
// it having seen the disconnect.
var errMissedDisconnect = errors.New("natstransport: connection was re-established (disconnect not observed)")

// watch turns connection and subscription changes into events. It runs
// from Subscribe until Close.
func (t *Transport) watch(nc *nats.Conn, sub *nats.Subscription, connStatus chan nats.Status, subStatus <-chan nats.SubStatus) {
	defer t.wg.Done()
	w := watcher{t: t, nc: nc, sub: sub, up: true, reconnects: nc.Stats().Reconnects}
	var check chan struct{}
	if sub != nil {
		w.dropped, _ = sub.Dropped()
	} else {
		check = t.js.check
	}
	// Subscribe handed hmu over.
	if !t.hclosed {
		t.callEvent(core.Event{Kind: core.EventConnected, Time: time.Now()})
	}
	t.hmu.Unlock()
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case n := <-t.notes:
			if n.kind == noteDown {
				w.noteDown(n.err)
			} else {
				w.reconcile()
			}
		case s, ok := <-connStatus:
			if !ok {
				connStatus = nil
				continue
			}
			switch s {
			case nats.CONNECTED:
				w.reconcile()
			case nats.CLOSED:
				w.down(nats.ErrConnectionClosed)
			default:
				err := nc.LastError()
				if err == nil {
					err = errors.New("natstransport: connection lost")
				}
				w.noteDown(err)
			}
		case _, ok := <-subStatus:
			if !ok {
				subStatus = nil
				continue
			}
			w.checkDropped()
		case <-check:
			w.resync()
		case <-tick.C:
			w.reconcile()
			w.checkDropped()
			if t.js != nil && t.js.needsRestart() {
				w.resync()
			}
		}
	}
}

// watcher is the state of watch.
type watcher struct {
	t          *Transport
	nc         *nats.Conn
	sub        *nats.Subscription
	up         bool   // as last reported to the handler
	reconnects uint64 // nc's reconnect count when up was last confirmed
	dropped    int    // sub's dropped count last reported
}

// down reports a disconnect unless one is already reported.
func (w *watcher) down(err error) {
	if w.up {
		w.up = false
		w.t.event(core.Event{Kind: core.EventDisconnected, Err: err, Time: time.Now()})
	}
}

// noteDown handles a disconnect notification from nats.go. A notification
// that arrives after reconcile already found the connection re-established
// (and reported the pair) is stale and ignored.
func (w *watcher) noteDown(err error) {
	if w.up && w.nc.Status() == nats.CONNECTED && w.nc.Stats().Reconnects == w.reconnects {
		return
	}
	w.down(err)
}

// reconcile reports a reconnect when the connection is up and either a
// disconnect was reported or nats.go reconnected since the last check (a
// disconnect the watcher did not see), and a disconnect it missed while the
// connection is still down.
func (w *watcher) reconcile() {
	switch st := w.nc.Status(); {
	case st == nats.CONNECTED:
		rc := w.nc.Stats().Reconnects
		if w.up && rc == w.reconnects {
			return
		}
		w.down(errMissedDisconnect)
		if !w.t.confirmUp(w.nc) {
			return
		}
		ev := core.Event{Kind: core.EventReconnected}
		if j := w.t.js; j != nil {
			loss, ok := j.resync(w.nc)
			if !ok {
				return // tried again on the next tick
			}
			ev.Resumed, ev.Err = loss == nil, loss
		}
		ev.Time = time.Now()
		w.up, w.reconnects = true, rc
		w.t.event(ev)
	case st == nats.RECONNECTING, st == nats.CLOSED:
		w.down(fmt.Errorf("natstransport: connection %s", st))
	}
}

// checkDropped reports EventLoss when nats.go dropped messages of the
// subscription since the last report.
func (w *watcher) checkDropped() {
	if w.sub == nil {
		return
	}
	d, err := w.sub.Dropped()
	if err != nil || d <= w.dropped {
		return
	}
	w.dropped = d
	err = fmt.Errorf("%w (%d dropped by this subscription so far)", nats.ErrSlowConsumer, d)
	w.t.event(core.Event{Kind: core.EventLoss, Err: err, Time: time.Now()})
}

// confirmUp waits until the server has processed the subscription that
// nats.go re-sent on reconnect. It gives up when the connection drops
// again (a new noteUp will follow) or the Transport closes.
func (t *Transport) confirmUp(nc *nats.Conn) bool {
	for {
		ctx, cancel := context.WithTimeout(t.life, t.opts.FlushTimeout)
		err := nc.FlushWithContext(ctx)
		cancel()
		if err == nil {
			return true
		}
		if t.life.Err() != nil || !nc.IsConnected() {
			return false
		}
	}
}

// resync checks, while connected in the JetStream mode, that the consumer
// still reads the stream its position refers to (after the consumer
// recreated itself, or failed to), and reports EventLoss when it does
// not. While disconnected the reconnect does the check.
func (w *watcher) resync() {
	if !w.up || w.nc.Status() != nats.CONNECTED {
		return
	}
	if loss, ok := w.t.js.resync(w.nc); ok && loss != nil {
		w.t.event(core.Event{Kind: core.EventLoss, Err: loss, Time: time.Now()})
	}
}
