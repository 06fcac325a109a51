package wire

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// TLS for connections between nodes (docs/security.md, "Encryption"): TLS 1.3 only; the server
// presents a certificate made once per process and never written to disk; the client does not
// check it against a CA. shoal's handshake, run inside the TLS session, binds the session
// instead: both proofs cover SHA-256 of the server's certificate as each side sees it
// (tls-server-end-point, RFC 5929), so a man in the middle with his own certificate can neither
// make nor relay a proof.

var (
	certOnce sync.Once
	cert     tls.Certificate
	certSum  []byte
	certErr  error
)

func processCert() (tls.Certificate, []byte, error) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = fmt.Errorf("make tls key: %w", err)
			return
		}
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: "shoal"},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			certErr = fmt.Errorf("make tls certificate: %w", err)
			return
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		s := sha256.Sum256(der)
		certSum = s[:]
	})
	return cert, certSum, certErr
}

// ServerTLS returns the configuration of a shoal TLS listener (TLS 1.3, this process's
// certificate). It fails only when no key can be made.
func ServerTLS() (*tls.Config, error) {
	c, _, err := processCert()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c}}, nil
}

// ClientTLS returns the configuration of a shoal TLS client. The server's certificate is not
// checked here (there is no CA): the handshake's proofs bind it (see ClientBinding).
func ClientTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
}

// ServerBinding is the channel binding a TLS server puts in its proofs: SHA-256 of the
// certificate ServerTLS presents.
func ServerBinding() []byte {
	_, s, _ := processCert()
	return s
}

// ClientBinding is the channel binding a TLS client puts in its proofs: SHA-256 of the
// certificate the server presented; nil when it presented none.
func ClientBinding(cs tls.ConnectionState) []byte {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	s := sha256.Sum256(cs.PeerCertificates[0].Raw)
	return s[:]
}
