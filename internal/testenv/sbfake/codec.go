package sbfake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The fake's own small AMQP 1.0 type codec: go-amqp keeps its frame and
// type encoding internal, and only messages (amqp.Message) are marshalled
// with go-amqp itself.

// symbol is an AMQP symbol.
type symbol string

// described is a described value; performatives and sections are described
// lists whose descriptor is a small ulong code.
type described struct {
	desc  any
	value any
}

// list is an AMQP list.
type list []any

// pair is one entry of an amap.
type pair struct{ k, v any }

// amap is an AMQP map, with its order kept.
type amap []pair

// symArray is an AMQP array of symbols.
type symArray []symbol

// errShort is returned for truncated input.
var errShort = errors.New("sbfake: truncated AMQP value")

// encode appends v's AMQP encoding to b.
func encode(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteByte(0x40)
	case bool:
		if v {
			b.WriteByte(0x41)
		} else {
			b.WriteByte(0x42)
		}
	case uint8:
		b.WriteByte(0x50)
		b.WriteByte(v)
	case uint16:
		b.WriteByte(0x60)
		_ = binary.Write(b, binary.BigEndian, v)
	case uint32:
		b.WriteByte(0x70)
		_ = binary.Write(b, binary.BigEndian, v)
	case uint64:
		switch {
		case v == 0:
			b.WriteByte(0x44)
		case v < 256:
			b.WriteByte(0x53)
			b.WriteByte(byte(v))
		default:
			b.WriteByte(0x80)
			_ = binary.Write(b, binary.BigEndian, v)
		}
	case int32:
		b.WriteByte(0x71)
		_ = binary.Write(b, binary.BigEndian, v)
	case int64:
		b.WriteByte(0x81)
		_ = binary.Write(b, binary.BigEndian, v)
	case string:
		writeVar(b, 0xa1, 0xb1, []byte(v))
	case symbol:
		writeVar(b, 0xa3, 0xb3, []byte(v))
	case []byte:
		writeVar(b, 0xa0, 0xb0, v)
	case list:
		for len(v) > 0 && v[len(v)-1] == nil {
			v = v[:len(v)-1]
		}
		if len(v) == 0 {
			b.WriteByte(0x45)
			return
		}
		var body bytes.Buffer
		for _, e := range v {
			encode(&body, e)
		}
		b.WriteByte(0xd0)
		_ = binary.Write(b, binary.BigEndian, uint32(body.Len()+4))
		_ = binary.Write(b, binary.BigEndian, uint32(len(v)))
		b.Write(body.Bytes())
	case amap:
		var body bytes.Buffer
		for _, p := range v {
			encode(&body, p.k)
			encode(&body, p.v)
		}
		b.WriteByte(0xd1)
		_ = binary.Write(b, binary.BigEndian, uint32(body.Len()+4))
		_ = binary.Write(b, binary.BigEndian, uint32(2*len(v)))
		b.Write(body.Bytes())
	case symArray:
		var body bytes.Buffer
		body.WriteByte(0xb3)
		for _, s := range v {
			_ = binary.Write(&body, binary.BigEndian, uint32(len(s)))
			body.WriteString(string(s))
		}
		b.WriteByte(0xf0)
		_ = binary.Write(b, binary.BigEndian, uint32(body.Len()+4))
		_ = binary.Write(b, binary.BigEndian, uint32(len(v)))
		b.Write(body.Bytes())
	case described:
		b.WriteByte(0x00)
		encode(b, v.desc)
		encode(b, v.value)
	default:
		panic(fmt.Sprintf("sbfake: cannot encode %T", v))
	}
}

func writeVar(b *bytes.Buffer, small, large byte, p []byte) {
	if len(p) < 256 {
		b.WriteByte(small)
		b.WriteByte(byte(len(p)))
	} else {
		b.WriteByte(large)
		_ = binary.Write(b, binary.BigEndian, uint32(len(p)))
	}
	b.Write(p)
}

// decode reads one value from b and returns it with the rest of b.
func decode(b []byte) (any, []byte, error) {
	if len(b) < 1 {
		return nil, nil, errShort
	}
	code := b[0]
	b = b[1:]
	if code == 0x00 {
		desc, rest, err := decode(b)
		if err != nil {
			return nil, nil, err
		}
		val, rest, err := decode(rest)
		if err != nil {
			return nil, nil, err
		}
		return described{desc: desc, value: val}, rest, nil
	}
	return decodeCode(code, b)
}

func need(b []byte, n int) error {
	if n < 0 || len(b) < n {
		return errShort
	}
	return nil
}

// fixedWidth is the payload size of each fixed-width type code that
// decodeFixed knows.
var fixedWidth = map[byte]int{
	0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0,
	0x50: 1, 0x51: 1, 0x52: 1, 0x53: 1, 0x54: 1, 0x55: 1, 0x56: 1,
	0x60: 2, 0x61: 2,
	0x70: 4, 0x71: 4, 0x72: 4, 0x73: 4,
	0x80: 8, 0x81: 8, 0x82: 8, 0x83: 8,
	0x98: 16,
}

// decodeFixed decodes p, the fixedWidth[code] bytes of a fixed-width value.
func decodeFixed(code byte, p []byte) any {
	switch code {
	case 0x41:
		return true
	case 0x42:
		return false
	case 0x56:
		return p[0] != 0
	case 0x50:
		return p[0]
	case 0x51:
		return int8(p[0])
	case 0x60:
		return binary.BigEndian.Uint16(p)
	case 0x61:
		return int16(binary.BigEndian.Uint16(p))
	case 0x43:
		return uint32(0)
	case 0x52:
		return uint32(p[0])
	case 0x70:
		return binary.BigEndian.Uint32(p)
	case 0x54:
		return int32(int8(p[0]))
	case 0x71:
		return int32(binary.BigEndian.Uint32(p))
	case 0x72:
		return math.Float32frombits(binary.BigEndian.Uint32(p))
	case 0x73:
		return rune(binary.BigEndian.Uint32(p))
	case 0x44:
		return uint64(0)
	case 0x53:
		return uint64(p[0])
	case 0x80:
		return binary.BigEndian.Uint64(p)
	case 0x55:
		return int64(int8(p[0]))
	case 0x81, 0x83:
		return int64(binary.BigEndian.Uint64(p))
	case 0x82:
		return math.Float64frombits(binary.BigEndian.Uint64(p))
	case 0x98:
		return [16]byte(p)
	case 0x45:
		return list{}
	}
	return nil // 0x40
}

// compound reads the size and count of a list, map or array (the one-byte
// encoding when small) and splits its body off b.
func compound(b []byte, small bool) (body []byte, count int, rest []byte, err error) {
	var size int
	if small {
		if err := need(b, 2); err != nil {
			return nil, 0, nil, err
		}
		size, count, b = int(b[0])-1, int(b[1]), b[2:]
	} else {
		if err := need(b, 8); err != nil {
			return nil, 0, nil, err
		}
		size, count, b = int(binary.BigEndian.Uint32(b))-4, int(binary.BigEndian.Uint32(b[4:])), b[8:]
	}
	if err := need(b, size); err != nil {
		return nil, 0, nil, err
	}
	return b[:size], count, b[size:], nil
}

// decodeCount decodes count values from body with dec.
func decodeCount(body []byte, count int, dec func([]byte) (any, []byte, error)) ([]any, error) {
	if count > len(body) {
		return nil, errShort
	}
	vals := make([]any, 0, count)
	for range count {
		v, r, err := dec(body)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		body = r
	}
	return vals, nil
}

// decodeCode decodes a value whose constructor code was already read.
func decodeCode(code byte, b []byte) (any, []byte, error) {
	if n, ok := fixedWidth[code]; ok {
		if err := need(b, n); err != nil {
			return nil, nil, err
		}
		return decodeFixed(code, b[:n]), b[n:], nil
	}
	switch code {
	case 0xa0, 0xa1, 0xa3, 0xb0, 0xb1, 0xb3:
		var n int
		if code&0xf0 == 0xa0 {
			if err := need(b, 1); err != nil {
				return nil, nil, err
			}
			n, b = int(b[0]), b[1:]
		} else {
			if err := need(b, 4); err != nil {
				return nil, nil, err
			}
			n, b = int(binary.BigEndian.Uint32(b)), b[4:]
		}
		if err := need(b, n); err != nil {
			return nil, nil, err
		}
		p, r := b[:n], b[n:]
		switch code {
		case 0xa0, 0xb0:
			return append([]byte{}, p...), r, nil
		case 0xa1, 0xb1:
			return string(p), r, nil
		default:
			return symbol(p), r, nil
		}
	case 0xc0, 0xc1, 0xd0, 0xd1:
		body, count, rest, err := compound(b, code&0xf0 == 0xc0)
		if err != nil {
			return nil, nil, err
		}
		vals, err := decodeCount(body, count, decode)
		if err != nil {
			return nil, nil, err
		}
		if code == 0xc0 || code == 0xd0 {
			return list(vals), rest, nil
		}
		m := make(amap, 0, len(vals)/2)
		for i := 0; i+1 < len(vals); i += 2 {
			m = append(m, pair{vals[i], vals[i+1]})
		}
		return m, rest, nil
	case 0xe0, 0xf0:
		body, count, rest, err := compound(b, code == 0xe0)
		if err != nil {
			return nil, nil, err
		}
		if count == 0 {
			return []any{}, rest, nil
		}
		if err := need(body, 1); err != nil {
			return nil, nil, err
		}
		elem := body[0]
		vals, err := decodeCount(body[1:], count, func(b []byte) (any, []byte, error) { return decodeCode(elem, b) })
		if err != nil {
			return nil, nil, err
		}
		return vals, rest, nil
	}
	return nil, nil, fmt.Errorf("sbfake: unsupported AMQP type code %#02x", code)
}

// field returns l[i], or nil past its end.
func field(l list, i int) any {
	if i < len(l) {
		return l[i]
	}
	return nil
}

// asUint returns v as a uint64 when it is an unsigned integer.
func asUint(v any) (uint64, bool) {
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	}
	return 0, false
}

// asBool returns v as a bool, false for anything else.
func asBool(v any) bool {
	b, _ := v.(bool)
	return b
}

// asString returns a string or symbol as a string.
func asString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case symbol:
		return string(v)
	}
	return ""
}

// performative splits a frame body into its descriptor code and fields.
func performative(v any) (uint64, list, bool) {
	d, ok := v.(described)
	if !ok {
		return 0, nil, false
	}
	code, ok := asUint(d.desc)
	if !ok {
		return 0, nil, false
	}
	l, _ := d.value.(list)
	return code, l, true
}
