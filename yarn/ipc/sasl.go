package ipc

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rc4"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// Protection is the quality of protection a connection negotiated, named as
// Hadoop's hadoop.rpc.protection names it.
type Protection int

const (
	Authentication Protection = iota // SASL qop "auth": authenticated, then in clear
	Integrity                        // "auth-int": every message carries an HMAC-MD5
	Privacy                          // "auth-conf": every message encrypted (3DES or RC4) and MACed
)

func (p Protection) String() string {
	switch p {
	case Authentication:
		return "authentication"
	case Integrity:
		return "integrity"
	case Privacy:
		return "privacy"
	}
	return fmt.Sprintf("Protection(%d)", int(p))
}

func protectionOf(qop string) Protection {
	switch qop {
	case "auth-int":
		return Integrity
	case "auth-conf":
		return Privacy
	}
	return Authentication
}

// saslLayer is DIGEST-MD5's security layer (RFC 2831 sections 2.3 and 2.4) as
// Java's SASL provider implements it, the one Hadoop IPC uses after the
// handshake when hadoop.rpc.protection is integrity or privacy. A wrapped
// message is
//
//	integrity: msg, HMAC-MD5(Ki, seq, msg)[0:10], 0x0001, seq
//	privacy:   CIPHER(Kc, msg, pad, HMAC-MD5(Ki, seq, msg)[0:10]), 0x0001, seq
//
// with a 4-byte big-endian sequence number per direction starting at 0, the
// cipher's state (RC4's stream, 3DES-CBC's chaining) running on across
// messages, and pad (3DES only) of 1 to 8 bytes each holding the pad length.
// Every primitive is Go's standard library; only the framing is RFC 2831's.
type saslLayer struct {
	conf          bool
	myKi, peerKi  []byte // integrity keys: Kic (client to server), Kis
	enc, dec      cipherStream
	seq, peerSeq  uint32
	maxRaw        int // the most bytes of payload one wrapped message carries
	blockSize     int // 8 for 3DES, 1 for RC4
	unwrapFailure error
}

// cipherStream is either cipher.Stream (RC4) or a CBC cipher.BlockMode (3DES),
// both transforming in place with state carried across calls.
type cipherStream interface{ xor(dst, src []byte) }

type streamCipher struct{ s cipher.Stream }

func (s streamCipher) xor(dst, src []byte) { s.s.XORKeyStream(dst, src) }

type blockCipher struct{ m cipher.BlockMode }

func (b blockCipher) xor(dst, src []byte) { b.m.CryptBlocks(dst, src) }

const (
	clientIntMagic  = "Digest session key to client-to-server signing key magic constant"
	serverIntMagic  = "Digest session key to server-to-client signing key magic constant"
	clientConfMagic = "Digest H(A1) to client-to-server sealing key magic constant"
	serverConfMagic = "Digest H(A1) to server-to-client sealing key magic constant"
)

// newSaslLayer derives the client's keys from H(A1) for the negotiated qop
// (auth-int or auth-conf) and cipher (3des or rc4, with auth-conf). maxSend is
// the server's maxbuf.
func newSaslLayer(ha1 [16]byte, qop, cipherName string, maxSend int) (*saslLayer, error) {
	return newSaslSide(ha1, qop, cipherName, maxSend, false)
}

// newSaslSide is newSaslLayer for either side; the server side only serves the
// tests.
func newSaslSide(ha1 [16]byte, qop, cipherName string, maxSend int, server bool) (*saslLayer, error) {
	kic := md5.Sum(append(ha1[:], clientIntMagic...))
	kis := md5.Sum(append(ha1[:], serverIntMagic...))
	l := &saslLayer{myKi: kic[:], peerKi: kis[:], blockSize: 1}
	if server {
		l.myKi, l.peerKi = l.peerKi, l.myKi
	}
	switch qop {
	case "auth-int":
		l.maxRaw = maxSend - 16
		return l, nil
	case "auth-conf":
	default:
		return nil, fmt.Errorf("no SASL security layer for qop %q", qop)
	}
	l.conf = true
	// n = 16 for 3des and rc4 (only rc4-40 and rc4-56, never chosen, use less of H(A1))
	kcc := md5.Sum(append(ha1[:], clientConfMagic...))
	kcs := md5.Sum(append(ha1[:], serverConfMagic...))
	if server {
		kcc, kcs = kcs, kcc
	}
	switch cipherName {
	case "rc4":
		e, err := rc4.NewCipher(kcc[:])
		if err != nil {
			return nil, err
		}
		d, err := rc4.NewCipher(kcs[:])
		if err != nil {
			return nil, err
		}
		l.enc, l.dec = streamCipher{e}, streamCipher{d}
		l.maxRaw = maxSend - 16
	case "3des":
		// two-key 3DES (EDE with K1, K2, K1), each key 7 bytes of Kc spread over 8 with
		// parity bits; the IV is Kc[8:16]
		mk := func(kc [16]byte) (cipher.Block, error) {
			k1, k2 := desKey(kc[0:7]), desKey(kc[7:14])
			return des.NewTripleDESCipher(append(append(append([]byte{}, k1...), k2...), k1...))
		}
		eb, err := mk(kcc)
		if err != nil {
			return nil, err
		}
		db, err := mk(kcs)
		if err != nil {
			return nil, err
		}
		l.enc = blockCipher{cipher.NewCBCEncrypter(eb, kcc[8:16])}
		l.dec = blockCipher{cipher.NewCBCDecrypter(db, kcs[8:16])}
		l.blockSize = des.BlockSize
		l.maxRaw = maxSend - 16 - des.BlockSize
	default:
		return nil, fmt.Errorf("no SASL cipher %q (this client uses 3des or rc4)", cipherName)
	}
	return l, nil
}

// desKey spreads 7 bytes (56 key bits) over 8, 7 bits each in the high bits,
// and sets each byte's low bit for odd parity.
func desKey(b []byte) []byte {
	var v uint64
	for _, c := range b[:7] {
		v = v<<8 | uint64(c)
	}
	out := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		k := byte(v&0x7f) << 1
		v >>= 7
		ones := 0
		for x := k; x != 0; x >>= 1 {
			ones += int(x & 1)
		}
		if ones%2 == 0 {
			k |= 1
		}
		out[i] = k
	}
	return out
}

func (l *saslLayer) mac(key []byte, seq uint32, msg []byte) []byte {
	h := hmac.New(md5.New, key)
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], seq)
	h.Write(s[:])
	h.Write(msg)
	return h.Sum(nil)[:10]
}

// wrap protects one message (at most maxRaw bytes) for the server.
func (l *saslLayer) wrap(msg []byte) []byte {
	seq := l.seq
	l.seq++
	mac := l.mac(l.myKi, seq, msg)
	var out []byte
	if !l.conf {
		out = append(append(make([]byte, 0, len(msg)+16), msg...), mac...)
	} else {
		pad := 0
		if l.blockSize > 1 {
			pad = l.blockSize - (len(msg)+10)%l.blockSize
		}
		body := make([]byte, 0, len(msg)+pad+10+6)
		body = append(body, msg...)
		for i := 0; i < pad; i++ {
			body = append(body, byte(pad))
		}
		body = append(body, mac...)
		l.enc.xor(body, body)
		out = body
	}
	out = append(out, 0, 1)
	return binary.BigEndian.AppendUint32(out, seq)
}

var errSaslUnwrap = errors.New("SASL security layer")

// unwrap checks (and with privacy decrypts) one message from the server. Any
// failure is final: the cipher state is then out of step with the server's.
func (l *saslLayer) unwrap(tok []byte) ([]byte, error) {
	if l.unwrapFailure != nil {
		return nil, l.unwrapFailure
	}
	msg, err := l.unwrapOne(tok)
	if err != nil {
		l.unwrapFailure = fmt.Errorf("%w: %w", errSaslUnwrap, err)
		return nil, l.unwrapFailure
	}
	return msg, nil
}

func (l *saslLayer) unwrapOne(tok []byte) ([]byte, error) {
	if len(tok) < 16 {
		return nil, fmt.Errorf("wrapped message of %d bytes, under the 16 of its trailer", len(tok))
	}
	n := len(tok) - 6
	if tok[n] != 0 || tok[n+1] != 1 {
		return nil, fmt.Errorf("message type %#x, want 1", tok[n:n+2])
	}
	seq := binary.BigEndian.Uint32(tok[n+2:])
	var msg, mac []byte
	if !l.conf {
		msg, mac = tok[:n-10], tok[n-10:n]
	} else {
		if n%l.blockSize != 0 {
			return nil, fmt.Errorf("encrypted part of %d bytes is not a whole number of %d-byte blocks", n, l.blockSize)
		}
		body := make([]byte, n)
		l.dec.xor(body, tok[:n])
		msg, mac = body[:n-10], body[n-10:]
		if l.blockSize > 1 {
			pad := int(msg[len(msg)-1])
			if pad < 1 || pad > l.blockSize || pad > len(msg) {
				return nil, fmt.Errorf("bad padding (%d)", pad)
			}
			msg = msg[:len(msg)-pad]
		}
	}
	if subtle.ConstantTimeCompare(mac, l.mac(l.peerKi, seq, msg)) != 1 {
		return nil, errors.New("MAC does not match: the message was altered or is not from the server")
	}
	if seq != l.peerSeq {
		return nil, fmt.Errorf("sequence number %d, want %d: a message was replayed, dropped or reordered", seq, l.peerSeq)
	}
	l.peerSeq++
	return msg, nil
}
