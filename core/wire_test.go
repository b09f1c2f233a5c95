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
		{Op: OpLeave, Source: src, Seq: 12},
		{Op: OpInvalidateTags, Source: src, Seq: 13, Sent: at, Keys: []string{"category:shoes", "product:7"}},
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
		"keys on leave":     {Op: OpLeave, Keys: []string{"a"}},
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
	kr, _ := NewKeyring(SigningKey{ID: "k1", Secret: []byte("0123456789abcdef")})
	for _, e := range sampleEnvelopes() {
		b, _ := kr.AppendSigned(nil, &e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := DecodeEnvelope(p)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		// Whatever decodes must encode back to the same bytes (for a
		// signed message: all but the MAC, under a key of the same ID).
		var b []byte
		if e.KeyID != "" {
			kr, err := NewKeyring(SigningKey{ID: e.KeyID, Secret: make([]byte, MinSecretLen)})
			if err != nil {
				t.Fatalf("decoded key ID %q is not a valid ID: %v", e.KeyID, err)
			}
			b, err = kr.AppendSigned(nil, &e)
			if err != nil {
				t.Fatalf("decoded envelope does not encode: %v", err)
			}
			if len(b) != len(p) || !bytes.Equal(b[:len(b)-macLen], p[:len(p)-macLen]) {
				t.Fatalf("re-encoding differs:\n in %x\nout %x", p, b)
			}
			if err := kr.Verify(p, &e); err == nil && !bytes.Equal(b, p) {
				t.Fatal("a MAC verified that the key did not make")
			}
			return
		}
		b, err = e.MarshalBinary()
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

func TestSignedRoundTrip(t *testing.T) {
	k1 := SigningKey{ID: "k1", Secret: []byte("0123456789abcdef")}
	k2 := SigningKey{ID: "k2-rotated", Secret: []byte("fedcba9876543210fedcba")}
	old, _ := NewKeyring(k1)
	rotating, _ := NewKeyring(k2, k1)
	other, _ := NewKeyring(SigningKey{ID: "k1", Secret: []byte("not-the-same-secret")})
	for _, e := range sampleEnvelopes() {
		p, err := old.AppendSigned(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeEnvelope(p)
		if err != nil {
			t.Fatal(err)
		}
		if d.KeyID != "k1" || d.Seq != e.Seq || len(d.Keys) != len(e.Keys) {
			t.Fatalf("decoded %+v", d)
		}
		if err := old.Verify(p, &d); err != nil {
			t.Fatalf("own signature: %v", err)
		}
		if err := rotating.Verify(p, &d); err != nil {
			t.Fatalf("rotation keyring rejects the old key: %v", err)
		}
		if err := other.Verify(p, &d); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("a different secret under the same ID: %v", err)
		}
		// Flip any byte before the MAC: it no longer verifies (or decodes).
		for i := 0; i < len(p)-macLen; i++ {
			q := append([]byte(nil), p...)
			q[i] ^= 0x20
			if d2, err := DecodeEnvelope(q); err == nil {
				if d2.KeyID == "" {
					continue // the signed flag itself was flipped off
				}
				if err := rotating.Verify(q, &d2); err == nil {
					t.Fatalf("tampered byte %d still verifies", i)
				}
			}
		}
		unsigned, _ := e.MarshalBinary()
		du, _ := DecodeEnvelope(unsigned)
		if err := old.Verify(unsigned, &du); !errors.Is(err, ErrUnsigned) {
			t.Fatalf("unsigned: %v", err)
		}
	}
	q, _ := rotating.AppendSigned(nil, &Envelope{Op: OpClear, Seq: 1})
	dq, _ := DecodeEnvelope(q)
	if err := old.Verify(q, &dq); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unknown key ID: %v", err)
	}
}

func TestKeyringValidation(t *testing.T) {
	for name, keys := range map[string][]SigningKey{
		"none":         nil,
		"empty ID":     {{ID: "", Secret: make([]byte, 16)}},
		"long ID":      {{ID: strings.Repeat("i", MaxKeyIDLen+1), Secret: make([]byte, 16)}},
		"short secret": {{ID: "a", Secret: make([]byte, 15)}},
		"duplicate":    {{ID: "a", Secret: make([]byte, 16)}, {ID: "a", Secret: make([]byte, 16)}},
	} {
		if _, err := NewKeyring(keys...); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecodeRejectsBadTrailer(t *testing.T) {
	kr, _ := NewKeyring(SigningKey{ID: "k", Secret: make([]byte, 16)})
	p, _ := kr.AppendSigned(nil, &Envelope{Op: OpInvalidate, Keys: []string{"a"}})
	short := p[:headerLen+10]
	zeroLen := append([]byte(nil), p...)
	zeroLen[len(p)-macLen-1] = 0
	hugeLen := append([]byte(nil), p...)
	hugeLen[len(p)-macLen-1] = 200
	for name, q := range map[string][]byte{"short": short, "zero key ID length": zeroLen, "key ID length beyond body": hugeLen} {
		if _, err := DecodeEnvelope(q); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
