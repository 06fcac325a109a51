package wire

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Conn is one protocol connection. Reads happen on the caller's goroutine (one reader at a
// time); sends are queued and written by a goroutine of the Conn in batches, so a slow peer
// never blocks the sender. Send is safe for concurrent use.
type Conn struct {
	nc net.Conn
	r  *bufio.Reader
	bw *bufio.Writer // gathers a batch into few TLS records; nil on a plain connection

	mu     sync.Mutex
	cond   *sync.Cond
	out    [][]byte
	closed bool
	done   chan struct{}
}

// NewConn wraps nc.
func NewConn(nc net.Conn) *Conn {
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), done: make(chan struct{})}
	if _, ok := nc.(*tls.Conn); ok {
		c.bw = bufio.NewWriterSize(nc, 64<<10)
	}
	c.cond = sync.NewCond(&c.mu)
	go c.writeLoop()
	return c
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
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.out = nil
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

// SendRaw queues an already encoded frame.
func (c *Conn) SendRaw(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.out = append(c.out, b)
	c.cond.Signal()
	return nil
}

// SendError sends an ERROR message.
func (c *Conn) SendError(seq uint64, code, msg string) error {
	return c.Send(TError, seq, &Error{Code: code, Msg: msg})
}

// Read reads the next frame.
func (c *Conn) Read() (Frame, error) { return ReadFrame(c.r) }

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
