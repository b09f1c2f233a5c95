// reattach.go: what the Transport does after a failed receive, until the
// receiver is attached again, and what it says then about the messages
// published meanwhile (the Err of core.EventReconnected). See "After an
// Outage" in the package documentation.

package servicebustransport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
	"github.com/Azure/go-amqp"

	"github.com/backplane-go/backplane/core"
)

var (
	// ErrSubscriptionRecreated is the Err of a core.EventReconnected after
	// the instance's subscription was deleted while it was away (by
	// AutoDeleteOnIdle after an outage longer than its interval, or by
	// someone), and delivery goes on from a subscription made again: by the
	// Provisioner, or by whoever made the first. The messages published
	// meanwhile are lost to this instance.
	ErrSubscriptionRecreated = errors.New("servicebustransport: the subscription was deleted while the instance was away: messages published meanwhile are lost")
	// ErrResumeUnproven is the Err of a core.EventReconnected after which
	// delivery goes on from the same subscription (or one the Transport
	// could not tell from it), but the Transport does not claim a resume
	// (core.Event.Resumed): Service Bus does not let it prove that every
	// message published meanwhile arrives once and in order. The error
	// says why, for the receive mode, and what is known of the
	// subscription.
	ErrResumeUnproven = errors.New("servicebustransport: resume not claimed")
)

// SubscriptionInspector reads a subscription's runtime properties (an
// *admin.Client does, with the Manage right). The Transport reads them
// when it attaches and again after every outage: a CreatedAt that changed
// means the subscription was deleted and made again meanwhile, and a
// DeadLetterMessageCount that grew means messages were dead-lettered.
type SubscriptionInspector interface {
	GetSubscriptionRuntimeProperties(ctx context.Context, topicName, subscriptionName string, options *admin.GetSubscriptionRuntimePropertiesOptions) (*admin.GetSubscriptionRuntimePropertiesResponse, error)
}

// identity is what the inspector said of a subscription when the Transport
// attached to it; known is false without an inspector, or when reading
// failed.
type identity struct {
	known        bool
	created      time.Time
	deadLettered int32
}

// attachment is the receiver the run loop reads from and its subscription.
type attachment struct {
	recv        *azservicebus.Receiver
	name        string
	provisioned bool
	id          identity
}

// outage is what the run loop learned since delivery stopped.
type outage struct {
	failures int
	// gone: an attach failed with amqp:not-found, or the inspector found no
	// subscription: the subscription was deleted.
	gone bool
	// replaced is the subscription the Provisioner made instead of the
	// deleted one; deleted is the deleted one's name.
	replaced, deleted string
}

// inspect reads the subscription's identity. found is false when the
// inspector says it does not exist.
func (t *Transport) inspect(ctx context.Context, name string) (id identity, found bool, err error) {
	in := t.opts.Inspector
	if in == nil {
		return identity{}, true, nil
	}
	ictx, cancel := context.WithTimeout(ctx, t.opts.SettleTimeout)
	defer cancel()
	p, err := in.GetSubscriptionRuntimeProperties(ictx, t.opts.Topic, name, nil)
	if err != nil {
		return identity{}, true, fmt.Errorf("servicebustransport: read subscription %s/%s (Options.Inspector): %w", t.opts.Topic, name, err)
	}
	if p == nil {
		return identity{}, false, nil
	}
	return identity{known: true, created: p.CreatedAt, deadLettered: p.DeadLetterMessageCount}, true, nil
}

// isNotFound reports whether err says that the entity does not exist: the
// SDK's error, or go-amqp's that the SDK passes on from an attach.
func isNotFound(err error) bool {
	var se *azservicebus.Error
	var ae *amqp.Error
	return errors.As(err, &se) && se.Code == azservicebus.CodeNotFound ||
		errors.As(err, &ae) && ae.Condition == amqp.ErrCondNotFound
}

// reattach tries once to attach a again after a failure; with a
// Provisioner, after the subscription was found deleted, it provisions a
// new one first. It returns the core.EventReconnected to report once the
// receiver is attached, and false while it is not.
func (t *Transport) reattach(ctx context.Context, a *attachment, o *outage) (core.Event, bool) {
	if o.gone && a.provisioned && o.replaced == "" {
		if err := t.provisionAgain(ctx, a, o); err != nil {
			if ctx.Err() == nil {
				t.retryLog(o, "servicebustransport: provisioning a subscription again failed; retrying", err)
			}
			return core.Event{}, false
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := a.recv.PeekMessages(pctx, 1, nil)
	cancel()
	if err == nil {
		var found bool
		var id identity
		id, found, err = t.inspect(ctx, a.name)
		if found {
			return t.reconnected(a, o, id, err), true
		}
		err = fmt.Errorf("servicebustransport: subscription %s/%s not found by Options.Inspector", t.opts.Topic, a.name)
	} else if !isNotFound(err) {
		if ctx.Err() == nil {
			t.retryLog(o, "servicebustransport: re-attach failed; retrying", err)
		}
		return core.Event{}, false
	}
	if o.gone {
		t.retryLog(o, "servicebustransport: the subscription does not exist; retrying", err)
	} else if a.provisioned {
		t.log.Warn("servicebustransport: the subscription was deleted while the instance was away; provisioning a new one (messages published meanwhile are lost)",
			"subscription", a.name, "err", err)
	} else {
		t.log.Error("servicebustransport: the subscription was deleted while the instance was away; retrying until it exists again "+
			"(messages published meanwhile are lost): make it again, or use a Provisioner", "subscription", a.name, "err", err)
	}
	// With a Provisioner, the next attempt provisions a new one (again,
	// if the one it made is gone too).
	o.gone, o.replaced = true, ""
	return core.Event{}, false
}

// retryLog logs a failed attempt: a warning at the first of an outage, at
// debug level after.
func (t *Transport) retryLog(o *outage, msg string, err error) {
	o.failures++
	if o.failures == 1 {
		t.log.Warn(msg, "err", err)
	} else {
		t.log.Debug(msg, "err", err, "failures", o.failures)
	}
}

// provisionAgain replaces a's deleted subscription by a new one from the
// Provisioner. The new one is the Transport's at once, so that Close
// deletes it whatever happens next.
func (t *Transport) provisionAgain(ctx context.Context, a *attachment, o *outage) error {
	name, err := t.opts.Provisioner.Provision(ctx, t.opts.Topic)
	if err != nil {
		return fmt.Errorf("servicebustransport: provision: %w", err)
	}
	recv, err := t.client.NewReceiverForSubscription(t.opts.Topic, name, &azservicebus.ReceiverOptions{ReceiveMode: t.receiveMode()})
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.opts.SettleTimeout)
		defer cancel()
		if derr := t.opts.Provisioner.Deprovision(dctx, t.opts.Topic, name); derr != nil {
			t.log.Warn("servicebustransport: delete the subscription provisioned again", "subscription", name, "err", derr)
		}
		return fmt.Errorf("servicebustransport: receiver for %s/%s: %w", t.opts.Topic, name, err)
	}
	old := *a
	t.mu.Lock()
	t.receiver, t.subscription = recv, name
	t.mu.Unlock()
	a.recv, a.name, a.id = recv, name, identity{}
	o.replaced, o.deleted = name, old.name
	// The old subscription is gone; delete it anyway in case it was only
	// out of reach (Deprovision takes a missing one for deleted).
	if err := t.release(old.recv, old.name, true); err != nil {
		t.log.Debug("servicebustransport: delete the deleted subscription", "subscription", old.name, "err", err)
	}
	return nil
}

// reconnected is the event after a successful re-attach; id is what the
// inspector read now (ierr its failure). It updates a's identity.
func (t *Transport) reconnected(a *attachment, o *outage, id identity, ierr error) core.Event {
	ev := core.Event{Kind: core.EventReconnected, Time: time.Now()}
	before := a.id
	if ierr == nil {
		a.id = id
	}
	switch {
	case o.replaced != "":
		ev.Err = fmt.Errorf("%w (subscription %s deleted; delivery goes on from %s, provisioned again)", ErrSubscriptionRecreated, o.deleted, o.replaced)
	case o.gone:
		ev.Err = fmt.Errorf("%w (subscription %s was not found while away, and exists again)", ErrSubscriptionRecreated, a.name)
	case ierr == nil && before.known && id.known && !id.created.Equal(before.created):
		ev.Err = fmt.Errorf("%w (subscription %s created at %s, the one attached to before at %s)", ErrSubscriptionRecreated,
			a.name, id.created.Format(time.RFC3339Nano), before.created.Format(time.RFC3339Nano))
	default:
		ev.Err = fmt.Errorf("%w: %s; %s", ErrResumeUnproven, t.modeCaveat(), t.sameness(a.name, before, id, ierr))
	}
	if errors.Is(ev.Err, ErrSubscriptionRecreated) {
		t.log.Warn("servicebustransport: re-attached to a subscription made again", "subscription", a.name, "err", ev.Err)
	} else {
		t.log.Info("servicebustransport: re-attached", "subscription", a.name, "err", ev.Err)
	}
	return ev
}

// modeCaveat says why the receive mode cannot prove a resume.
func (t *Transport) modeCaveat() string {
	if t.opts.PeekLock {
		return "PeekLock: messages locked on the broken link come back only when their lock expires, after later ones, " +
			"and a subscription without sessions does not promise FIFO order"
	}
	return "ReceiveAndDelete: messages the service had sent on the broken link, if any, are lost"
}

// sameness says what is known of the subscription being the one attached
// to before.
func (t *Transport) sameness(name string, before, now identity, ierr error) string {
	switch {
	case t.opts.Inspector == nil:
		return fmt.Sprintf("subscription %s not checked for recreation (no Options.Inspector)", name)
	case ierr != nil:
		return fmt.Sprintf("subscription %s not checked for recreation: %v", name, ierr)
	case !before.known:
		return fmt.Sprintf("subscription %s created at %s; not known when it was attached to", name, now.created.Format(time.RFC3339Nano))
	}
	s := fmt.Sprintf("the same subscription %s (created at %s) kept the messages published meanwhile (except those past their time to live)",
		name, now.created.Format(time.RFC3339Nano))
	if n := now.deadLettered - before.deadLettered; n > 0 {
		s += fmt.Sprintf("; %d messages were dead-lettered since (lost to this instance)", n)
	}
	return s
}
