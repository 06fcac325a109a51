package wire

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what a Conn holds for its peer: the frames queued and not yet written to the
// socket, and their bytes (the batch being written included). A peer that does not read makes
// the queue grow; past either bound the Conn drops the queue and closes the connection, so a
// client that stops reading costs its agent at most this much memory.
type Limits struct {
	Bytes  int64 // MaxFrame or more, so that one maximal frame always fits
	Frames int
}

// DefaultLimits are every Conn's bounds unless SetLimits changes them: one maximal frame
// (a large inline reply) and 256 MiB besides, and a million frames (each costs a slice header
// and an allocation beyond its bytes).
var DefaultLimits = Limits{Bytes: MaxFrame + 256<<20, Frames: 1 << 20}

// ErrSendQueueFull is wrapped by the error given to the overflow callback, and returned by
// Send on a connection it closed.
var ErrSendQueueFull = errors.New("send queue over its bound")

// Conn is one protocol connection. Reads happen on the caller's goroutine (one reader at a
// time); sends are queued and written by a goroutine of the Conn in batches, so a slow peer
// never blocks the sender. The queue is bounded (Limits): a peer that does not read is
// disconnected rather than buffered for. Send is safe for concurrent use.
type Conn struct {
	nc net.Conn
	r  *bufio.Reader
	bw *bufio.Writer // gathers a batch into few TLS records; nil on a plain connection

	mu       sync.Mutex
	cond     *sync.Cond
	out      [][]byte
	closed   bool
	done     chan struct{}
	lim      Limits
	qBytes   int64 // queued and in-flight bytes
	qFrames  int   // queued and in-flight frames
	overflow func(error)
	full     error       // set when the queue overflowed
	cut      atomic.Bool // the queue overflowed: Read stops too
}

// NewConn wraps nc.
func NewConn(nc net.Conn) *Conn {
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), done: make(chan struct{}), lim: DefaultLimits}
	if _, ok := nc.(*tls.Conn); ok {
		c.bw = bufio.NewWriterSize(nc, 64<<10)
	}
	c.cond = sync.NewCond(&c.mu)
	go c.writeLoop()
	return c
}

// SetLimits changes the queue's bounds (a zero field keeps its default; Bytes below MaxFrame,
// for tests, may refuse a well-behaved peer a large reply). onOverflow, when set, is called
// once, without the Conn's lock held but possibly under the locks of Send's caller, with an
// error wrapping ErrSendQueueFull that names the bound, when the Conn disconnects its peer for
// not reading; it must not block.
func (c *Conn) SetLimits(l Limits, onOverflow func(error)) {
	if l.Bytes <= 0 {
		l.Bytes = DefaultLimits.Bytes
	}
	if l.Frames <= 0 {
		l.Frames = DefaultLimits.Frames
	}
	c.mu.Lock()
	c.lim, c.overflow = l, onOverflow
	c.mu.Unlock()
}

// Queued returns the frames and bytes queued and not yet written.
func (c *Conn) Queued() (frames int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qFrames, c.qBytes
}

// Net returns the underlying connection.
func (c *Conn) Net() net.Conn { return c.nc }

func (c *Conn) writeLoop() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.out) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.out) == 0 && c.closed {
			c.mu.Unlock()
			return
		}
		batch := net.Buffers(c.out)
		c.out = nil
		c.mu.Unlock()
		var n int64
		for _, b := range batch {
			n += int64(len(b))
		}
		k := len(batch)
		var err error
		if c.bw != nil { // TLS: one record per frame would cost a record header and a syscall each
			for _, b := range batch {
				if _, err = c.bw.Write(b); err != nil {
					break
				}
			}
			if err == nil {
				err = c.bw.Flush()
			}
		} else {
			_, err = batch.WriteTo(c.nc)
		}
		c.mu.Lock()
		c.qBytes -= n
		c.qFrames -= k
		c.mu.Unlock()
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.out = nil
			c.qBytes, c.qFrames = 0, 0
			c.mu.Unlock()
			// Only the writing half: what the peer sent before it went away (a STOP, say) is
			// still in our socket, and Read must see it before the error. Close closes the rest.
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			} else {
				c.nc.Close()
			}
			return
		}
	}
}

// Send encodes and queues one message. It fails only when the message cannot be encoded or
// the connection is closed.
func (c *Conn) Send(t Type, seq uint64, body any) error {
	b, err := Encode(t, seq, body)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw queues an already encoded frame. A frame that would take the queue past its bounds
// closes the connection instead (see Limits) and returns an error wrapping ErrSendQueueFull.
func (c *Conn) SendRaw(b []byte) error {
	c.mu.Lock()
	if c.closed {
		err := c.full
		c.mu.Unlock()
		if err != nil {
			return err
		}
		return net.ErrClosed
	}
	if c.qFrames+1 > c.lim.Frames || c.qBytes+int64(len(b)) > c.lim.Bytes {
		c.full = fmt.Errorf("%w: %d frames and %d bytes not yet read by the peer (bound %d frames, %d bytes); the peer does not read its messages",
			ErrSendQueueFull, c.qFrames, c.qBytes, c.lim.Frames, c.lim.Bytes)
		err, cb := c.full, c.overflow
		c.closed = true
		c.cut.Store(true)
		for _, q := range c.out { // the memory goes now, not when the writer gives up
			c.qBytes -= int64(len(q))
		}
		c.qFrames -= len(c.out)
		c.out = nil
		c.cond.Signal()
		c.mu.Unlock()
		// Not a graceful close: the writer may be blocked on the full socket. Closing the
		// socket unblocks it and ends the reader's loop; TLS skips close_notify while a Write
		// is in flight, and a separate goroutine keeps the caller's locks out of it otherwise.
		go c.nc.Close()
		if cb != nil {
			cb(err)
		}
		return err
	}
	c.out = append(c.out, b)
	c.qBytes += int64(len(b))
	c.qFrames++
	c.cond.Signal()
	c.mu.Unlock()
	return nil
}

// SendError sends an ERROR message.
func (c *Conn) SendError(seq uint64, code, msg string) error {
	return c.Send(TError, seq, &Error{Code: code, Msg: msg})
}

// Read reads the next frame. Once the send queue has overflowed it fails with that error, so
// that frames already buffered from a peer that does not read are not served either.
func (c *Conn) Read() (Frame, error) {
	if c.cut.Load() {
		c.mu.Lock()
		err := c.full
		c.mu.Unlock()
		return Frame{}, err
	}
	return ReadFrame(c.r)
}

// Close flushes queued frames (for up to a second) and closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.nc.Close() // a failed write closed only the writing half
		return nil
	}
	c.closed = true
	c.cond.Signal()
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-time.After(time.Second):
	}
	return c.nc.Close()
}

// SplitAddr splits "unix:/path" or "tcp:host:port" into a network and an address.
func SplitAddr(addr string) (string, string, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return "unix", strings.TrimPrefix(addr, "unix:"), nil
	case strings.HasPrefix(addr, "tcp:"):
		return "tcp", strings.TrimPrefix(addr, "tcp:"), nil
	}
	return "", "", fmt.Errorf("parse address %q: want unix:/path/to/socket or tcp:host:port", addr)
}

// Call sends a request and reads frames until its answer; frames for other requests are passed
// to other. It is for simple synchronous clients such as the CLI.
func (c *Conn) Call(t Type, seq uint64, body, reply any) error {
	if err := c.Send(t, seq, body); err != nil {
		return err
	}
	for {
		f, err := c.Read()
		if err != nil {
			return err
		}
		if f.Seq != seq {
			continue
		}
		if f.Type == TError {
			var e Error
			if err := f.Decode(&e); err != nil {
				return err
			}
			return &e
		}
		if reply == nil {
			return nil
		}
		return f.Decode(reply)
	}
}
