package ucx

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// The handshake, on the stream of a new endpoint, before any data:
//
//	server -> client  hello:   "SHOALUX1" + 32-byte nonce
//	client -> server  proof:   HMAC-SHA256(secret, nonce || "shoal/ucx client")
//	server -> client  verdict: 1 + HMAC-SHA256(secret, nonce || "shoal/ucx server"), or 0 + 32 zero bytes
//
// The server hands the connection to Accept only after the client's proof checks; the client
// returns from Dial only after the server's does, so neither side sends data to a peer that
// has not shown it holds the cluster secret.
const (
	magic            = "SHOALUX1"
	clientLabel      = "shoal/ucx client"
	serverLabel      = "shoal/ucx server"
	handshakeTimeout = 10 * time.Second
)

func (c *Conn) serverHandshake(ctx context.Context, secret string) error {
	nonce := wire.NewNonce()
	if err := c.Send(ctx, append([]byte(magic), nonce...)); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	proof := make([]byte, 32)
	if err := c.Recv(ctx, proof); err != nil {
		return fmt.Errorf("read proof: %w", err)
	}
	if !wire.CheckMAC(secret, nonce, proof, clientLabel) {
		c.Send(ctx, make([]byte, 33))
		return fmt.Errorf("%w: the peer does not know the cluster secret", wire.ErrAuth)
	}
	if err := c.Send(ctx, append([]byte{1}, wire.MAC(secret, nonce, serverLabel)...)); err != nil {
		return fmt.Errorf("send verdict: %w", err)
	}
	return nil
}

func (c *Conn) clientHandshake(ctx context.Context, secret string) error {
	hello := make([]byte, len(magic)+32)
	if err := c.Recv(ctx, hello); err != nil {
		return fmt.Errorf("read hello (is a shoal ucx listener at this address?): %w", err)
	}
	if !bytes.Equal(hello[:len(magic)], []byte(magic)) {
		return fmt.Errorf("read hello: the peer is not a shoal ucx listener (got %q)", hello[:len(magic)])
	}
	nonce := hello[len(magic):]
	if err := c.Send(ctx, wire.MAC(secret, nonce, clientLabel)); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	verdict := make([]byte, 33)
	if err := c.Recv(ctx, verdict); err != nil {
		return fmt.Errorf("read verdict: %w", err)
	}
	if verdict[0] != 1 {
		return fmt.Errorf("%w: the listener refused this cluster secret; use the secret of the cluster it belongs to", wire.ErrAuth)
	}
	if !wire.CheckMAC(secret, nonce, verdict[1:], serverLabel) {
		return fmt.Errorf("%w: the listener does not know the cluster secret; it belongs to another cluster", wire.ErrAuth)
	}
	return nil
}
