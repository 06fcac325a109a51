package rdma

import "context"

// Streamer is implemented by Conns that can hand the next message to the caller in pieces,
// in order, as they arrive, so that a receiver can reduce straight out of the transport's
// buffers (collectives) instead of copying first. fn must not keep p. The message must be
// exactly n bytes, as for Recv.
type Streamer interface {
	RecvStream(ctx context.Context, n int, fn func(off int, p []byte)) error
}

var (
	_ Streamer = (*shmConn)(nil)
	_ Streamer = (*tcpConn)(nil)
)
