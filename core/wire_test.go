package core

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func sampleEnvelopes() []Envelope {
	src := SourceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	at := time.Unix(1700000000, 123456789)
	return []Envelope{
		{Op: OpInvalidate, Source: src, Seq: 1, Sent: at, Keys: []string{"user:1"}},
		{Op: OpInvalidate, Source: src, Seq: 1 << 40, Sent: at, Keys: []string{"a", "b", strings.Repeat("k", MaxKeyLen), "\x00\xff"}},
		{Op: OpClear, Source: src, Seq: 7, Sent: at},
		{Op: OpHeartbeat, Source: src, Seq: 0},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range sampleEnvelopes() {
		t.Run(e.Op.String(), func(t *testing.T) {
			b, err := e.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != e.EncodedLen() {
				t.Fatalf("EncodedLen %d, encoded %d bytes", e.EncodedLen(), len(b))
			}
			got, err := DecodeEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Op != e.Op || got.Source != e.Source || got.Seq != e.Seq || !got.Sent.Equal(e.Sent) || len(got.Keys) != len(e.Keys) {
				t.Fatalf("round trip: got %+v, want %+v", got, e)
			}
			for i := range e.Keys {
				if got.Keys[i] != e.Keys[i] {
					t.Fatalf("key %d: got %q want %q", i, got.Keys[i], e.Keys[i])
				}
			}
		})
	}
}

func TestEnvelopeEncodeRejects(t *testing.T) {
	cases := map[string]Envelope{
		"unknown op":        {Op: 9},
		"keys on heartbeat": {Op: OpHeartbeat, Keys: []string{"a"}},
		"keys on clear":     {Op: OpClear, Keys: []string{"a"}},
		"empty key":         {Op: OpInvalidate, Keys: []string{""}},
		"long key":          {Op: OpInvalidate, Keys: []string{strings.Repeat("x", MaxKeyLen+1)}},
		"too many keys":     {Op: OpInvalidate, Keys: make([]string, MaxKeysPerMessage+1)},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := e.MarshalBinary(); err == nil {
				t.Fatal("encoded an invalid envelope")
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := (&Envelope{Op: OpInvalidate, Seq: 1, Keys: []string{"abc"}}).MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":             nil,
		"short":             good[:10],
		"bad magic":         mut(func(b []byte) []byte { b[0] = 'X'; return b }),
		"future version":    mut(func(b []byte) []byte { b[2] = 2; return b }),
		"unknown op":        mut(func(b []byte) []byte { b[3] = 0; return b }),
		"flags":             mut(func(b []byte) []byte { b[4] = 1; return b }),
		"no key count":      good[:headerLen],
		"trailing":          append(append([]byte(nil), good...), 0),
		"truncated key":     good[:len(good)-1],
		"huge key count":    append(append([]byte(nil), good[:headerLen]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"count beyond data": append(append([]byte(nil), good[:headerLen]...), 100, 1, 'a'),
		"zero-length key":   append(append([]byte(nil), good[:headerLen]...), 1, 0),
		"overlong varint":   append(append([]byte(nil), good[:headerLen]...), 0x80, 0x80, 0x80, 0x80, 0x80, 0x01),
		"non-minimal count": append(append([]byte(nil), good[:headerLen]...), 0x81, 0x00, 3, 'a', 'b', 'c'),
		"heartbeat w/ keys": mut(func(b []byte) []byte { b[3] = byte(OpHeartbeat); return b }),
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEnvelope(p)
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("got %v, want ErrDecode", err)
			}
		})
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	b, _ := (&Envelope{Op: OpInvalidate, Keys: []string{"key"}}).MarshalBinary()
	e, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if e.Keys[0] != "key" {
		t.Fatalf("key changed with the payload: %q", e.Keys[0])
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, e := range sampleEnvelopes() {
		b, _ := e.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte("BP"))
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := DecodeEnvelope(p)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		// Whatever decodes must encode back to the same bytes.
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded envelope does not encode: %v", err)
		}
		if !bytes.Equal(b, p) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", p, b)
		}
	})
}

func BenchmarkEnvelope(b *testing.B) {
	e := Envelope{Op: OpInvalidate, Seq: 42, Sent: time.Now(), Keys: []string{"user:1", "user:2", "product:12345", "cart:abcdef"}}
	buf, _ := e.MarshalBinary()
	b.Run("encode", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			out, _ = e.AppendBinary(out[:0])
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeEnvelope(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
