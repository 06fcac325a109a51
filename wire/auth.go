package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrAuth is wrapped by handshake failures caused by a wrong or missing secret.
var ErrAuth = errors.New("authentication failed")

// NewSecret returns a fresh cluster secret: 32 random bytes as 64 hex characters.
func NewSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("[internal error] read random bytes: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// NonceSize is the length of a handshake nonce.
const NonceSize = 32

// NewNonce returns NonceSize random bytes.
func NewNonce() []byte {
	b := make([]byte, NonceSize)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("[internal error] read random bytes: %v", err))
	}
	return b
}

// Proof is one side's proof in a mutual challenge: HMAC-SHA256 under the cluster secret over
// label, the client's nonce, the server's nonce and the channel binding (SHA-256 of the TLS
// server's certificate; empty on a local socket), each field length-prefixed. Both nonces are
// fresh per connection, so no recorded proof is accepted twice; the label differs per side and
// per protocol, so a proof of one kind is never one of another.
func Proof(secret, label string, clientNonce, serverNonce, binding []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	var n [4]byte
	for _, f := range [][]byte{[]byte(label), clientNonce, serverNonce, binding} {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		m.Write(n[:])
		m.Write(f)
	}
	return m.Sum(nil)
}

// CheckProof reports, in constant time, whether proof is Proof of the same arguments.
func CheckProof(secret, label string, clientNonce, serverNonce, binding, proof []byte) bool {
	return hmac.Equal(Proof(secret, label, clientNonce, serverNonce, binding), proof)
}
