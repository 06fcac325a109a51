package ucx

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// The handshake, on the stream of a new endpoint, before any data (every message framed, of a
// fixed size: Recv refuses any other, so nothing is allocated from what the peer announces):
//
//	server -> client  hello:   "SHOALUX2" + server nonce(32)
//	client -> server  proof:   wire.Proof(secret, clientLabel, client nonce, server nonce, "")
//	                           + client nonce(32)
//	server -> client  verdict: 1 + wire.Proof(secret, serverLabel, client nonce, server nonce, ""),
//	                           or 0 + 32 zero bytes
//
// Both proofs cover both nonces, so no recorded proof is accepted twice. The server hands the
// connection to Accept only after the client's proof checks; the client returns from Dial only
// after the server's does, so neither side sends data to a peer that has not shown it holds
// the cluster secret. UCX is not encrypted (docs/security.md, "Data plane"): rdma.Choose picks
// it only for an insecure data plane.
const (
	magic            = "SHOALUX2"
	clientLabel      = "shoal/2 ucx client"
	serverLabel      = "shoal/2 ucx server"
	handshakeTimeout = 10 * time.Second
	helloLen         = len(magic) + 32
	proofLen         = 32 + 32
	verdictLen       = 1 + 32
	// maxHandshakes bounds the endpoints of one listener in their handshake at once; more
	// connection requests are rejected.
	maxHandshakes = 64
)

// parseHello checks the server's hello and returns its nonce.
func parseHello(b []byte) ([]byte, error) {
	if len(b) != helloLen {
		return nil, fmt.Errorf("read hello: %d bytes, want %d", len(b), helloLen)
	}
	if !bytes.Equal(b[:len(magic)], []byte(magic)) {
		return nil, fmt.Errorf("read hello: the peer is not a shoal ucx listener of this version (got %q); every node must run the same shoal", b[:len(magic)])
	}
	return b[len(magic):], nil
}

// parseProof splits the client's proof message into the proof and the client's nonce.
func parseProof(b []byte) (proof, nonce []byte, err error) {
	if len(b) != proofLen {
		return nil, nil, fmt.Errorf("read proof: %d bytes, want %d", len(b), proofLen)
	}
	return b[:32], b[32:], nil
}

// parseVerdict returns the server's proof, or an error when the server refused.
func parseVerdict(b []byte) ([]byte, error) {
	if len(b) != verdictLen {
		return nil, fmt.Errorf("read verdict: %d bytes, want %d", len(b), verdictLen)
	}
	if b[0] != 1 {
		return nil, fmt.Errorf("%w: the listener refused this cluster secret; use the secret of the cluster it belongs to", wire.ErrAuth)
	}
	return b[1:], nil
}

// msgConn is what the handshake needs of a connection: whole messages of known sizes.
type msgConn interface {
	Send(ctx context.Context, b []byte) error
	Recv(ctx context.Context, b []byte) error
}

func (c *Conn) serverHandshake(ctx context.Context, secret string) error {
	return serverAuth(ctx, c, secret)
}

func (c *Conn) clientHandshake(ctx context.Context, secret string) error {
	return clientAuth(ctx, c, secret)
}

func serverAuth(ctx context.Context, c msgConn, secret string) error {
	nonce := wire.NewNonce()
	if err := c.Send(ctx, append([]byte(magic), nonce...)); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	msg := make([]byte, proofLen)
	if err := c.Recv(ctx, msg); err != nil {
		return fmt.Errorf("read proof: %w", err)
	}
	proof, cnonce, err := parseProof(msg)
	if err != nil {
		return err
	}
	if !wire.CheckProof(secret, clientLabel, cnonce, nonce, nil, proof) {
		c.Send(ctx, make([]byte, verdictLen))
		return fmt.Errorf("%w: the peer does not know the cluster secret", wire.ErrAuth)
	}
	if err := c.Send(ctx, append([]byte{1}, wire.Proof(secret, serverLabel, cnonce, nonce, nil)...)); err != nil {
		return fmt.Errorf("send verdict: %w", err)
	}
	return nil
}

func clientAuth(ctx context.Context, c msgConn, secret string) error {
	hello := make([]byte, helloLen)
	if err := c.Recv(ctx, hello); err != nil {
		return fmt.Errorf("read hello (is a shoal ucx listener at this address?): %w", err)
	}
	snonce, err := parseHello(hello)
	if err != nil {
		return err
	}
	cnonce := wire.NewNonce()
	if err := c.Send(ctx, append(wire.Proof(secret, clientLabel, cnonce, snonce, nil), cnonce...)); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	verdict := make([]byte, verdictLen)
	if err := c.Recv(ctx, verdict); err != nil {
		return fmt.Errorf("read verdict: %w", err)
	}
	proof, err := parseVerdict(verdict)
	if err != nil {
		return err
	}
	if !wire.CheckProof(secret, serverLabel, cnonce, snonce, nil, proof) {
		return fmt.Errorf("%w: the listener does not know the cluster secret; it belongs to another cluster", wire.ErrAuth)
	}
	return nil
}
