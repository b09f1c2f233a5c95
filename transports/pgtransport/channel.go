package pgtransport

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// MaxChannelLen is PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes):
// a longer LISTEN channel is truncated, and pg_notify rejects it.
const MaxChannelLen = 63

// hashLen is the number of hex digits of the hash that ends a channel
// name derived from a long namespace.
const hashLen = 16

// ChannelName returns the channel of namespace under prefix: prefix +
// namespace when that is a valid channel name of at most MaxChannelLen
// bytes. Otherwise (a long namespace or prefix, or one with a NUL byte or
// invalid UTF-8, which PostgreSQL cannot hold) it is a readable head of
// prefix + namespace, "~", and 16 hex digits of the SHA-256 of the whole
// prefix + namespace, 63 bytes in all, so that distinct namespaces keep
// distinct channels. The transport always quotes the name (LISTEN
// "name"; pg_notify takes it as text), so case is kept: "Orders" and
// "orders" are distinct channels.
func ChannelName(prefix, namespace string) string {
	full := prefix + namespace
	if len(full) <= MaxChannelLen && utf8.ValidString(full) && !strings.ContainsRune(full, 0) {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	head := strings.ToValidUTF8(strings.ReplaceAll(full, "\x00", ""), "")
	limit := MaxChannelLen - 1 - hashLen
	for len(head) > limit {
		_, size := utf8.DecodeLastRuneInString(head)
		head = head[:len(head)-size]
	}
	return head + "~" + hex.EncodeToString(sum[:])[:hashLen]
}
