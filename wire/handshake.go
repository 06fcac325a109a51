package wire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// The handshake (docs/protocol.md, "Handshake"), run inside TLS on TCP:
//
//	server                                   client
//	HELLO {proto, nonce: sn, cluster}  ──>
//	                                   <──   AUTH {proto, nonce: cn, proof: Proof(ClientLabel, cn, sn, binding), ...}
//	(checks the client's proof)
//	WELCOME {proof: Proof(ServerLabel, cn, sn, binding), ...} ──>
//	                                         (checks the server's proof before using anything)
//
// binding is SHA-256 of the TLS server's certificate as each side sees it, empty on a Unix
// socket. Both nonces are fresh, so no recorded proof is accepted again, and a man in the
// middle with his own certificate can neither make a proof nor relay one.

// Labels of the two proofs of the agent protocol's handshake.
const (
	ClientLabel = "shoal/2 client"
	ServerLabel = "shoal/2 server"
)

// Limits before the peer has proved it knows the secret.
const (
	// PreAuthMax is the largest frame payload read before authentication. AUTH carries a
	// Python driver's sys.path, which module systems make several KiB long; the length is
	// checked before anything is allocated.
	PreAuthMax = 16 << 10
	// HandshakeTimeout bounds the whole handshake, TLS included.
	HandshakeTimeout = 10 * time.Second
	// MaxPending is how many connections of one listener may be in their handshake at once
	// (see Gate).
	MaxPending = 64
)

// handshakeTimeout is HandshakeTimeout; tests shorten it.
var handshakeTimeout = HandshakeTimeout

// ErrProtocolVersion is wrapped when the two ends speak different protocol versions.
var ErrProtocolVersion = errors.New("protocol version mismatch")

// Accept runs the server side of the handshake on nc: a *tls.Conn made with ServerTLS for TCP,
// a plain connection for a Unix socket. welcome builds the answer for an authenticated peer
// (its proof is filled in here). The handshake, TLS included, must end within
// HandshakeTimeout, and no frame over PreAuthMax is read before the peer's proof checks. A peer
// with a wrong secret gets an ERROR that says so and an error wrapping ErrAuth is returned; nc
// is closed on any error.
func Accept(nc net.Conn, secret, cluster string, welcome func(*Auth) (*Welcome, error)) (*Conn, *Auth, error) {
	return AcceptGated(nc, nil, secret, cluster, welcome)
}

// AcceptGated is Accept for a connection admitted to a Gate: the ticket records the peer's
// progress and is done when the handshake ends.
func AcceptGated(nc net.Conn, t *Ticket, secret, cluster string, welcome func(*Auth) (*Welcome, error)) (*Conn, *Auth, error) {
	defer t.Done()
	fail := func(err error) (*Conn, *Auth, error) { nc.Close(); return nil, nil, err }
	nc.SetDeadline(time.Now().Add(handshakeTimeout))
	var binding []byte
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(context.Background()); err != nil {
			return fail(fmt.Errorf("tls handshake with %s: %w", nc.RemoteAddr(), err))
		}
		binding = ServerBinding()
		t.Progress()
	}
	sn := NewNonce()
	if err := writeFrame(nc, THello, &Hello{Proto: Proto, Nonce: sn, Cluster: cluster}); err != nil {
		return fail(err)
	}
	f, err := ReadFrameLimit(nc, PreAuthMax)
	if err != nil {
		if errors.Is(err, ErrCorruptFrame) {
			writeFrame(nc, TError, &Error{Code: "corrupt_frame", Msg: err.Error()})
		}
		return fail(fmt.Errorf("read handshake: %w", err))
	}
	if f.Type != TAuth {
		writeFrame(nc, TError, &Error{Code: "auth", Msg: fmt.Sprintf("expected AUTH (type %d) as the first message, got type %d", TAuth, f.Type)})
		return fail(fmt.Errorf("%w: first message has type %d, not AUTH", ErrAuth, f.Type))
	}
	var a Auth
	if err := f.Decode(&a); err != nil {
		writeFrame(nc, TError, &Error{Code: "corrupt_frame", Msg: err.Error()})
		return fail(err)
	}
	if a.Proto != Proto {
		writeFrame(nc, TError, &Error{Code: "version", Msg: fmt.Sprintf("this agent speaks shoal protocol %d, the client speaks %d; use the same shoal version on both sides", Proto, a.Proto)})
		return fail(fmt.Errorf("%w: client speaks protocol %d, want %d", ErrProtocolVersion, a.Proto, Proto))
	}
	if len(a.Nonce) != NonceSize || !CheckProof(secret, ClientLabel, a.Nonce, sn, binding, a.Proof) {
		writeFrame(nc, TError, &Error{Code: "auth", Msg: fmt.Sprintf("wrong secret for cluster %s (set SHOAL_SECRET to the secret of the cluster at this address), or the connection was relayed by something posing as the agent", cluster)})
		return fail(fmt.Errorf("%w: client %s (pid %d, role %q) does not know the secret of cluster %s", ErrAuth, nc.RemoteAddr(), a.PID, a.Role, cluster))
	}
	w, err := welcome(&a)
	if err != nil {
		writeFrame(nc, TError, &Error{Code: "refused", Msg: err.Error()})
		return fail(err)
	}
	w.Proof = Proof(secret, ServerLabel, a.Nonce, sn, binding)
	if err := writeFrame(nc, TWelcome, w); err != nil {
		return fail(err)
	}
	nc.SetDeadline(time.Time{})
	a.Nonce, a.Proof = nil, nil
	return NewConn(nc), &a, nil
}

// Dial connects to addr ("unix:/path" or "tcp:host:port"; TCP runs in TLS 1.3), proves it
// knows secret and checks that the server knows it too, on this very connection, before it
// believes anything the server sent. Errors wrap ErrAuth when either side's proof fails (on
// TCP that includes a man in the middle) and ErrProtocolVersion when the versions differ.
func Dial(addr, secret string, a Auth) (*Conn, *Welcome, error) {
	network, address, err := SplitAddr(addr)
	if err != nil {
		return nil, nil, err
	}
	// An agent under a flood of connections that never authenticate drops some in their
	// handshake (see Gate); one dropped before it proved anything is tried again.
	for try := 0; ; try++ {
		nc, err := net.DialTimeout(network, address, HandshakeTimeout)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to shoal agent at %s: %w (is the cluster running? check SHOAL_ADDRESS)", addr, err)
		}
		c, w, err := ClientHandshake(nc, addr, secret, a)
		if err == nil || !errors.Is(err, errDropped) || try == len(dialRetries) {
			return c, w, err
		}
		time.Sleep(dialRetries[try])
	}
}

// dialRetries are the waits before Dial tries again after the agent dropped its connection.
var dialRetries = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second}

// errDropped marks a connection the agent closed before the handshake's first message.
var errDropped = errors.New("the agent closed the connection")

// dropped wraps err with errDropped when it says the peer closed or reset the connection.
func dropped(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errDropped, err)
	}
	return err
}

// ClientHandshake runs the client side of the handshake on a connection to addr (TLS is
// started here when addr is tcp:); nc is closed on any error.
func ClientHandshake(nc net.Conn, addr, secret string, a Auth) (*Conn, *Welcome, error) {
	fail := func(err error) (*Conn, *Welcome, error) { nc.Close(); return nil, nil, err }
	nc.SetDeadline(time.Now().Add(handshakeTimeout))
	var binding []byte
	if network, _, _ := SplitAddr(addr); network == "tcp" {
		tc := tls.Client(nc, ClientTLS())
		if err := tc.HandshakeContext(context.Background()); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("tls handshake with the shoal agent at %s: %w (is a shoal agent of the same version listening there?)", addr, dropped(err))
		}
		binding = ClientBinding(tc.ConnectionState())
		if binding == nil {
			return fail(fmt.Errorf("%w: the server at %s presented no certificate", ErrAuth, addr))
		}
		nc = tc
	}
	f, err := ReadFrameLimit(nc, PreAuthMax)
	if err != nil {
		return fail(fmt.Errorf("read HELLO from %s: %w", addr, dropped(err)))
	}
	var h Hello
	if f.Type != THello {
		return fail(fmt.Errorf("%w: %s did not greet with HELLO (type %d)", ErrCorruptFrame, addr, f.Type))
	}
	if err := f.Decode(&h); err != nil {
		return fail(err)
	}
	if h.Proto != Proto {
		return fail(fmt.Errorf("%w: the agent at %s speaks shoal protocol %d, this client %d; use the same shoal version on both sides", ErrProtocolVersion, addr, h.Proto, Proto))
	}
	if len(h.Nonce) != NonceSize {
		return fail(fmt.Errorf("%w: HELLO from %s has a %d-byte nonce, want %d", ErrCorruptFrame, addr, len(h.Nonce), NonceSize))
	}
	cn := NewNonce()
	a.Proto, a.Nonce = Proto, cn
	a.Proof = Proof(secret, ClientLabel, cn, h.Nonce, binding)
	b, err := Encode(TAuth, 0, &a)
	if err != nil {
		return fail(err)
	}
	if len(b)-4 > PreAuthMax {
		return fail(fmt.Errorf("the AUTH message is %d bytes, over the %d-byte limit before authentication; shorten the search path (PYTHONPATH) or the working directory", len(b)-4, PreAuthMax))
	}
	if _, err := nc.Write(b); err != nil {
		return fail(fmt.Errorf("send AUTH to %s: %w", addr, err))
	}
	f, err = ReadFrameLimit(nc, PreAuthMax)
	if err != nil {
		return fail(fmt.Errorf("read WELCOME from %s: %w", addr, err))
	}
	if f.Type == TError {
		var e Error
		f.Decode(&e)
		switch e.Code {
		case "auth":
			return fail(fmt.Errorf("%w: %s", ErrAuth, e.Msg))
		case "version":
			return fail(fmt.Errorf("%w: %s", ErrProtocolVersion, e.Msg))
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
	if !CheckProof(secret, ServerLabel, cn, h.Nonce, binding, w.Proof) {
		return fail(fmt.Errorf("%w: the agent at %s did not prove it knows this secret on this connection: it belongs to another cluster, or something between us is posing as it", ErrAuth, addr))
	}
	nc.SetDeadline(time.Time{})
	return NewConn(nc), &w, nil
}

// writeFrame encodes and writes one frame directly (the handshake's frames; no Conn yet).
func writeFrame(nc net.Conn, t Type, body any) error {
	b, err := Encode(t, 0, body)
	if err != nil {
		return err
	}
	_, err = nc.Write(b)
	return err
}

// Gate bounds the connections of one listener that are in their handshake. When MaxPending
// are already waiting, admitting one more closes one of them: first those that have not got
// through TLS (a real client sends its ClientHello at once), then those from the address with
// the most connections waiting, and of those the oldest. So a flood of connections that never
// finish cannot hold the listener: it only displaces itself, while a real client, whose
// handshake takes milliseconds, is unlikely to be chosen. Authenticated connections are not
// counted. A Gate is safe for concurrent use.
type Gate struct {
	max     int
	mu      sync.Mutex
	next    uint64
	pending map[uint64]*Ticket
	closed  bool
}

// Ticket is one connection's place in a Gate. Its methods may be called on a nil Ticket.
type Ticket struct {
	g        *Gate
	id       uint64
	nc       net.Conn
	src      string
	progress bool
}

// NewGate returns a Gate of max connections (MaxPending when max <= 0).
func NewGate(max int) *Gate {
	if max <= 0 {
		max = MaxPending
	}
	return &Gate{max: max, pending: map[uint64]*Ticket{}}
}

// Admit counts nc as in its handshake until the ticket's Done (called once the handshake
// ended, either way). nc is closed at once when the gate is closed.
func (g *Gate) Admit(nc net.Conn) *Ticket {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		nc.Close()
		return nil
	}
	for len(g.pending) >= g.max {
		g.evictLocked()
	}
	g.next++
	src := ""
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		src = a.IP.String()
	}
	t := &Ticket{g: g, id: g.next, nc: nc, src: src}
	g.pending[t.id] = t
	return t
}

func (g *Gate) evictLocked() {
	bySrc := map[string]int{}
	for _, t := range g.pending {
		bySrc[t.src]++
	}
	var worst *Ticket
	less := func(a, b *Ticket) bool { // a is a better choice to drop than b
		if a.progress != b.progress {
			return !a.progress
		}
		if bySrc[a.src] != bySrc[b.src] {
			return bySrc[a.src] > bySrc[b.src]
		}
		return a.id < b.id
	}
	for _, t := range g.pending {
		if worst == nil || less(t, worst) {
			worst = t
		}
	}
	delete(g.pending, worst.id)
	worst.nc.Close()
}

// Progress records that the peer got through TLS (it is dropped for a new connection only
// after those that have not).
func (t *Ticket) Progress() {
	if t == nil {
		return
	}
	t.g.mu.Lock()
	t.progress = true
	t.g.mu.Unlock()
}

// Done ends the ticket: the connection is no longer in its handshake.
func (t *Ticket) Done() {
	if t == nil {
		return
	}
	t.g.mu.Lock()
	delete(t.g.pending, t.id)
	t.g.mu.Unlock()
}

// Pending returns how many connections are in their handshake.
func (g *Gate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

// Close closes every connection still in its handshake, and those admitted from now on.
func (g *Gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for id, t := range g.pending {
		t.nc.Close()
		delete(g.pending, id)
	}
}
