// Package rdma moves bytes between two ranks or two agents, and runs collectives over them.
//
// A Transport makes authenticated, reliable, ordered point-to-point connections. A Conn carries
// messages whose size the receiver knows in advance (as MPI does with counts): Send writes all of
// b, Recv fills all of b. Both may be called at once from two goroutines (one sender, one
// receiver); two concurrent Sends (or Recvs) on one Conn are not allowed.
//
// Backends: TCP (always), shared memory inside a node, UCX (rdma/ucx, opened with dlopen) and
// NCCL for GPU buffers (rdma/nccl, dlopen). A backend whose library or hardware is missing
// returns an error wrapping ErrNotSupported from its constructor, and the caller falls back.
package rdma

import (
	"context"
	"errors"
)

// ErrNotSupported means the backend cannot run on this node (library, device or kernel feature
// missing). Callers check it with errors.Is and fall back to another backend.
var ErrNotSupported = errors.New("not supported on this node")

// Transport makes connections of one kind. Implementations are safe for concurrent use.
type Transport interface {
	// Name is the backend's short name: "tcp", "shm", "ucx", "nccl".
	Name() string
	// Listen starts accepting connections. The listener's Addr is what a peer passes to Dial.
	Listen(ctx context.Context) (Listener, error)
	// Dial connects to a listener's Addr.
	Dial(ctx context.Context, addr string) (Conn, error)
}

// Listener accepts connections made by Dial on the same kind of Transport.
type Listener interface {
	// Addr is an opaque string that Dial understands (host:port, a shm name, a UCX worker
	// address in hex).
	Addr() string
	Accept(ctx context.Context) (Conn, error)
	Close() error
}

// Conn is one connection between two peers.
type Conn interface {
	// Send writes all of b as one message. It returns when b may be reused.
	Send(ctx context.Context, b []byte) error
	// Recv fills all of b with the next message; the message must be exactly len(b) bytes.
	Recv(ctx context.Context, b []byte) error
	// Close ends the connection; a pending Send or Recv on either side fails.
	Close() error
}
