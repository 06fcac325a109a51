package ucx

import (
	"bytes"
	"testing"
)

// FuzzHandshake: the three fixed-size messages of the UCX handshake, as either side reads
// them from a peer that has not authenticated yet.
func FuzzHandshake(f *testing.F) {
	f.Add(append([]byte(magic), make([]byte, 32)...))
	f.Add(make([]byte, proofLen))
	f.Add(append([]byte{1}, make([]byte, 32)...))
	f.Add([]byte("SHOALUX1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if nonce, err := parseHello(b); err == nil && (len(b) != helloLen || !bytes.HasPrefix(b, []byte(magic)) || len(nonce) != 32) {
			t.Fatalf("hello %x accepted", b)
		}
		if proof, nonce, err := parseProof(b); err == nil && (len(b) != proofLen || len(proof) != 32 || len(nonce) != 32) {
			t.Fatalf("proof %x accepted", b)
		}
		if proof, err := parseVerdict(b); err == nil && (len(b) != verdictLen || b[0] != 1 || len(proof) != 32) {
			t.Fatalf("verdict %x accepted", b)
		}
	})
}
