// wire.go: the versioned binary envelope (Envelope, Op, SourceID), its
// encoder and decoder.

package core

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// Wire format, version 1. All integers big-endian.
//
//	offset size  field
//	0      2     magic "BP"
//	2      1     version (1)
//	3      1     op
//	4      1     flags: bit 0 = signed; other bits must be 0
//	5      16    source instance ID
//	21     8     sequence number of the source
//	29     8     publish time, Unix nanoseconds
//	37     var   key count (uvarint), then per key: length (uvarint), bytes
//
// A signed message (flag bit 0) ends with a trailer: the key ID, its length
// (one byte, 1..MaxKeyIDLen), and 32 bytes of HMAC-SHA256 over every byte
// before the MAC. See Keyring.
//
// Op 5 (invalidate tags) carries tags where op 1 carries keys. Heartbeat,
// leave and clear messages carry no keys. Nothing may follow the last
// key. Varints must be minimal, so every message has one encoding. Decoding checks every declared length against the bytes that are
// actually there before allocating, so hostile input cannot make the decoder
// allocate more than a small multiple of the payload size.
const (
	wireMagic0   = 'B'
	wireMagic1   = 'P'
	wireVersion  = 1
	headerLen    = 37
	maxUvarint32 = 5
	flagSigned   = 0x01
	macLen       = 32
)

// MaxKeyLen is the longest key, in bytes, that the engine accepts and the
// wire format carries.
const MaxKeyLen = 1024

// MaxKeysPerMessage is the most keys one encoded message carries. The
// engine splits larger batches.
const MaxKeysPerMessage = 4096

// Op is the operation a message carries.
type Op uint8

// Operations.
const (
	// OpInvalidate evicts the message's keys.
	OpInvalidate Op = 1
	// OpClear evicts every entry.
	OpClear Op = 2
	// OpHeartbeat carries the source's last used sequence number, so that
	// receivers notice a lost tail of messages.
	OpHeartbeat Op = 3
	// OpLeave says the source is closing cleanly; like a heartbeat it
	// carries the last sequence number used. Peers forget it without
	// treating its silence as a loss.
	OpLeave Op = 4
	// OpInvalidateTags evicts every entry that carries one of the
	// message's keys as a tag (see InvalidateTags). It takes a sequence
	// number like OpInvalidate. An instance of a release before tags
	// cannot decode it, drops it and, at the source's next message or
	// heartbeat, counts it as lost.
	OpInvalidateTags Op = 5

	opMax = OpInvalidateTags
)

// String returns the op's name.
func (o Op) String() string {
	switch o {
	case OpInvalidate:
		return "invalidate"
	case OpClear:
		return "clear"
	case OpHeartbeat:
		return "heartbeat"
	case OpLeave:
		return "leave"
	case OpInvalidateTags:
		return "invalidate-tags"
	default:
		return fmt.Sprintf("Op(%d)", uint8(o))
	}
}

// SourceID identifies one Cache instance for its lifetime.
type SourceID [16]byte

// NewSourceID returns a random SourceID.
func NewSourceID() SourceID {
	var id SourceID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms.
	return id
}

// String returns the ID in hex.
func (id SourceID) String() string { return hex.EncodeToString(id[:]) }

// Envelope is one decoded message.
type Envelope struct {
	Op     Op
	Source SourceID
	// Seq is the source's sequence number: invalidate and clear messages
	// number 1, 2, 3, ... per source; a heartbeat carries the last number
	// used (0 before the first message).
	Seq uint64
	// Sent is the publish time by the source's clock.
	Sent time.Time
	// Keys are the keys to evict (OpInvalidate), or the tags whose entries
	// to evict (OpInvalidateTags).
	Keys []string
	// KeyID names the signing key of a signed message, as decoded; empty
	// for an unsigned message. Encoding ignores it (see AppendSigned).
	KeyID string

	mac       [macLen]byte // the decoded MAC of a signed message
	signedLen int          // the bytes the MAC covers
}

// EncodedLen returns the length of the envelope's encoding.
func (e *Envelope) EncodedLen() int {
	n := headerLen + uvarintLen(uint64(len(e.Keys)))
	for _, k := range e.Keys {
		n += keyEncodedLen(k)
	}
	return n
}

func keyEncodedLen(k string) int { return uvarintLen(uint64(len(k))) + len(k) }

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// AppendBinary appends the envelope's encoding to b. It validates the
// envelope: a known op, keys (or tags) only on OpInvalidate and
// OpInvalidateTags, every key non-empty and
// at most MaxKeyLen bytes, at most MaxKeysPerMessage keys.
func (e *Envelope) AppendBinary(b []byte) ([]byte, error) {
	if err := e.validate(); err != nil {
		return b, err
	}
	var hdr [headerLen]byte
	hdr[0], hdr[1], hdr[2], hdr[3], hdr[4] = wireMagic0, wireMagic1, wireVersion, byte(e.Op), 0
	copy(hdr[5:21], e.Source[:])
	binary.BigEndian.PutUint64(hdr[21:29], e.Seq)
	var sent int64
	if !e.Sent.IsZero() {
		sent = e.Sent.UnixNano()
	}
	binary.BigEndian.PutUint64(hdr[29:37], uint64(sent))
	b = append(b, hdr[:]...)
	b = binary.AppendUvarint(b, uint64(len(e.Keys)))
	for _, k := range e.Keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b, nil
}

// MarshalBinary returns the envelope's encoding.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, e.EncodedLen()))
}

func (e *Envelope) validate() error {
	switch e.Op {
	case OpInvalidate, OpInvalidateTags:
	case OpClear, OpHeartbeat, OpLeave:
		if len(e.Keys) != 0 {
			return fmt.Errorf("backplane: %v message with %d keys", e.Op, len(e.Keys))
		}
	default:
		return fmt.Errorf("backplane: unknown op %d", uint8(e.Op))
	}
	if len(e.Keys) > MaxKeysPerMessage {
		return fmt.Errorf("%w: %d keys in one message (max %d)", ErrTooManyKeys, len(e.Keys), MaxKeysPerMessage)
	}
	for _, k := range e.Keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return nil
}

func checkKey(k string) error {
	if k == "" {
		return ErrEmptyKey
	}
	if len(k) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrKeyTooLong, len(k), MaxKeyLen)
	}
	return nil
}

// peekHeader reads the op, source, sequence number and send time of an
// unsigned message
// without decoding its keys. ok is false for anything DecodeEnvelope would
// need to look at more closely (a signed or malformed header).
func peekHeader(p []byte) (op Op, src SourceID, seq uint64, sent time.Time, ok bool) {
	if len(p) < headerLen || p[0] != wireMagic0 || p[1] != wireMagic1 || p[2] != wireVersion || p[4] != 0 {
		return 0, src, 0, sent, false
	}
	op = Op(p[3])
	if op < OpInvalidate || op > opMax {
		return 0, src, 0, sent, false
	}
	copy(src[:], p[5:21])
	seq = binary.BigEndian.Uint64(p[21:29])
	if ns := int64(binary.BigEndian.Uint64(p[29:37])); ns != 0 {
		sent = time.Unix(0, ns)
	}
	return op, src, seq, sent, true
}

// DecodeEnvelope decodes one message. Any malformed input returns an error
// wrapping ErrDecode; it never panics, and it allocates no more than the
// keys actually present in p.
func DecodeEnvelope(p []byte) (Envelope, error) {
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
	if e.Op < OpInvalidate || e.Op > opMax {
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
	if e.Op != OpInvalidate && e.Op != OpInvalidateTags && n != 0 {
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
