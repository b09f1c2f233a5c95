package core

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzAckFor: the entries of an acknowledgement never make ackFor panic,
// and it confirms a number only from an entry for the ID asked about.
func FuzzAckFor(f *testing.F) {
	id := SourceID{1, 2, 3}
	f.Add(ackEntryPrefix+id.String()+":42", "")
	f.Add(ackEntryPrefix+id.String()+":", "x")
	f.Add("\x00:1", ackEntryPrefix+id.String()+":18446744073709551615")
	f.Fuzz(func(t *testing.T, a, b string) {
		seq, ok := ackFor([]string{a, b}, id)
		if !ok {
			return
		}
		want := ackEntryPrefix + id.String() + ":"
		for _, e := range []string{a, b} {
			if rest, found := strings.CutPrefix(e, want); found {
				if n, err := strconv.ParseUint(rest, 10, 64); err != nil || n != seq {
					t.Fatalf("ackFor(%q, %q) = %d, but the entry for the ID says %q", a, b, seq, rest)
				}
				return
			}
		}
		t.Fatalf("ackFor(%q, %q) = %d, true without an entry for the ID", a, b, seq)
	})
}
