// keyring.go: Keyring, HMAC-SHA256 signing and verification of envelopes,
// with two keys accepted during a rotation.

package core

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// MaxKeyIDLen is the longest signing key ID, in bytes.
const MaxKeyIDLen = 64

// MinSecretLen is the shortest accepted signing secret, in bytes.
const MinSecretLen = 16

// ErrUnsigned is returned by Keyring.Verify for an unsigned message.
var ErrUnsigned = errors.New("backplane: message is not signed")

// ErrBadSignature is returned by Keyring.Verify for a message whose key ID
// is unknown or whose MAC does not match.
var ErrBadSignature = errors.New("backplane: bad message signature")

// SigningKey is one HMAC-SHA256 key shared by every instance.
type SigningKey struct {
	// ID names the key on the wire (1..MaxKeyIDLen bytes), so receivers
	// know which secret to check with.
	ID string
	// Secret is at least MinSecretLen bytes; 32 random bytes are right.
	Secret []byte
}

// Keyring signs outgoing messages with its first key and accepts messages
// signed with any of its keys, so a key can be rotated without downtime:
// deploy [new, old] (or [old, new] first, then [new, old]), then [new].
type Keyring struct {
	signing SigningKey
	secrets map[string][]byte
}

// NewKeyring returns a Keyring; the first key signs, every key verifies.
func NewKeyring(keys ...SigningKey) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: a keyring needs at least one key", ErrInvalidOption)
	}
	k := &Keyring{secrets: make(map[string][]byte, len(keys))}
	for i, key := range keys {
		switch {
		case key.ID == "" || len(key.ID) > MaxKeyIDLen:
			return nil, fmt.Errorf("%w: signing key %d: ID must be 1..%d bytes", ErrInvalidOption, i, MaxKeyIDLen)
		case len(key.Secret) < MinSecretLen:
			return nil, fmt.Errorf("%w: signing key %q: secret of %d bytes, want at least %d", ErrInvalidOption, key.ID, len(key.Secret), MinSecretLen)
		}
		if _, dup := k.secrets[key.ID]; dup {
			return nil, fmt.Errorf("%w: signing key ID %q given twice", ErrInvalidOption, key.ID)
		}
		k.secrets[key.ID] = append([]byte(nil), key.Secret...)
	}
	k.signing = SigningKey{ID: keys[0].ID, Secret: k.secrets[keys[0].ID]}
	return k, nil
}

// trailerLen is the bytes signing adds to a message.
func (k *Keyring) trailerLen() int { return len(k.signing.ID) + 1 + macLen }

// AppendSigned appends e's encoding signed with the keyring's first key.
func (k *Keyring) AppendSigned(b []byte, e *Envelope) ([]byte, error) {
	start := len(b)
	b, err := e.AppendBinary(b)
	if err != nil {
		return b, err
	}
	b[start+4] |= flagSigned
	b = append(b, k.signing.ID...)
	b = append(b, byte(len(k.signing.ID)))
	m := hmac.New(sha256.New, k.signing.Secret)
	m.Write(b[start:])
	return m.Sum(b), nil
}

// Verify checks the signature of p, which decoded to e: ErrUnsigned when
// p is not signed, ErrBadSignature when the key ID is unknown or the MAC
// does not match.
func (k *Keyring) Verify(p []byte, e *Envelope) error {
	if e.KeyID == "" || e.signedLen == 0 || e.signedLen > len(p) {
		return ErrUnsigned
	}
	secret, ok := k.secrets[e.KeyID]
	if !ok {
		return fmt.Errorf("%w: unknown key ID %q", ErrBadSignature, e.KeyID)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(p[:e.signedLen])
	if !hmac.Equal(m.Sum(nil), e.mac[:]) {
		return fmt.Errorf("%w: MAC mismatch (key ID %q)", ErrBadSignature, e.KeyID)
	}
	return nil
}
