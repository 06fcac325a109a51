package ucx

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// pipeEnd is one end of an in-memory message pipe that records what it received.
type pipeEnd struct {
	in, out chan []byte
	got     [][]byte
}

func pipe() (*pipeEnd, *pipeEnd) {
	a, b := make(chan []byte, 4), make(chan []byte, 4)
	return &pipeEnd{in: a, out: b}, &pipeEnd{in: b, out: a}
}

func (p *pipeEnd) Send(_ context.Context, b []byte) error {
	p.out <- append([]byte(nil), b...)
	return nil
}

func (p *pipeEnd) Recv(ctx context.Context, b []byte) error {
	select {
	case m := <-p.in:
		if len(m) != len(b) {
			return fmt.Errorf("message of %d bytes, want %d", len(m), len(b))
		}
		copy(b, m)
		p.got = append(p.got, m)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// record runs a genuine handshake and returns what the client received (hello, verdict) and
// what the server received (the client's proof).
func record(t *testing.T, secret string) (hello, verdict, proof []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, srv := pipe()
	errc := make(chan error, 1)
	go func() { errc <- serverAuth(ctx, srv, secret) }()
	if err := clientAuth(ctx, cli, secret); err != nil {
		t.Fatalf("genuine client: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("genuine server: %v", err)
	}
	return cli.got[0], cli.got[1], srv.got[0]
}

// TestReplayedServer: a fake listener that replays a real one's recorded hello and verdict is
// refused by the client (before, the server's proof covered only its own nonce, and the replay
// passed).
func TestReplayedServer(t *testing.T) {
	secret := wire.NewSecret()
	hello, verdict, _ := record(t, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, fake := pipe()
	go func() {
		fake.Send(ctx, hello)
		fake.Recv(ctx, make([]byte, proofLen))
		fake.Send(ctx, verdict)
	}()
	if err := clientAuth(ctx, cli, secret); !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("client against a replayed server: %v, want wire.ErrAuth", err)
	}
}

// TestReplayedClient: a client's recorded proof is refused by a listener (its nonce is new).
func TestReplayedClient(t *testing.T) {
	secret := wire.NewSecret()
	_, _, proof := record(t, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fake, srv := pipe()
	errc := make(chan error, 1)
	go func() { errc <- serverAuth(ctx, srv, secret) }()
	fake.Recv(ctx, make([]byte, helloLen))
	fake.Send(ctx, proof)
	if err := <-errc; !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("server against a replayed client proof: %v, want wire.ErrAuth", err)
	}
}
