package redistransport

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestPositionCheck(t *testing.T) {
	// The position: entry 100-0, the stream's 10th entry.
	at := func() position { return position{id: entryID{100, 0}, count: 10, seen: true} }
	xinfo := func(length, added int64, first, last, maxDeleted string) *redis.XInfoStream {
		return &redis.XInfoStream{
			Length: length, EntriesAdded: added, LastGeneratedID: last, MaxDeletedEntryID: maxDeleted,
			FirstEntry: redis.XMessage{ID: first}, RecordedFirstEntryID: first,
		}
	}
	for _, c := range []struct {
		name string
		pos  position
		info *redis.XInfoStream
		loss bool
	}{
		{"caught up", at(), xinfo(10, 10, "1-0", "100-0", "0-0"), false},
		{"behind, nothing trimmed", at(), xinfo(15, 15, "1-0", "150-0", "0-0"), false},
		{"own entry trimmed, the next one kept", at(), xinfo(5, 15, "110-0", "150-0", "0-0"), false},
		{"everything trimmed, nothing new", at(), xinfo(0, 10, "0-0", "100-0", "0-0"), false},
		{"trimmed past", at(), xinfo(4, 15, "120-0", "150-0", "0-0"), true},
		{"everything trimmed, new entries among it", at(), xinfo(0, 12, "0-0", "120-0", "0-0"), true},
		{"an unread entry deleted", at(), xinfo(14, 15, "1-0", "150-0", "120-0"), true},
		{"a read entry deleted", at(), xinfo(14, 15, "1-0", "150-0", "50-0"), false},
		{"deleted and trimmed beyond", at(), xinfo(3, 15, "130-0", "150-0", "140-0"), true},
		{"the stream is gone", at(), nil, true},
		{"no stream yet", position{}, nil, false},
		{"went backwards", at(), xinfo(3, 3, "1-0", "90-0", "0-0"), true},
		{"recreated with fewer entries", at(), xinfo(3, 3, "200-0", "220-0", "0-0"), true},
		{"recreated with as many entries", at(), xinfo(10, 10, "200-0", "300-0", "0-0"), true},
		{"recreated, same last ID", at(), xinfo(12, 12, "1-0", "100-0", "0-0"), true},
		{"Redis 6: no counters", at(), xinfo(10, 0, "1-0", "100-0", ""), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.pos
			err := p.check(c.info)
			if (err != nil) != c.loss || err != nil && !errors.Is(err, ErrStreamLoss) {
				t.Fatalf("check = %v; want a loss: %v", err, c.loss)
			}
		})
	}
}

func TestPositionReadAndAnchor(t *testing.T) {
	var p position
	if err := p.anchor(nil); err != nil || p.seen || p.count != 0 {
		t.Fatalf("anchor(nil) = %v, %+v", err, p)
	}
	p.read(entryID{5, 1})
	p.read(entryID{5, 2})
	info := &redis.XInfoStream{Length: 2, EntriesAdded: 2, LastGeneratedID: "5-2", MaxDeletedEntryID: "0-0",
		FirstEntry: redis.XMessage{ID: "5-1"}}
	if err := p.check(info); err != nil {
		t.Fatalf("check after reading every entry: %v", err)
	}
	if err := p.judge(snapshot{stream: info}, true); !errors.Is(err, ErrStreamLoss) {
		t.Fatalf("judge of a reconnect without a run_id = %v; want a loss", err)
	}
	p.server = "a"
	if err := p.judge(snapshot{runID: "b", stream: info}, true); !errors.Is(err, ErrStreamLoss) {
		t.Fatalf("judge of a restarted server = %v; want a loss", err)
	}
	p.server = "a"
	if err := p.judge(snapshot{runID: "b", durable: true, stream: info}, true); err != nil {
		t.Fatalf("judge of a restarted durable server = %v; want a resume", err)
	}
	if err := p.anchor(&redis.XInfoStream{LastGeneratedID: "1-0"}); err == nil {
		t.Fatal("anchor accepted a stream without counters (Redis 6)")
	}
}

func TestParseID(t *testing.T) {
	for _, bad := range []string{"", "1", "a-1", "1-b", "-1"} {
		if _, err := parseID(bad); err == nil {
			t.Errorf("parseID(%q) succeeded", bad)
		}
	}
	id, err := parseID("1700000000000-7")
	if err != nil || id.String() != "1700000000000-7" || !(entryID{1, 9}).less(entryID{2, 0}) {
		t.Fatalf("parseID: %v %v", id, err)
	}
}
