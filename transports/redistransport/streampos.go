package redistransport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrStreamLoss is wrapped by the cause of every loss the stream mode
// reports (core.EventLoss, or core.EventReconnected with Resumed false):
// entries the subscriber had not read were trimmed, deleted or lost with
// the stream, or the server cannot prove it kept them.
var ErrStreamLoss = errors.New("redistransport: stream entries lost")

// entryID is a stream entry ID, milliseconds and sequence.
type entryID struct{ ms, seq uint64 }

func parseID(s string) (entryID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return entryID{}, fmt.Errorf("redistransport: bad stream entry ID %q", s)
	}
	return entryID{a, b}, nil
}

func (id entryID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

func (id entryID) less(o entryID) bool {
	return id.ms < o.ms || id.ms == o.ms && id.seq < o.seq
}

func (id entryID) isZero() bool { return id == entryID{} }

// position is where a subscriber stands in the stream: the last entry it
// read (or the stream's end when it subscribed) and that entry's number,
// the stream's entries-added counter when it was the newest entry. Every
// entry read adds one. Trimming removes the oldest entries and leaves the
// counter alone, so the first entry left is number entries-added - length
// + 1: when that is beyond the subscriber's number + 1, an entry it had
// not read was trimmed.
type position struct {
	id    entryID
	count int64
	// seen: the key existed (or an entry was read) since Subscribe; a
	// key that is missing afterwards is a lost stream.
	seen bool
	// server is the run_id of the server that holds the stream, "" when
	// unknown; a different one must prove that it lost nothing.
	server string
}

// anchor places p at the end of the stream that info describes (nil: the
// key does not exist).
func (p *position) anchor(info *redis.XInfoStream) error {
	if info == nil {
		p.id, p.count = entryID{}, 0
		return nil
	}
	if info.MaxDeletedEntryID == "" {
		return errors.New("redistransport: the server does not report the stream's entries-added counter: the stream mode needs Redis 7 or later")
	}
	id, err := parseID(info.LastGeneratedID)
	if err != nil {
		return err
	}
	p.id, p.count, p.seen = id, info.EntriesAdded, true
	return nil
}

// rewind places p, anchored at the end of the stream info describes, just
// before its oldest entry: every entry the stream holds is read next.
func (p *position) rewind(info *redis.XInfoStream) error {
	if info == nil || info.Length == 0 {
		return nil
	}
	first, err := parseID(info.FirstEntry.ID)
	if err != nil {
		return err
	}
	if first.seq > 0 {
		first.seq--
	} else {
		first.ms, first.seq = first.ms-1, ^uint64(0)
	}
	p.id, p.count = first, info.EntriesAdded-info.Length
	return nil
}

// read records that the entry id was read.
func (p *position) read(id entryID) {
	p.id = id
	p.count++
	p.seen = true
}

// check compares p with the stream as XINFO STREAM reports it (nil: the
// key does not exist). It returns nil when every entry after p is still in
// the stream, or an error wrapping ErrStreamLoss that says what was lost.
func (p *position) check(info *redis.XInfoStream) error {
	loss := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrStreamLoss}, args...)...)
	}
	if info == nil {
		if p.seen {
			return loss("the stream is gone (a restart without persistence, or deleted)")
		}
		return nil
	}
	if info.MaxDeletedEntryID == "" {
		return loss("the server does not report the stream's counters (Redis 7 or later needed)")
	}
	last, err := parseID(info.LastGeneratedID)
	if err != nil {
		return err
	}
	maxDeleted, err := parseID(info.MaxDeletedEntryID)
	if err != nil {
		return err
	}
	switch {
	case last.less(p.id):
		return loss("the stream's last entry %v is before the position %v: it was recreated or lost entries", last, p.id)
	case info.EntriesAdded < p.count:
		return loss("the stream counts %d entries added, fewer than the %d up to the position: it was recreated", info.EntriesAdded, p.count)
	case last == p.id && info.EntriesAdded != p.count:
		return loss("the stream counts %d entries added up to its last entry, the position %d: it was recreated", info.EntriesAdded, p.count)
	case p.id.less(maxDeleted):
		return loss("entries after the position %v were deleted (up to %v)", p.id, maxDeleted)
	case info.Length == 0:
		if info.EntriesAdded > p.count {
			return loss("the %d entries after the position were trimmed", info.EntriesAdded-p.count)
		}
		return nil
	}
	first, err := parseID(info.FirstEntry.ID)
	if err != nil {
		first, err = parseID(info.RecordedFirstEntryID)
		if err != nil {
			return err
		}
	}
	if !p.id.less(first) {
		return nil // trimming has not reached the position
	}
	if !maxDeleted.less(first) && !maxDeleted.isZero() {
		return loss("entries were deleted from the stream: the position %v cannot be placed", p.id)
	}
	if n := info.EntriesAdded - info.Length + 1; n != p.count+1 {
		return loss("%d entries after the position %v were trimmed before they were read (MaxLen or Retention too small for the time cut off)", n-p.count-1, p.id)
	}
	return nil
}
