// modes.go: what a Transport sees of instances of its namespace on the
// other mode (pub/sub or stream), which it does not read: a split fleet
// (core.Splitter).

package redistransport

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode names, as in marker keys and in Split's description.
const (
	modePubSub = "pubsub"
	modeStream = "stream"
	modeBridge = "bridge" // one side of a transports.Dual
)

// modeWatch is what watchModes found; Split reads it.
type modeWatch struct {
	bridged atomic.Bool
	split   atomic.Pointer[string]
}

// Bridge tells the Transport that it is one side of a transports.Dual,
// which also reads and publishes on the other mode: it then advertises
// the bridge and reports no split. transports.Dual calls it before
// Subscribe.
func (t *Transport) Bridge() { t.modes.bridged.Store(true) }

// Split describes the instances of the namespace that the Transport sees on
// the other mode, which it does not read, or returns "" (core.Splitter).
//
// Every Transport sets a marker key for its mode (<channel>:mode:pubsub,
// :stream or :bridge, expiring after three check intervals) at each
// health-check interval and looks for the other mode's. A stream-mode
// Transport on a single server also counts the pub/sub channel's
// subscribers, which finds pub/sub instances that set no marker (earlier
// releases), unless a bridge is up. A Transport that is one side of a
// transports.Dual reports no split.
func (t *Transport) Split() string {
	if s := t.modes.split.Load(); s != nil {
		return *s
	}
	return ""
}

func (t *Transport) mode() string {
	switch {
	case t.modes.bridged.Load():
		return modeBridge
	case t.st != nil:
		return modeStream
	default:
		return modePubSub
	}
}

func (t *Transport) markerKey(mode string) string { return t.channel + ":mode:" + mode }

// watchModes checks the other mode's markers every health-check interval
// until Close.
func (t *Transport) watchModes() {
	defer t.wg.Done()
	interval := t.opts.HealthCheckInterval
	if interval <= 0 {
		return
	}
	for {
		t.checkModes(interval)
		if !t.sleep(interval) {
			return
		}
	}
}

// checkModes advertises the Transport's mode and looks for the other one.
// A failed check keeps what the last one found.
func (t *Transport) checkModes(interval time.Duration) {
	ctx, cancel := context.WithTimeout(t.life, t.opts.HealthCheckTimeout)
	defer cancel()
	mine := t.mode()
	other := modeStream
	if t.st != nil {
		other = modePubSub
	}
	pipe := t.client.Pipeline()
	pipe.Set(ctx, t.markerKey(mine), time.Now().UnixMilli(), 3*interval)
	otherUp := pipe.Exists(ctx, t.markerKey(other))
	bridgeUp := pipe.Exists(ctx, t.markerKey(modeBridge))
	var subs *redis.MapStringIntCmd
	if _, single := t.client.(*redis.Client); single && t.st != nil {
		subs = pipe.PubSubNumSub(ctx, t.channel)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.log.Debug("redistransport: mode check failed", "err", err)
		return
	}
	split := ""
	switch {
	case mine == modeBridge:
	case otherUp.Val() > 0:
		split = fmt.Sprintf("instances of this namespace use the Redis %s mode, which this instance (%s mode) does not read", other, mine)
	case subs != nil && subs.Val()[t.channel] > 0 && bridgeUp.Val() == 0:
		split = fmt.Sprintf("%d clients subscribe to the pub/sub channel %s, which this instance (stream mode) does not read", subs.Val()[t.channel], t.channel)
	}
	if old := t.Split(); old != split {
		if split != "" {
			t.log.Warn("redistransport: the fleet is split across modes; move it with a transition (transports.Dual, fxmodule transition_url)", "split", split)
		} else {
			t.log.Info("redistransport: no instance on the other mode any more")
		}
	}
	t.modes.split.Store(&split)
}
