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

// Buffered is implemented by Conns that hold up to Buffered() bytes of sent messages without
// a reader (a shm ring, a socket's send buffer); 0 means none to count on. Collectives use it
// to exchange in chunks from one goroutine, sending a chunk and then receiving one, as MPI
// does, instead of a sender and a receiver goroutine.
type Buffered interface {
	Buffered() int
}

var (
	_ Buffered = (*shmConn)(nil)
	_ Buffered = (*tcpConn)(nil)
)

// Rendezvous is implemented by Conns whose Send of n bytes may wait until the receiver has
// taken the bytes (single-copy transfers, where the receiver reads the sender's memory): such
// a Send needs its receiver running at the same time, never a receive later on the same
// goroutine.
type Rendezvous interface {
	Rendezvous(n int) bool
}

var _ Rendezvous = (*shmConn)(nil)
