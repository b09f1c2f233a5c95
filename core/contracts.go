// contracts.go: the contracts between the engine and its adapters
// (LocalStore, Backplane, Sender, Handler, events) and the sentinel errors.

package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Match them with errors.Is; they are wrapped with context.
var (
	// ErrClosed is returned by every operation on a Cache, LocalStore or
	// Backplane after Close.
	ErrClosed = errors.New("backplane: closed")
	// ErrNotStarted is returned by Cache operations that need the
	// subscription before Start has returned successfully.
	ErrNotStarted = errors.New("backplane: not started")
	// ErrAlreadySubscribed is returned by a second Backplane.Subscribe.
	ErrAlreadySubscribed = errors.New("backplane: already subscribed")
	// ErrEmptyKey is returned for the empty string used as a key.
	ErrEmptyKey = errors.New("backplane: empty key")
	// ErrKeyTooLong is returned for a key longer than Options.MaxKeyLen.
	ErrKeyTooLong = errors.New("backplane: key too long")
	// ErrTooManyKeys is returned when one Invalidate call carries more keys
	// than Options.MaxKeysPerCall.
	ErrTooManyKeys = errors.New("backplane: too many keys")
	// ErrTooManyTags is returned when one entry carries more tags than
	// Options.MaxTagsPerEntry.
	ErrTooManyTags = errors.New("backplane: too many tags")
	// ErrNilLoader is returned by GetOrLoad when the loader is nil.
	ErrNilLoader = errors.New("backplane: nil loader")
	// ErrPayloadTooLarge is returned by Backplane.Publish for a payload
	// larger than Limits.MaxPayload.
	ErrPayloadTooLarge = errors.New("backplane: payload too large")
	// ErrValueTooLarge is returned by LocalStore.Set for a value the store
	// cannot hold.
	ErrValueTooLarge = errors.New("backplane: value too large")
	// ErrDecode is wrapped by every error of DecodeEnvelope.
	ErrDecode = errors.New("backplane: malformed envelope")
	// ErrInvalidOption is wrapped by every option validation error of New.
	ErrInvalidOption = errors.New("backplane: invalid option")
)

// LocalStore is an instance's in-process byte cache.
//
// Implementations are safe for concurrent use. Set copies the value: the
// caller may reuse its slice after Set returns, and Get returns a slice the
// caller owns. A miss is ok == false, never an error. After Close, Get
// misses and the other methods return ErrClosed.
type LocalStore interface {
	// Get returns a copy of the value stored under key.
	Get(key string) (value []byte, ok bool)
	// Set stores a copy of value under key. ttl > 0 is a hint the store
	// honours if it can (see StoreCaps.TTL); the engine enforces TTL itself
	// in any case. A value the store cannot hold returns an error wrapping
	// ErrValueTooLarge.
	Set(key string, value []byte, ttl time.Duration) error
	// Delete removes keys; absent keys are not an error.
	Delete(keys ...string) error
	// Clear removes every entry.
	Clear() error
	// Len reports the number of entries (it may count expired entries that
	// were not yet evicted).
	Len() int
	// Close releases the store. It is idempotent.
	Close() error
}

// StoreCaps describes what a LocalStore can do. The conformance suite skips
// the cases a store declares it cannot do; it never skips a failure.
type StoreCaps struct {
	// TTL is true when the store itself expires entries after the ttl given
	// to Set (at its own granularity, see TTLGranularity).
	TTL bool
	// TTLGranularity is the resolution of the store's expiry clock.
	TTLGranularity time.Duration
	// Eviction is true when the store evicts entries once it reaches a
	// capacity bound.
	Eviction bool
	// MaxValueLen is the largest value the store accepts; 0 means no limit.
	MaxValueLen int
}

// Limits are a Backplane's transport limits.
type Limits struct {
	// MaxPayload is the largest payload in bytes one message may carry.
	// The engine splits batches so that no payload exceeds it.
	MaxPayload int
	// ConcurrentPublish is how many Publish calls of one instance the
	// engine may have in flight at once. 0 or 1: one at a time, so that
	// an instance's messages reach every receiver in the order it
	// published them. Above 1: the transport spreads concurrent calls over
	// several connections, which do not keep order between them, and
	// receivers wait up to Options.ReorderWindow for a message that was
	// overtaken before they count it as lost. Over a Sender, which keeps
	// order, it bounds the rounds that wait for their confirmation at
	// once (0 or 1: one round at a time).
	ConcurrentPublish int
	// Durable is true when every subscriber reads one log that keeps the
	// messages in one total order (a Redis stream, a JetStream stream): a
	// subscriber that falls behind or loses its connection resumes where it
	// stopped, and says on reconnect whether it could (Event.Resumed). Over
	// such a transport the engine keeps its store through a disconnect, a
	// silence or a lost peer, serving nothing from it until delivery has
	// caught up, instead of flushing (see Options.OnDisconnect).
	Durable bool
	// Reorders is true when messages of one instance may reach a receiver
	// out of order even when it publishes one call at a time (a transport
	// that delivers over two paths, like transports.Dual). Receivers then
	// wait up to Options.ReorderWindow for an overtaken message, as with
	// ConcurrentPublish above 1.
	Reorders bool
}

// Backplane is a broadcast pipe of opaque byte payloads plus connection
// events. A transport does not encode, filter, retry or batch: the engine
// does.
//
// Fan-out is broadcast: every subscribed instance receives every message,
// including the publishing instance's own (the engine ignores those by
// source ID and uses them as a liveness probe of its own link).
type Backplane interface {
	// Publish sends each payload as one message, in order. It returns when
	// the broker has accepted all of them, or with an error. One call may
	// carry several payloads so that the transport can pipeline them. A
	// payload over Limits().MaxPayload fails with ErrPayloadTooLarge
	// before anything is sent, and so does an already-cancelled ctx. An
	// empty payload is a message like any other. A call that fails later
	// may have published some of its payloads (the engine's sequence
	// numbers make that visible to receivers).
	Publish(ctx context.Context, payloads ...[]byte) error
	// Subscribe starts delivery to h and returns only once delivery is
	// active: a Publish by anyone that starts after Subscribe returns
	// reaches h (on a clustered broker: a publisher connected to the same
	// node; interest reaches other nodes moments later). A Backplane is
	// subscribed at most once (ErrAlreadySubscribed). ctx bounds the
	// subscription setup only; cancelling it later does not end delivery.
	// A failed Subscribe may be retried.
	Subscribe(ctx context.Context, h Handler) error
	// Limits reports the transport's limits.
	Limits() Limits
	// Close is idempotent: later calls return nil. After it returns no
	// handler call happens and Publish returns ErrClosed. Close waits for
	// a handler call in progress to return. Close does not close clients
	// that the transport was given rather than created.
	Close() error
}

// Sender is an optional extension of a Backplane whose connection keeps the
// order of what is sent on it (one connection to one broker node, for
// example). Send hands the payloads to the connection after those of every
// earlier Send or Publish and before those of later ones, and returns
// without waiting for the broker; they go out whether or not confirm is
// ever called. confirm waits until the broker has them and returns what
// Publish would have returned. Send fails like Publish: a payload over
// Limits().MaxPayload or an ended ctx fails it before anything is sent; a
// later failure may leave some payloads sent. Send and confirm honour
// their contexts like Publish; several confirms may wait at once, while
// later Send and Publish calls go on. confirm may be called again after it
// returned (the engine does so when the context it waited with ended for
// another caller's sake): each call waits until the broker has what was
// sent before it.
//
// A wrapper around a Sender (to count or trace publishes, say) must wrap
// Send too, or hide it: the engine calls Send instead of Publish when it is
// there.
//
// With a Sender that declares Limits.ConcurrentPublish above 1, the engine
// lets the next round go out while earlier ones wait for their
// confirmation, up to that many rounds; otherwise it waits for each round
// before starting the next.
type Sender interface {
	Send(ctx context.Context, payloads ...[]byte) (confirm func(ctx context.Context) error, err error)
}

// Splitter is an optional extension of a Backplane that can see instances
// of its namespace on another mode of the same broker, one that this
// Backplane neither reads nor publishes on (Redis pub/sub and Redis
// Streams, say): a fleet split in two, each part missing the other's
// invalidations. Split describes what it sees, or returns "" when it sees
// no split. Cache.Health calls it (Health.Split), so it must be cheap.
type Splitter interface {
	Split() string
}

// Handler receives what a Backplane delivers. The transport calls it from
// its own goroutine(s), one call at a time (messages and events together);
// a handler must not block for long. A transport recovers a panicking
// handler and keeps delivering. Messages received right after a reconnect
// may reach the handler just before EventReconnected.
//
// A handler never calls Publish, Send or Close of the Backplane that
// delivers to it, nor waits for a call of them (the engine's handler only
// evicts and counts; work that must publish goes to another goroutine). A
// transport may therefore hold what its Publish or Close need while a
// handler call runs, and need not know which goroutine it runs on.
type Handler interface {
	// HandleMessage is called once per received payload. The payload is
	// only valid during the call.
	HandleMessage(payload []byte)
	// HandleEvent reports a change of the connection.
	HandleEvent(ev Event)
}

// HandlerFuncs adapts two functions to a Handler; nil functions are
// ignored.
type HandlerFuncs struct {
	Message func(payload []byte)
	Event   func(ev Event)
}

// HandleMessage calls f.Message.
func (f HandlerFuncs) HandleMessage(p []byte) {
	if f.Message != nil {
		f.Message(p)
	}
}

// HandleEvent calls f.Event.
func (f HandlerFuncs) HandleEvent(ev Event) {
	if f.Event != nil {
		f.Event(ev)
	}
}

// EventKind says what happened to a Backplane's connection.
type EventKind int

// Event kinds.
const (
	// EventConnected: delivery became active for the first time.
	EventConnected EventKind = iota + 1
	// EventDisconnected: delivery stopped; Err says why. Messages
	// published from now on may be lost for this subscriber.
	EventDisconnected
	// EventReconnected: delivery is active again after a disconnect;
	// messages published meanwhile may have been lost, unless Resumed.
	EventReconnected
	// EventLoss: the transport knows it dropped messages (for example a
	// slow-consumer buffer overflowed) while staying connected.
	EventLoss
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventReconnected:
		return "reconnected"
	case EventLoss:
		return "loss"
	default:
		return fmt.Sprintf("EventKind(%d)", int(k))
	}
}

// Event is a connection event of a Backplane.
type Event struct {
	Kind EventKind
	// Err is the cause of a disconnect or a loss, if known.
	Err error
	// Time is when the transport observed the event.
	Time time.Time
	// Resumed, on EventReconnected of a Durable transport, promises that
	// delivery resumed exactly where it stopped: every message published
	// meanwhile is delivered, once and in order, before any later one. A
	// transport that cannot prove it (its position was trimmed from the
	// log, the log is gone or was recreated, a failover lost entries)
	// reports false, and the engine counts the messages as lost.
	Resumed bool
}
