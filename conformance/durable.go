package conformance

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/backplane-go/backplane/core"
)

// caseResumeOrLoss (a Durable transport, needs h.Disconnect): the
// subscriber's connection is cut several times while a publisher keeps
// publishing. Each reconnect either resumes, and then every message
// arrives once and in order, or reports that messages may have been lost
// (EventReconnected with Resumed false, or EventLoss). A transport that
// claims a resume it cannot prove fails.
func (e *env) caseResumeOrLoss() {
	if e.h.Disconnect == nil {
		e.t.Skip("harness has no Disconnect")
	}
	probe := e.instance()
	if !probe.Limits().Durable {
		e.t.Skip("the transport is not Durable")
	}
	sub, rec := e.subscribed("cut subscriber")
	pub := e.instance()
	const total = 300
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			ctx, cancel := ctxFor(e.bound)
			err := pub.Publish(ctx, []byte(e.msg("log", i)))
			cancel()
			if err != nil {
				e.t.Errorf("publisher: Publish %d: %v (the publisher's own connection is not cut)", i, err)
				return
			}
			sent.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	for range 3 {
		n := sent.Load()
		if !eventually(e.bound, func() bool { return sent.Load() >= n+50 || isDone(done) }) {
			e.t.Fatalf("the publisher stalled at %d messages", sent.Load())
		}
		e.h.Disconnect(e.t, sub)
		e.expectRecoveryAfter(rec, rec.eventCount(core.EventReconnected))
	}
	<-done
	if e.t.Failed() {
		return
	}
	lossReported := func() bool {
		for _, ev := range rec.eventList() {
			if ev.Kind == core.EventLoss || ev.Kind == core.EventReconnected && !ev.Resumed {
				return true
			}
		}
		return false
	}
	want := make([]string, total)
	for i := range want {
		want[i] = e.msg("log", i)
	}
	if !eventually(e.recoverBound(), func() bool { return rec.hasAll(want) || lossReported() }) {
		n, first := rec.missing(want)
		e.t.Fatalf("%s: %d of %d messages never arrived (the first: %s), yet every reconnect claimed to resume (events %v)",
			rec.name, n, total, shorten(first), rec.eventKinds())
	}
	if lossReported() {
		return
	}
	// Resumed every time: each message once, in order.
	prefix := e.marker + "log:"
	last := -1
	for _, p := range rec.received() {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		i, _ := strconv.Atoi(p[len(prefix):])
		if i <= last {
			e.t.Fatalf("%s received log message %d after %d, across reconnects that claimed to resume: "+
				"a resumed log delivers every message once, in order", rec.name, i, last)
		}
		last = i
	}
}

// expectRecoveryAfter waits for an EventReconnected beyond the first
// `seen` ones.
func (e *env) expectRecoveryAfter(rec *recorder, seen int) {
	e.t.Helper()
	if !eventually(e.recoverBound(), func() bool { return rec.eventCount(core.EventReconnected) > seen }) {
		e.t.Fatalf("%s: no EventReconnected within %v after the cut (events: %v)", rec.name, e.recoverBound(), rec.eventKinds())
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
