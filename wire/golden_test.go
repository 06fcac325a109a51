package wire

import (
	"encoding/hex"
	"testing"
)

// TestProofGolden pins Proof's bytes; python/tests/test_wire.py checks the Python SDK's proof
// against the same value.
func TestProofGolden(t *testing.T) {
	cn, sn := make([]byte, NonceSize), make([]byte, NonceSize)
	for i := range cn {
		cn[i], sn[i] = byte(i), byte(0x80+i)
	}
	got := hex.EncodeToString(Proof(testSecret, ClientLabel, cn, sn, []byte("binding")))
	if got != proofGolden {
		t.Fatalf("Proof = %s, want %s", got, proofGolden)
	}
}

const proofGolden = "ddd091896f59544fa48e42e631d051948828a99159f7df399e86fc24c2a96f70"
