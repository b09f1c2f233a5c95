package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// evictionBudget is how many value bytes the eviction case writes at most
// while it waits for the store to evict.
const evictionBudget = 64 << 20

// RunStore runs the LocalStore conformance suite. newStore returns a fresh,
// empty store for one case; the suite closes it when the case ends (Close
// is idempotent, so a case that closes it itself is fine). caps declares
// what the store can do; the cases for a capability the store does not
// declare are skipped, and say so.
//
//	func TestConformance(t *testing.T) {
//		conformance.RunStore(t, func(t testing.TB) core.LocalStore {
//			return mystore.New(mystore.Config{MaxBytes: 4 << 20})
//		}, core.StoreCaps{Eviction: true, MaxValueLen: 64 << 10})
//	}
//
// The cases run in parallel in the subtest group "LocalStore"; RunStore
// returns once all of them have finished.
//
// What the cases check:
//   - a miss is ok == false; set, get, overwrite; Delete of present and
//     absent keys, of several keys at once, and of none; Clear; Len;
//   - the store copies: mutating the caller's slice after Set, or the
//     slice returned by Get, changes nothing stored;
//   - an empty (or nil) value is stored and read back as ok with length 0;
//     binary keys and values round-trip;
//   - with caps.MaxValueLen > 0: a value of exactly MaxValueLen bytes is
//     accepted, and a value clearly over it (2*MaxValueLen+1024 bytes) is
//     rejected with an error wrapping core.ErrValueTooLarge; a value of
//     MaxValueLen+1 bytes, when rejected, must be rejected with that error
//     too (a store whose bound depends on the key may accept it); without
//     a limit, a 1 MiB value round-trips;
//   - a ttl the store does not honour is still accepted (the value is
//     stored); with caps.TTL, a value set with a ttl is gone within
//     ttl + 2*TTLGranularity + 1s, and not before ttl - TTLGranularity,
//     while values set without a ttl stay;
//   - with caps.Eviction: writing far more than the store holds never
//     fails, Len stays below the number written, and some of the first
//     keys are gone. The case writes 1 KiB values (at most 64 MiB in all)
//     until Len shows an eviction, then four times as many: give the
//     store a capacity of a few MiB for the test;
//   - concurrent Set/Get/Delete/Len from several goroutines (run it with
//     -race): every read sees a value some writer wrote, and at the end
//     every key a single goroutine owned holds exactly its last write
//     (with caps.Eviction, it may also be gone);
//   - after Close: Get misses, Set/Delete/Clear return an error wrapping
//     core.ErrClosed, a second Close returns nil or such an error, and
//     Close racing with other calls is safe.
func RunStore(t *testing.T, newStore func(t testing.TB) core.LocalStore, caps core.StoreCaps) {
	t.Helper()
	if newStore == nil {
		t.Fatal("conformance: RunStore: newStore is nil")
	}
	s := &storeSuite{newStore: newStore, caps: caps}
	t.Run("LocalStore", func(t *testing.T) {
		for _, c := range storeCases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(s, t)
			})
		}
	})
}

type storeSuite struct {
	newStore func(t testing.TB) core.LocalStore
	caps     core.StoreCaps
}

type storeCase struct {
	name string
	run  func(s *storeSuite, t *testing.T)
}

var storeCases = []storeCase{
	{"Miss", (*storeSuite).caseMiss},
	{"SetGetOverwrite", (*storeSuite).caseSetGet},
	{"Delete", (*storeSuite).caseDelete},
	{"DeleteMany", (*storeSuite).caseDeleteMany},
	{"Clear", (*storeSuite).caseClear},
	{"Len", (*storeSuite).caseLen},
	{"NoAliasing", (*storeSuite).caseNoAliasing},
	{"EmptyValue", (*storeSuite).caseEmptyValue},
	{"Binary", (*storeSuite).caseBinary},
	{"ValueTooLarge", (*storeSuite).caseValueTooLarge},
	{"TTLHintAccepted", (*storeSuite).caseTTLHint},
	{"TTL", (*storeSuite).caseTTL},
	{"Eviction", (*storeSuite).caseEviction},
	{"Concurrent", (*storeSuite).caseConcurrent},
	{"Closed", (*storeSuite).caseClosed},
	{"CloseConcurrent", (*storeSuite).caseCloseConcurrent},
}

// open returns a fresh store, closed when t ends.
func (s *storeSuite) open(t *testing.T) core.LocalStore {
	t.Helper()
	st := s.newStore(t)
	if st == nil {
		t.Fatal("conformance: newStore returned nil")
	}
	t.Cleanup(func() {
		if err := closeWithin(st, 10*time.Second); err != nil && !errors.Is(err, core.ErrClosed) {
			t.Errorf("Close at the end of the case: %v", err)
		}
	})
	return st
}

// mustSet sets key and fails t on an error.
func mustSet(t *testing.T, st core.LocalStore, key string, value []byte) {
	t.Helper()
	if err := st.Set(key, value, 0); err != nil {
		t.Fatalf("Set(%q, %d bytes): %v", key, len(value), err)
	}
}

// expect checks that key holds want.
func expect(t *testing.T, st core.LocalStore, key string, want []byte) {
	t.Helper()
	got, ok := st.Get(key)
	switch {
	case !ok:
		t.Errorf("Get(%q) missed; want %q", key, shorten(string(want)))
	case !bytes.Equal(got, want):
		t.Errorf("Get(%q) = %q; want %q", key, shorten(string(got)), shorten(string(want)))
	}
}

// expectMiss checks that key is absent.
func expectMiss(t *testing.T, st core.LocalStore, key string) {
	t.Helper()
	if got, ok := st.Get(key); ok {
		t.Errorf("Get(%q) = %q, true; want a miss", key, shorten(string(got)))
	}
}

func (s *storeSuite) caseMiss(t *testing.T) {
	st := s.open(t)
	expectMiss(t, st, "absent")
	mustSet(t, st, "present", []byte("v"))
	expectMiss(t, st, "absent")
	expectMiss(t, st, "presen")
	expectMiss(t, st, "present2")
}

func (s *storeSuite) caseSetGet(t *testing.T) {
	st := s.open(t)
	mustSet(t, st, "k", []byte("first"))
	mustSet(t, st, "other", []byte("other value"))
	expect(t, st, "k", []byte("first"))
	for _, v := range []string{"second, longer than the first", "3rd", "fourth"} {
		mustSet(t, st, "k", []byte(v))
		expect(t, st, "k", []byte(v))
	}
	expect(t, st, "other", []byte("other value"))
}

func (s *storeSuite) caseDelete(t *testing.T) {
	st := s.open(t)
	mustSet(t, st, "k", []byte("v"))
	mustSet(t, st, "keep", []byte("v"))
	if err := st.Delete("k"); err != nil {
		t.Fatalf("Delete of a present key: %v", err)
	}
	expectMiss(t, st, "k")
	if err := st.Delete("k"); err != nil {
		t.Errorf("Delete of a deleted key: %v; want nil", err)
	}
	if err := st.Delete("never-set"); err != nil {
		t.Errorf("Delete of an absent key: %v; want nil", err)
	}
	if err := st.Delete(); err != nil {
		t.Errorf("Delete with no keys: %v; want nil", err)
	}
	expect(t, st, "keep", []byte("v"))
	mustSet(t, st, "k", []byte("again"))
	expect(t, st, "k", []byte("again"))
}

func (s *storeSuite) caseDeleteMany(t *testing.T) {
	st := s.open(t)
	for i := range 6 {
		mustSet(t, st, "k"+strconv.Itoa(i), []byte("v"+strconv.Itoa(i)))
	}
	if err := st.Delete("k0", "k2", "absent", "k4", "k2"); err != nil {
		t.Fatalf("Delete of several keys (some absent, one twice): %v", err)
	}
	for i := range 6 {
		key := "k" + strconv.Itoa(i)
		if i%2 == 0 {
			expectMiss(t, st, key)
		} else {
			expect(t, st, key, []byte("v"+strconv.Itoa(i)))
		}
	}
}

func (s *storeSuite) caseClear(t *testing.T) {
	st := s.open(t)
	if err := st.Clear(); err != nil {
		t.Fatalf("Clear of an empty store: %v", err)
	}
	for i := range 10 {
		mustSet(t, st, "k"+strconv.Itoa(i), []byte("v"))
	}
	if err := st.Clear(); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	for i := range 10 {
		expectMiss(t, st, "k"+strconv.Itoa(i))
	}
	if l := st.Len(); l != 0 {
		t.Errorf("Len after Clear = %d; want 0", l)
	}
	mustSet(t, st, "k0", []byte("after clear"))
	expect(t, st, "k0", []byte("after clear"))
}

func (s *storeSuite) caseLen(t *testing.T) {
	st := s.open(t)
	wantLen := func(want int, after string) {
		t.Helper()
		if l := st.Len(); l != want {
			t.Errorf("Len after %s = %d; want %d", after, l, want)
		}
	}
	wantLen(0, "open")
	for i := range 10 {
		mustSet(t, st, "k"+strconv.Itoa(i), []byte("v"))
	}
	wantLen(10, "10 Sets")
	mustSet(t, st, "k3", []byte("overwritten"))
	wantLen(10, "an overwrite")
	if err := st.Delete("k1", "k2", "k3", "absent"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantLen(7, "deleting 3 keys")
	if err := st.Clear(); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	wantLen(0, "Clear")
}

func (s *storeSuite) caseNoAliasing(t *testing.T) {
	t.Run("Set", func(t *testing.T) {
		t.Parallel()
		st := s.open(t)
		v := make([]byte, 0, 64) // spare capacity, as a reused buffer has
		v = append(v, "original"...)
		mustSet(t, st, "k", v)
		copy(v, "MUTATED!")
		_ = append(v, "more"...)
		expect(t, st, "k", []byte("original"))
	})
	t.Run("Get", func(t *testing.T) {
		t.Parallel()
		st := s.open(t)
		mustSet(t, st, "k", []byte("original"))
		mustSet(t, st, "k2", []byte("neighbour"))
		got, ok := st.Get("k")
		if !ok {
			t.Fatal("Get missed right after Set")
		}
		copy(got, "MUTATED!")
		// Appending writes into spare capacity, if any: it must not be
		// the store's memory either.
		_ = append(got, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"...)
		expect(t, st, "k", []byte("original"))
		expect(t, st, "k2", []byte("neighbour"))
		a, _ := st.Get("k")
		b, _ := st.Get("k")
		if len(a) > 0 && len(b) > 0 && &a[0] == &b[0] {
			t.Errorf("two Gets returned the same backing array; Get returns a slice the caller owns")
		}
	})
}

func (s *storeSuite) caseEmptyValue(t *testing.T) {
	st := s.open(t)
	for _, c := range []struct {
		key   string
		value []byte
	}{{"empty", []byte{}}, {"nil", nil}} {
		mustSet(t, st, c.key, c.value)
		got, ok := st.Get(c.key)
		if !ok || len(got) != 0 {
			t.Errorf("Get(%q) after Set of an %s value = %q, %v; want an empty value, true", c.key, c.key, got, ok)
		}
	}
	mustSet(t, st, "was-full", []byte("full"))
	mustSet(t, st, "was-full", nil)
	if got, ok := st.Get("was-full"); !ok || len(got) != 0 {
		t.Errorf("Get after overwriting with an empty value = %q, %v; want an empty value, true", got, ok)
	}
}

func (s *storeSuite) caseBinary(t *testing.T) {
	st := s.open(t)
	all := make([]byte, 512)
	for i := range all {
		all[i] = byte(i)
	}
	if s.caps.MaxValueLen > 0 && len(all) > s.caps.MaxValueLen {
		all = all[:s.caps.MaxValueLen]
	}
	keys := []string{"a\x00b", "a\x00c", "ключ", "日本", "\xff\xfe", " ", strings.Repeat("k", 250), "a/b:c d"}
	for i, k := range keys {
		v := append([]byte(strconv.Itoa(i)+":"), all...)
		if s.caps.MaxValueLen > 0 && len(v) > s.caps.MaxValueLen {
			v = v[:s.caps.MaxValueLen]
		}
		mustSet(t, st, k, v)
	}
	for i, k := range keys {
		v := append([]byte(strconv.Itoa(i)+":"), all...)
		if s.caps.MaxValueLen > 0 && len(v) > s.caps.MaxValueLen {
			v = v[:s.caps.MaxValueLen]
		}
		expect(t, st, k, v)
	}
}

func (s *storeSuite) caseValueTooLarge(t *testing.T) {
	st := s.open(t)
	limit := s.caps.MaxValueLen
	if limit <= 0 {
		v := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		mustSet(t, st, "big", v)
		expect(t, st, "big", v)
		return
	}
	exact := bytes.Repeat([]byte{'x'}, limit)
	mustSet(t, st, "max", exact)
	expect(t, st, "max", exact)

	if err := st.Set("over1", make([]byte, limit+1), 0); err != nil && !errors.Is(err, core.ErrValueTooLarge) {
		t.Errorf("Set of MaxValueLen+1 bytes: %v; a value the store cannot hold fails with an error wrapping core.ErrValueTooLarge", err)
	} else if err == nil {
		t.Logf("Set of MaxValueLen+1 = %d bytes was accepted (allowed when MaxValueLen is a conservative bound)", limit+1)
	}

	over := 2*limit + 1024
	if err := st.Set("over", make([]byte, over), 0); !errors.Is(err, core.ErrValueTooLarge) {
		t.Errorf("Set of %d bytes (MaxValueLen %d): error %v; want an error wrapping core.ErrValueTooLarge", over, limit, err)
	}
	expectMiss(t, st, "over")
	// A rejected overwrite may keep or drop the old value, but must not
	// store a broken one.
	if err := st.Set("max", make([]byte, over), 0); !errors.Is(err, core.ErrValueTooLarge) {
		t.Errorf("overwrite with %d bytes: error %v; want an error wrapping core.ErrValueTooLarge", over, err)
	}
	if got, ok := st.Get("max"); ok && !bytes.Equal(got, exact) {
		t.Errorf("after a rejected overwrite, Get returned %d bytes that are not the old value", len(got))
	}
	mustSet(t, st, "small", []byte("still works"))
	expect(t, st, "small", []byte("still works"))
}

func (s *storeSuite) caseTTLHint(t *testing.T) {
	st := s.open(t)
	if err := st.Set("k", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Set with ttl 1h: %v (a store that cannot expire entries ignores the ttl)", err)
	}
	expect(t, st, "k", []byte("v"))
}

func (s *storeSuite) caseTTL(t *testing.T) {
	if !s.caps.TTL {
		t.Skip("store does not declare TTL")
	}
	st := s.open(t)
	gran := max(s.caps.TTLGranularity, time.Millisecond)
	ttl := max(3*gran, 50*time.Millisecond)
	mustSet(t, st, "forever", []byte("v"))
	if err := st.Set("long", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Set with ttl 1h: %v", err)
	}
	start := time.Now()
	if err := st.Set("short", []byte("v"), ttl); err != nil {
		t.Fatalf("Set with ttl %v: %v", ttl, err)
	}
	if _, ok := st.Get("short"); !ok {
		if el := time.Since(start); el < ttl-gran {
			t.Errorf("value with ttl %v missed %v after Set; it may expire no earlier than ttl - TTLGranularity", ttl, el)
		}
	}
	limit := ttl + 2*gran + time.Second
	if !eventually(time.Until(start.Add(limit)), func() bool {
		_, ok := st.Get("short")
		return !ok
	}) {
		t.Errorf("value with ttl %v (TTLGranularity %v) still present %v after Set", ttl, s.caps.TTLGranularity, time.Since(start))
	}
	expect(t, st, "forever", []byte("v"))
	expect(t, st, "long", []byte("v"))
}

func (s *storeSuite) caseEviction(t *testing.T) {
	if !s.caps.Eviction {
		t.Skip("store does not declare Eviction")
	}
	st := s.open(t)
	size := 1024
	if s.caps.MaxValueLen > 0 && size > s.caps.MaxValueLen {
		size = s.caps.MaxValueLen
	}
	value := func(i int) []byte {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(i + j)
		}
		return v
	}
	key := func(i int) string { return fmt.Sprintf("evict-%08d", i) }
	limit := evictionBudget / size
	firstEvicted := -1
	written := 0
	for ; written < limit; written++ {
		if err := st.Set(key(written), value(written), 0); err != nil {
			t.Fatalf("Set #%d: %v; a store with eviction makes room instead of failing", written, err)
		}
		if firstEvicted < 0 && (written+1)%128 == 0 && st.Len() < written+1 {
			firstEvicted = written + 1
			limit = min(limit, 4*firstEvicted)
		}
	}
	if firstEvicted < 0 {
		t.Fatalf("no eviction after writing %d values of %d bytes (%d MiB): give the store under test a capacity of a few MiB",
			written, size, written*size>>20)
	}
	l := st.Len()
	if l >= written {
		t.Errorf("Len = %d after writing %d distinct keys; want fewer (entries are evicted)", l, written)
	}
	early := max(firstEvicted/10, 1)
	gone := 0
	for i := range early {
		if _, ok := st.Get(key(i)); !ok {
			gone++
		}
	}
	if gone == 0 {
		t.Errorf("all of the first %d keys are still present after writing %d keys (Len %d)", early, written, l)
	}
	// What is still present is intact.
	for i := written - 1; i >= written-early; i-- {
		if got, ok := st.Get(key(i)); ok && !bytes.Equal(got, value(i)) {
			t.Errorf("Get(%q) after eviction returned a wrong value", key(i))
			break
		}
	}
	t.Logf("first eviction seen after %d writes; %d written, Len %d, %d of the first %d keys gone", firstEvicted, written, l, gone, early)
}

// storeValue is the value writer w writes to key in its seq-th write: it
// names its origin and carries a checkable padding, so that a torn or
// misplaced value is recognised.
func storeValue(key string, w, seq int) []byte {
	head := fmt.Sprintf("%s|%d|%d|", key, w, seq)
	return append([]byte(head), bytes.Repeat([]byte{byte('a' + seq%26)}, seq%50)...)
}

// checkStoreValue reports why v is not a value storeValue could have
// produced for key, or "".
func checkStoreValue(key string, v []byte) string {
	parts := strings.SplitN(string(v), "|", 4)
	if len(parts) != 4 || parts[0] != key {
		return fmt.Sprintf("value %q does not belong to key %q", shorten(string(v)), key)
	}
	w, err1 := strconv.Atoi(parts[1])
	seq, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || !bytes.Equal(v, storeValue(key, w, seq)) {
		return fmt.Sprintf("value %q is torn", shorten(string(v)))
	}
	return ""
}

func (s *storeSuite) caseConcurrent(t *testing.T) {
	st := s.open(t)
	workers, ops := 8, 2000
	if testing.Short() {
		workers, ops = 4, 300
	}
	const ownKeys, sharedKeys = 16, 8
	shared := func(i int) string { return "shared-" + strconv.Itoa(i) }
	type state struct {
		value   []byte
		present bool
	}
	finals := make([]map[string]state, workers)
	var bad atomic.Int64
	report := func(format string, args ...any) {
		if bad.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		own := func(i int) string { return fmt.Sprintf("own-%d-%d", w, i) }
		final := make(map[string]state)
		finals[w] = final
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for seq := range ops {
				switch op := r.IntN(10); op {
				case 0, 1:
					k := own(r.IntN(ownKeys))
					v := storeValue(k, w, seq)
					if err := st.Set(k, v, 0); err != nil {
						report("Set(%q): %v", k, err)
						continue
					}
					final[k] = state{v, true}
				case 2:
					k := own(r.IntN(ownKeys))
					if err := st.Delete(k); err != nil {
						report("Delete(%q): %v", k, err)
						continue
					}
					final[k] = state{}
				case 3, 4:
					k := own(r.IntN(ownKeys))
					got, ok := st.Get(k)
					want := final[k]
					switch {
					case ok && !want.present:
						report("worker %d: Get(%q) = %q, but the key's only writer deleted it (or never set it)", w, k, shorten(string(got)))
					case ok && !bytes.Equal(got, want.value):
						report("worker %d: Get(%q) = %q; its only writer last set %q", w, k, shorten(string(got)), shorten(string(want.value)))
					case !ok && want.present && !s.caps.Eviction:
						report("worker %d: Get(%q) missed; its only writer set it and the store does not evict", w, k)
					}
				case 5:
					k := shared(r.IntN(sharedKeys))
					if err := st.Set(k, storeValue(k, w, seq), 0); err != nil {
						report("Set(%q): %v", k, err)
					}
				case 6, 7:
					k := shared(r.IntN(sharedKeys))
					if got, ok := st.Get(k); ok {
						if why := checkStoreValue(k, got); why != "" {
							report("Get(%q): %s", k, why)
						}
					}
				case 8:
					k := shared(r.IntN(sharedKeys))
					if err := st.Delete(k); err != nil {
						report("Delete(%q): %v", k, err)
					}
				case 9:
					if l := st.Len(); l < 0 || l > workers*ownKeys+sharedKeys {
						report("Len = %d; at most %d keys exist", l, workers*ownKeys+sharedKeys)
					}
					ks := []string{own(r.IntN(ownKeys)), own(r.IntN(ownKeys))}
					if err := st.Delete(ks...); err != nil {
						report("Delete(%q): %v", ks, err)
						continue
					}
					for _, k := range ks {
						final[k] = state{}
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	present := 0
	for w, final := range finals {
		for k, want := range final {
			got, ok := st.Get(k)
			switch {
			case ok && !want.present:
				t.Errorf("final: Get(%q) = %q; worker %d deleted it last", k, shorten(string(got)), w)
			case ok && !bytes.Equal(got, want.value):
				t.Errorf("final: Get(%q) = %q; worker %d last set %q", k, shorten(string(got)), w, shorten(string(want.value)))
			case !ok && want.present && !s.caps.Eviction:
				t.Errorf("final: Get(%q) missed; worker %d last set it", k, w)
			}
			if ok {
				present++
			}
		}
	}
	for i := range sharedKeys {
		if got, ok := st.Get(shared(i)); ok {
			present++
			if why := checkStoreValue(shared(i), got); why != "" {
				t.Errorf("final: Get(%q): %s", shared(i), why)
			}
		}
	}
	if l := st.Len(); !s.caps.Eviction && l != present {
		t.Errorf("final: Len = %d; %d keys are present", l, present)
	}
}

func (s *storeSuite) caseClosed(t *testing.T) {
	st := s.open(t)
	mustSet(t, st, "k", []byte("v"))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectMiss(t, st, "k")
	expectMiss(t, st, "absent")
	if err := st.Set("k2", []byte("v"), 0); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Set after Close: error %v; want an error wrapping core.ErrClosed", err)
	}
	if err := st.Delete("k"); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Delete after Close: error %v; want an error wrapping core.ErrClosed", err)
	}
	if err := st.Clear(); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Clear after Close: error %v; want an error wrapping core.ErrClosed", err)
	}
	if err := st.Close(); err != nil && !errors.Is(err, core.ErrClosed) {
		t.Errorf("second Close: %v; want nil or an error wrapping core.ErrClosed", err)
	}
	_ = st.Len() // must not panic
	expectMiss(t, st, "k")
}

func (s *storeSuite) caseCloseConcurrent(t *testing.T) {
	st := s.open(t)
	const workers = 4
	var started atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				k := fmt.Sprintf("k-%d-%d", w, i%32)
				err := st.Set(k, []byte("v"), 0)
				if err != nil {
					if !errors.Is(err, core.ErrClosed) {
						t.Errorf("Set racing with Close: %v; want nil or an error wrapping core.ErrClosed", err)
					}
					return
				}
				st.Get(k)
				if err := st.Delete(k); err != nil && !errors.Is(err, core.ErrClosed) {
					t.Errorf("Delete racing with Close: %v", err)
					return
				}
				if i%64 == 0 {
					if err := st.Clear(); err != nil && !errors.Is(err, core.ErrClosed) {
						t.Errorf("Clear racing with Close: %v", err)
						return
					}
					st.Len()
				}
				if i == 100 {
					started.Add(1)
				}
			}
			t.Errorf("Set kept succeeding after Close")
		})
	}
	if !eventually(10*time.Second, func() bool { return started.Load() == workers }) {
		t.Log("workers were slow to start; closing anyway")
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close racing with other calls: %v", err)
	}
	if !waitGroupWithin(&wg, 10*time.Second) {
		t.Fatalf("calls racing with Close did not end within 10s")
	}
}
