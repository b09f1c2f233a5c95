package sbfake

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 300)
	cases := []any{
		nil, true, false, uint8(7), uint16(65535), uint32(1 << 31), uint64(0), uint64(200), uint64(1 << 40),
		int32(-5), int64(-1 << 40), "", "short", long, symbol("sym"), symbol(long), []byte{}, []byte(long),
		list{}, list{uint32(1), "a", list{symbol("b")}},
		amap{{symbol("k"), "v"}, {"k2", int32(2)}},
		described{desc: uint64(codeAttach), value: list{"name", uint32(0), true}},
	}
	for _, c := range cases {
		var b bytes.Buffer
		encode(&b, c)
		got, rest, err := decode(b.Bytes())
		if err != nil || len(rest) != 0 {
			t.Fatalf("%#v: err %v, %d bytes left", c, err, len(rest))
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %#v gave %#v", c, got)
		}
	}
	// A symbol array decodes as a slice of symbols; trailing nulls of a
	// list are not encoded.
	var b bytes.Buffer
	encode(&b, list{symArray{"A", "B"}, nil, nil})
	got, _, err := decode(b.Bytes())
	if err != nil || !reflect.DeepEqual(got, list{[]any{symbol("A"), symbol("B")}}) {
		t.Fatalf("got %#v, %v", got, err)
	}
}

func TestDecodeRejectsTruncatedAndHostileInput(t *testing.T) {
	for _, in := range [][]byte{
		{}, {0x70, 1}, {0xa1, 5, 'a'}, {0xd0, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff},
		{0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40}, {0x00}, {0xee},
	} {
		if _, _, err := decode(in); err == nil {
			t.Errorf("decode(% x) succeeded", in)
		}
	}
}

func FuzzDecode(f *testing.F) {
	var b bytes.Buffer
	encode(&b, described{desc: uint64(codeTransfer), value: list{uint32(1), uint32(2), []byte("tag"), uint32(0), false, true}})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _, _ = decode(in)
	})
}
