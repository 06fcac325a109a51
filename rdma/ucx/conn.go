package ucx

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// Framing. UCX drops the stream data an endpoint has queued when its peer disconnects, so a
// peer that sends and then closes at once would lose its last messages. Every message on the
// stream is therefore a frame: an 8-byte little-endian header with the payload's length, then
// the payload. A header with finBit set ends the stream. Close sends it and keeps the endpoint
// open, reading and dropping what still comes, until the peer's own end-of-stream frame (or
// its loss) says that the peer has read everything it will read. The header also lets Recv
// check that sender and receiver agree on the size.
const (
	hdrLen   = 8
	finBit   = uint64(1) << 63
	smallMax = 16 << 10 // payloads up to this size go in one send with their header
)

// Send writes all of b as one message; it returns when b may be reused.
func (c *Conn) Send(ctx context.Context, b []byte) error {
	switch {
	case c.closed.Load():
		return fmt.Errorf("ucx send %d bytes with %s: %w", len(b), c.peer, errClosed)
	case c.peerFin.Load():
		return fmt.Errorf("ucx send %d bytes with %s: the peer closed the connection: %w", len(b), c.peer, errClosed)
	}
	if len(b) <= smallMax {
		if cap(c.sbuf) < hdrLen+smallMax {
			c.sbuf = make([]byte, hdrLen+smallMax)
		}
		m := c.sbuf[:hdrLen+len(b)]
		binary.LittleEndian.PutUint64(m, uint64(len(b)))
		copy(m[hdrLen:], b)
		return c.raw(ctx, m, false)
	}
	h := make([]byte, hdrLen)
	binary.LittleEndian.PutUint64(h, uint64(len(b)))
	if err := c.raw(ctx, h, false); err != nil {
		return err
	}
	return c.raw(ctx, b, false)
}

// Recv fills all of b with the next message, which must be exactly len(b) bytes.
func (c *Conn) Recv(ctx context.Context, b []byte) error {
	switch {
	case c.closed.Load():
		return fmt.Errorf("ucx recv %d bytes with %s: %w", len(b), c.peer, errClosed)
	case c.peerFin.Load():
		return fmt.Errorf("ucx recv %d bytes with %s: the peer closed the connection: %w", len(b), c.peer, errClosed)
	}
	if err := c.raw(ctx, c.hdr, true); err != nil {
		return err
	}
	h := binary.LittleEndian.Uint64(c.hdr)
	if h&finBit != 0 {
		c.peerFin.Store(true)
		return fmt.Errorf("ucx recv %d bytes with %s: the peer closed the connection: %w", len(b), c.peer, errClosed)
	}
	if h != uint64(len(b)) {
		err := fmt.Errorf("ucx recv with %s: the peer sent a message of %d bytes, this side expects %d: both sides must agree on message sizes", c.peer, h, len(b))
		c.w.run(func() { c.fail(err) })
		return err
	}
	return c.raw(ctx, b, true)
}

// drainTimeout bounds how long Close waits for the peer to send its end of stream before the
// endpoint is closed anyway.
const drainTimeout = time.Minute

// Close ends the connection. This side's pending and later Send and Recv fail; the peer can
// still receive what was sent before, and its Recv after that fails. Close does not wait for
// the peer: it sends the end-of-stream frame and, in the background, reads and drops what
// the peer still sends until the peer's end of stream, its loss, or a minute has passed, and
// only then lets UCX close the endpoint.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		busy := false
		c.w.call(func() { busy = c.err == nil && c.w.hasPending(c) })
		if busy {
			// a Send or Recv of this side is in flight: UCX cannot withdraw it, so the
			// endpoint goes at once (what was sent before may be lost)
			c.w.call(func() { c.fail(errClosed) })
			return
		}
		fin := make([]byte, hdrLen)
		binary.LittleEndian.PutUint64(fin, finBit)
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		if err := c.raw(ctx, fin, false); err != nil || c.peerFin.Load() {
			cancel()
			c.w.call(func() { c.fail(errClosed) })
			return
		}
		go func() {
			defer cancel()
			c.drain(ctx)
			c.w.call(func() { c.fail(errClosed) })
		}()
	})
	return nil
}

// drain reads and drops frames until the peer's end of stream or an error.
func (c *Conn) drain(ctx context.Context) {
	h := make([]byte, hdrLen)
	buf := make([]byte, 64<<10)
	for {
		if c.raw(ctx, h, true) != nil {
			return
		}
		n := binary.LittleEndian.Uint64(h)
		if n&finBit != 0 {
			return
		}
		for n > 0 {
			k := min(n, uint64(len(buf)))
			if c.raw(ctx, buf[:k], true) != nil {
				return
			}
			n -= k
		}
	}
}

// hasPending reports whether c has an outstanding request. Under the worker's mutex.
func (w *worker) hasPending(c *Conn) bool {
	for _, o := range w.pending {
		if o.conn == c {
			return true
		}
	}
	return false
}
