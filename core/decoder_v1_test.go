package core

import (
	"encoding/binary"
	"fmt"
	"time"
)

// decodeEnvelopeV1 is DecodeEnvelope as the release before tags shipped
// it (format version 1, ops 1 to 4), pinned to show what an instance of
// that release does with messages of this one.
//
// DecodeEnvelope decodes one message. Any malformed input returns an error
// wrapping ErrDecode; it never panics, and it allocates no more than the
// keys actually present in p.
func decodeEnvelopeV1(p []byte) (Envelope, error) {
	var e Envelope
	if len(p) < headerLen {
		return e, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrDecode, len(p), headerLen)
	}
	if p[0] != wireMagic0 || p[1] != wireMagic1 {
		return e, fmt.Errorf("%w: bad magic %#x%02x", ErrDecode, p[0], p[1])
	}
	if p[2] != wireVersion {
		return e, fmt.Errorf("%w: unsupported version %d (this build speaks %d)", ErrDecode, p[2], wireVersion)
	}
	e.Op = Op(p[3])
	if e.Op < OpInvalidate || e.Op > OpLeave {
		return e, fmt.Errorf("%w: unknown op %d", ErrDecode, p[3])
	}
	if p[4]&^flagSigned != 0 {
		return e, fmt.Errorf("%w: unknown flags %#x", ErrDecode, p[4])
	}
	if p[4]&flagSigned != 0 {
		// The trailer is at the end: find the MAC and key ID first, then
		// decode the body before them.
		if len(p) < headerLen+1+2+macLen {
			return e, fmt.Errorf("%w: signed message of %d bytes is too short for its trailer", ErrDecode, len(p))
		}
		copy(e.mac[:], p[len(p)-macLen:])
		e.signedLen = len(p) - macLen
		body := p[:e.signedLen]
		l := int(body[len(body)-1])
		if l < 1 || l > MaxKeyIDLen || l+2 > len(body)-headerLen {
			return e, fmt.Errorf("%w: signed message with a bad key ID length %d", ErrDecode, l)
		}
		e.KeyID = string(body[len(body)-1-l : len(body)-1])
		p = body[:len(body)-1-l]
	}
	copy(e.Source[:], p[5:21])
	e.Seq = binary.BigEndian.Uint64(p[21:29])
	if ns := int64(binary.BigEndian.Uint64(p[29:37])); ns != 0 {
		e.Sent = time.Unix(0, ns)
	}
	rest := p[headerLen:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || w > maxUvarint32 || w != uvarintLen(n) {
		return e, fmt.Errorf("%w: bad key count", ErrDecode)
	}
	rest = rest[w:]
	if e.Op != OpInvalidate && n != 0 {
		return e, fmt.Errorf("%w: %v message with %d keys", ErrDecode, e.Op, n)
	}
	if n > MaxKeysPerMessage {
		return e, fmt.Errorf("%w: %d keys (max %d)", ErrDecode, n, MaxKeysPerMessage)
	}
	// Every key takes at least two bytes (length and one byte of key).
	if n > uint64(len(rest)/2) {
		return e, fmt.Errorf("%w: %d keys declared in %d bytes", ErrDecode, n, len(rest))
	}
	if n > 0 {
		e.Keys = make([]string, 0, n)
	}
	for i := uint64(0); i < n; i++ {
		l, w := binary.Uvarint(rest)
		if w <= 0 || w > maxUvarint32 || w != uvarintLen(l) {
			return e, fmt.Errorf("%w: bad length of key %d", ErrDecode, i)
		}
		rest = rest[w:]
		if l == 0 || l > MaxKeyLen {
			return e, fmt.Errorf("%w: key %d has length %d (1..%d)", ErrDecode, i, l, MaxKeyLen)
		}
		if l > uint64(len(rest)) {
			return e, fmt.Errorf("%w: key %d declares %d bytes, %d left", ErrDecode, i, l, len(rest))
		}
		e.Keys = append(e.Keys, string(rest[:l]))
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return e, fmt.Errorf("%w: %d trailing bytes", ErrDecode, len(rest))
	}
	return e, nil
}
