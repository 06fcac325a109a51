package wire

import (
	"bufio"
	"errors"
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

	mu     sync.Mutex
	cond   *sync.Cond
	out    [][]byte
	closed bool
	done   chan struct{}
}

// NewConn wraps nc.
func NewConn(nc net.Conn) *Conn {
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), done: make(chan struct{})}
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
		if _, err := batch.WriteTo(c.nc); err != nil {
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

// Accept runs the server side of the handshake on nc. welcome builds the answer for an
// authenticated peer (its MAC is filled in here). A peer with a wrong secret gets an ERROR
// that says so and an error wrapping ErrAuth is returned; nc is closed on any error.
func Accept(nc net.Conn, secret, cluster string, welcome func(*Auth) (*Welcome, error)) (*Conn, *Auth, error) {
	c := NewConn(nc)
	fail := func(err error) (*Conn, *Auth, error) { c.Close(); return nil, nil, err }
	nonce := NewNonce()
	if err := c.Send(THello, 0, &Hello{Proto: Proto, Nonce: nonce, Cluster: cluster}); err != nil {
		return fail(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := c.Read()
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, ErrCorruptFrame) {
			c.SendError(0, "corrupt_frame", err.Error())
		}
		return fail(fmt.Errorf("read handshake: %w", err))
	}
	if f.Type != TAuth {
		c.SendError(0, "auth", fmt.Sprintf("expected AUTH (type %d) as the first message, got type %d", TAuth, f.Type))
		return fail(fmt.Errorf("%w: first message has type %d, not AUTH", ErrAuth, f.Type))
	}
	var a Auth
	if err := f.Decode(&a); err != nil {
		c.SendError(0, "corrupt_frame", err.Error())
		return fail(err)
	}
	if a.Proto != Proto {
		c.SendError(0, "version", fmt.Sprintf("this agent speaks shoal protocol %d, the client speaks %d; use the same shoal version on both sides", Proto, a.Proto))
		return fail(fmt.Errorf("client speaks protocol %d, want %d", a.Proto, Proto))
	}
	if !CheckMAC(secret, nonce, a.MAC, ClientLabel) {
		c.SendError(0, "auth", fmt.Sprintf("authentication failed: wrong secret for cluster %s; set SHOAL_SECRET to the secret of the cluster at this address", cluster))
		return fail(fmt.Errorf("%w: client (pid %d, role %q) does not know the secret of cluster %s", ErrAuth, a.PID, a.Role, cluster))
	}
	w, err := welcome(&a)
	if err != nil {
		c.SendError(0, "refused", err.Error())
		return fail(err)
	}
	w.MAC = MAC(secret, nonce, ServerLabel)
	if err := c.Send(TWelcome, 0, w); err != nil {
		return fail(err)
	}
	return c, &a, nil
}

// Dial connects to addr ("unix:/path" or "tcp:host:port"), proves it knows secret and checks
// that the server knows it too.
func Dial(addr, secret string, a Auth) (*Conn, *Welcome, error) {
	network, address, err := SplitAddr(addr)
	if err != nil {
		return nil, nil, err
	}
	nc, err := net.DialTimeout(network, address, 10*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to shoal agent at %s: %w (is the cluster running? check SHOAL_ADDRESS)", addr, err)
	}
	c := NewConn(nc)
	fail := func(err error) (*Conn, *Welcome, error) { c.Close(); return nil, nil, err }
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer nc.SetReadDeadline(time.Time{})
	f, err := c.Read()
	if err != nil {
		return fail(fmt.Errorf("read HELLO from %s: %w", addr, err))
	}
	var h Hello
	if f.Type != THello {
		return fail(fmt.Errorf("%w: %s did not greet with HELLO (type %d)", ErrCorruptFrame, addr, f.Type))
	}
	if err := f.Decode(&h); err != nil {
		return fail(err)
	}
	a.Proto = Proto
	a.MAC = MAC(secret, h.Nonce, ClientLabel)
	if err := c.Send(TAuth, 0, &a); err != nil {
		return fail(err)
	}
	f, err = c.Read()
	if err != nil {
		return fail(fmt.Errorf("read WELCOME from %s: %w", addr, err))
	}
	if f.Type == TError {
		var e Error
		f.Decode(&e)
		if e.Code == "auth" {
			return fail(fmt.Errorf("%w: %s", ErrAuth, e.Msg))
		}
		return fail(fmt.Errorf("agent at %s refused the connection: %s", addr, e.Msg))
	}
	var w Welcome
	if f.Type != TWelcome {
		return fail(fmt.Errorf("%w: expected WELCOME, got type %d", ErrCorruptFrame, f.Type))
	}
	if err := f.Decode(&w); err != nil {
		return fail(err)
	}
	if !CheckMAC(secret, h.Nonce, w.MAC, ServerLabel) {
		return fail(fmt.Errorf("%w: the agent at %s does not know this secret; it belongs to another cluster", ErrAuth, addr))
	}
	return c, &w, nil
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
