package ipc

import (
	"bytes"
	"crypto/des"
	"strings"
	"testing"
)

func saslPair(qop, cipher string) (client, server *saslLayer) {
	ha1 := sessionKey("dXNlcg==", "default", "cGFzcw==", "nonce", "cnonce")
	c, err := newSaslSide(ha1, qop, cipher, 65536, false)
	if err != nil {
		panic(err)
	}
	s, err := newSaslSide(ha1, qop, cipher, 65536, true)
	if err != nil {
		panic(err)
	}
	return c, s
}

// Both directions, messages of every length around the block size, several in a row (the
// cipher state and sequence numbers carry over), and the wrapped form hides the message
// exactly when the layer encrypts.
func TestSaslLayerRoundTrip(t *testing.T) {
	for _, m := range []struct{ qop, cipher string }{{"auth-int", ""}, {"auth-conf", "3des"}, {"auth-conf", "rc4"}} {
		c, s := saslPair(m.qop, m.cipher)
		for n := 0; n < 40; n++ {
			msg := bytes.Repeat([]byte("secret!"), n+1)[:n*7+1]
			for _, dir := range []struct{ from, to *saslLayer }{{c, s}, {s, c}} {
				w := dir.from.wrap(msg)
				if hidden := !bytes.Contains(w, msg); hidden != (m.qop == "auth-conf") {
					t.Fatalf("%s/%s: message hidden in the wrapped form: %v", m.qop, m.cipher, hidden)
				}
				if m.cipher == "3des" && (len(w)-6)%des.BlockSize != 0 {
					t.Fatalf("3des: %d encrypted bytes", len(w)-6)
				}
				got, err := dir.to.unwrap(w)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("%s/%s, %d bytes: got %q, %v", m.qop, m.cipher, len(msg), got, err)
				}
			}
		}
	}
}

// An altered, replayed or reordered message is refused, and the layer stays refused after.
func TestSaslLayerRefuses(t *testing.T) {
	for _, m := range []struct{ qop, cipher string }{{"auth-int", ""}, {"auth-conf", "3des"}, {"auth-conf", "rc4"}} {
		for name, tamper := range map[string]func(w1, w2 []byte) []byte{
			"flipped bit": func(w1, _ []byte) []byte { w1[0] ^= 1; return w1 },
			"replayed":    nil,
			"reordered":   func(_, w2 []byte) []byte { return w2 },
			"truncated":   func(w1, _ []byte) []byte { return w1[:10] },
			"type":        func(w1, _ []byte) []byte { w1[len(w1)-5] = 2; return w1 },
		} {
			c, s := saslPair(m.qop, m.cipher)
			w1, w2 := s.wrap([]byte("first message")), s.wrap([]byte("second message"))
			if tamper == nil { // replay: the first is taken, then offered again
				if _, err := c.unwrap(bytes.Clone(w1)); err != nil {
					t.Fatal(err)
				}
			} else {
				w1 = tamper(w1, w2)
			}
			if _, err := c.unwrap(w1); err == nil {
				t.Errorf("%s/%s: a %s message was accepted", m.qop, m.cipher, name)
			}
			if _, err := c.unwrap(w2); err == nil || !strings.Contains(err.Error(), "SASL security layer") {
				t.Errorf("%s/%s: after a %s message the layer still unwraps (%v)", m.qop, m.cipher, name, err)
			}
		}
	}
	if _, err := newSaslLayer([16]byte{}, "auth-conf", "des", 65536); err == nil {
		t.Error("single DES accepted")
	}
}

// FuzzSaslUnwrap feeds server messages to the client's security layer: no panic, and nothing
// the client did not get from a holder of the session key is ever accepted.
func FuzzSaslUnwrap(f *testing.F) {
	_, s := saslPair("auth-conf", "3des")
	f.Add(byte(0), s.wrap([]byte("hello")))
	_, s = saslPair("auth-conf", "rc4")
	f.Add(byte(1), s.wrap([]byte("hello")))
	_, s = saslPair("auth-int", "")
	f.Add(byte(2), s.wrap([]byte("hello")))
	f.Fuzz(func(t *testing.T, mode byte, tok []byte) {
		m := []struct{ qop, cipher string }{{"auth-conf", "3des"}, {"auth-conf", "rc4"}, {"auth-int", ""}}[int(mode)%3]
		c, s := saslPair(m.qop, m.cipher)
		want := s.wrap([]byte("hello"))
		got, err := c.unwrap(tok)
		if err == nil && !bytes.Equal(tok, want) && !(len(got) == 5 && string(got) == "hello") {
			t.Fatalf("%s/%s: accepted a forged message %x as %q", m.qop, m.cipher, tok, got)
		}
	})
}

// desKey on the bits of a known pattern: 56 ones give 0xfe with its parity bit set (odd).
func TestDESKeyParity(t *testing.T) {
	k := desKey([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	for _, b := range k {
		if b != 0xfe {
			t.Fatalf("desKey(ff..) = % x", k)
		}
	}
	k = desKey([]byte{0, 0, 0, 0, 0, 0, 1})
	if !bytes.Equal(k, []byte{1, 1, 1, 1, 1, 1, 1, 0x02}) {
		t.Fatalf("desKey(00..01) = % x", k)
	}
}
