package rdma

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// TCPConfig configures the TCP transport.
type TCPConfig struct {
	// Secret is the cluster secret; both ends prove they know it (HMAC-SHA256 over a fresh
	// nonce, as wire's handshake does) before any data moves. Required.
	Secret string
	// Host is the address to listen on and to advertise in Listener.Addr ("" = 127.0.0.1).
	// Use the node's address on the network the peers share when they are on other nodes.
	Host string
	// Streams is the number of TCP connections behind one Conn (0 = 4). Messages of at least
	// StripeMin bytes are split over all of them, which pays where one TCP stream cannot fill
	// the link (long fat networks, NICs whose interrupts spread over queues).
	Streams int
	// LoopbackStreams replaces Streams for a peer on a loopback address, where one stream is
	// already as fast as memory copies allow and more only add thread hand-offs (0 = 1).
	LoopbackStreams int
	// StripeMin is the smallest message striped over several streams (0 = 4 MiB).
	StripeMin int
	// Chunk is the piece size in which large messages are written and read, so that a
	// cancelled or timed-out operation stops within one chunk (0 = 1 MiB).
	Chunk int
	// HandshakeTimeout bounds the authentication of one stream, TLS included (0 = 10 s).
	HandshakeTimeout time.Duration
	// Insecure turns encryption off (--insecure-data-plane): streams are authenticated but
	// carry the bytes in clear, through the non-blocking system calls of rdma/tcpio.go. The
	// default runs every stream inside TLS 1.3 (docs/security.md, "Data plane"). Both ends
	// must agree; a mismatch fails the dial with an error that says so.
	Insecure bool
	// MaxHandshakes bounds the connections of one listener that are in their handshake at
	// once (0 = 64); a new one beyond it closes the oldest (see handshakes).
	MaxHandshakes int
}

// TCP is the TCP transport. It is safe for concurrent use.
type TCP struct{ cfg TCPConfig }

var _ Transport = (*TCP)(nil)

// NewTCP returns a TCP transport; it fails only when cfg has no secret.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if cfg.Secret == "" {
		return nil, errors.New("new tcp transport: no cluster secret (set SHOAL_SECRET)")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Streams <= 0 {
		cfg.Streams = 4
	}
	if cfg.Streams > 64 {
		cfg.Streams = 64
	}
	if cfg.LoopbackStreams <= 0 {
		cfg.LoopbackStreams = 1
	}
	if cfg.StripeMin <= 0 {
		cfg.StripeMin = 4 << 20
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 1 << 20
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 64
	}
	return &TCP{cfg: cfg}, nil
}

// Name returns "tcp".
func (t *TCP) Name() string { return "tcp" }

// Handshake of every stream (fixed sizes, big-endian):
//
//	server -> client: "SHRT" version(1) mode(1)   mode 'T': TLS follows, 'P': in clear
//	[mode 'T': a TLS 1.3 handshake; everything below runs inside the TLS session]
//	server -> client: server nonce(32)
//	client -> server: proof(32), client nonce(32), conn id(16), stream index(1), stream count(1)
//	server -> client: status(1) (0 ok, 1 wrong secret), proof(32)
//
// Both proofs are wire.Proof under the cluster secret over both nonces and the channel binding
// (SHA-256 of the TLS server's certificate; empty in clear), with the labels tcpClientLabel and
// tcpServerLabel: a recorded proof is never accepted again, and a man in the middle with his
// own certificate can neither make nor relay one. The mode goes first and in clear so that
// two ends that disagree about encryption fail at once with an error that names the setting.
// Nothing the peer sends before its proof checks is longer than tcpAuthLen bytes, and nothing
// is allocated from it.
//
// Streams with the same conn id form one Conn; Accept returns it once all have arrived.
const (
	tcpMagic       = "SHRT"
	tcpVersion     = 2
	tcpModeTLS     = 'T'
	tcpModeClear   = 'P'
	tcpClientLabel = "shoal/2 rdma-tcp client"
	tcpServerLabel = "shoal/2 rdma-tcp server"
	tcpBannerLen   = 4 + 1 + 1
	tcpNonceLen    = 32
	tcpAuthLen     = 32 + 32 + 16 + 1 + 1
	tcpReplyLen    = 1 + 32
)

// InsecureHint names the three ways to set the data plane's encryption, for error messages.
const InsecureHint = "--insecure-data-plane, SHOAL_INSECURE_DATA_PLANE=1, or data_plane.insecure in shoal.toml"

// InsecureFromEnv reports whether SHOAL_INSECURE_DATA_PLANE asks for an unencrypted data plane
// ("1", "true", "yes", "on"); the agent sets it for workers and drivers of such a cluster, so
// that collective ranks agree with the agents.
func InsecureFromEnv() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("SHOAL_INSECURE_DATA_PLANE"))) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func (t *TCP) mode() byte {
	if t.cfg.Insecure {
		return tcpModeClear
	}
	return tcpModeTLS
}

// tlsConfigs are the TLS configurations of every tcp transport: wire's, with fixed 16 KiB
// records (Go's dynamic record sizing starts each burst with small records, which costs bulk
// transfers a third of their speed for the first hundreds of KiB).
var tlsConfigs = sync.OnceValues(func() (*tls.Config, *tls.Config) {
	srv, err := wire.ServerTLS()
	if err == nil {
		srv = srv.Clone()
		srv.DynamicRecordSizingDisabled = true
	}
	cli := wire.ClientTLS().Clone()
	cli.DynamicRecordSizingDisabled = true
	return srv, cli
})

// Listen starts accepting connections on cfg.Host with a port the OS chooses.
func (t *TCP) Listen(ctx context.Context) (Listener, error) {
	if !t.cfg.Insecure {
		if srv, _ := tlsConfigs(); srv == nil {
			_, err := wire.ServerTLS()
			return nil, fmt.Errorf("listen for tcp transport: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(t.cfg.Host, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen for tcp transport on %s: %w", t.cfg.Host, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	l := &tcpListener{
		t:       t,
		ln:      ln,
		addr:    net.JoinHostPort(t.cfg.Host, fmt.Sprint(port)),
		pending: map[[16]byte]*tcpPending{},
		ready:   make(chan *tcpConn, 64),
		done:    make(chan struct{}),
		hs:      newHandshakes(t.cfg.MaxHandshakes),
	}
	go l.loop()
	return l, nil
}

type tcpPending struct {
	streams []net.Conn
	got     int
	since   time.Time
}

type tcpListener struct {
	t    *TCP
	ln   net.Listener
	addr string

	mu      sync.Mutex
	pending map[[16]byte]*tcpPending
	ready   chan *tcpConn
	done    chan struct{}
	once    sync.Once
	err     error
	hs      *handshakes // connections in their handshake
}

func (l *tcpListener) Addr() string { return l.addr }

func (l *tcpListener) loop() {
	for {
		nc, err := wire.AcceptBackoff(l.ln, nil)
		if err != nil {
			l.mu.Lock()
			if l.err == nil {
				l.err = err
			}
			l.mu.Unlock()
			l.Close()
			return
		}
		l.hs.start(nc)
		go func() {
			s, au, ok := l.handshake(nc)
			if !l.hs.end(nc) && ok {
				s.Close()
				ok = false
			}
			if ok {
				l.join(s, au)
			}
		}()
	}
}

// handshake authenticates one stream (the server's side) within HandshakeTimeout.
func (l *tcpListener) handshake(nc net.Conn) (net.Conn, tcpAuth, bool) {
	cfg := &l.t.cfg
	nc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	fail := func() (net.Conn, tcpAuth, bool) { nc.Close(); return nil, tcpAuth{}, false }
	banner := [tcpBannerLen]byte{'S', 'H', 'R', 'T', tcpVersion, l.t.mode()}
	if _, err := nc.Write(banner[:]); err != nil {
		return fail()
	}
	s := nc
	var binding []byte
	if !cfg.Insecure {
		srv, _ := tlsConfigs()
		tc := tls.Server(tlsSocket(nc), srv)
		if err := tc.Handshake(); err != nil {
			return fail()
		}
		s, binding = tc, wire.ServerBinding()
	}
	nonce := wire.NewNonce()
	if _, err := s.Write(nonce); err != nil {
		return fail()
	}
	var a [tcpAuthLen]byte
	if _, err := io.ReadFull(s, a[:]); err != nil {
		return fail()
	}
	au, err := parseTCPAuth(a[:])
	if err != nil {
		return fail()
	}
	if !wire.CheckProof(cfg.Secret, tcpClientLabel, au.nonce, nonce, binding, au.mac) {
		s.Write([]byte{1})
		s.Close()
		return nil, tcpAuth{}, false
	}
	var reply [tcpReplyLen]byte
	copy(reply[1:], wire.Proof(cfg.Secret, tcpServerLabel, au.nonce, nonce, binding))
	if _, err := s.Write(reply[:]); err != nil {
		s.Close()
		return nil, tcpAuth{}, false
	}
	nc.SetDeadline(time.Time{})
	tuneTCP(nc)
	return s, au, true
}

// join adds an authenticated stream to its connection, and hands the connection to Accept
// once all its streams came.
func (l *tcpListener) join(nc net.Conn, au tcpAuth) {
	cfg := &l.t.cfg
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		nc.Close()
		return
	default:
	}
	// forget half-made connections whose other streams never came
	for k, p := range l.pending {
		if time.Since(p.since) > 2*cfg.HandshakeTimeout {
			for _, s := range p.streams {
				if s != nil {
					s.Close()
				}
			}
			delete(l.pending, k)
		}
	}
	id, idx, n := au.id, au.idx, au.n
	p := l.pending[id]
	if p == nil {
		p = &tcpPending{streams: make([]net.Conn, n), since: time.Now()}
		l.pending[id] = p
	}
	if len(p.streams) != n || p.streams[idx] != nil {
		nc.Close()
		return
	}
	p.streams[idx] = nc
	p.got++
	if p.got < n {
		return
	}
	delete(l.pending, id)
	c := newTCPConn(cfg, p.streams)
	select {
	case l.ready <- c:
	default:
		// nobody accepts fast enough; refuse rather than block the handshakes
		c.Close()
	}
}

type tcpAuth struct {
	mac, nonce []byte
	id         [16]byte
	idx, n     int
}

// parseTCPAuth reads a client's authentication message (outside input: anyone can connect).
func parseTCPAuth(a []byte) (tcpAuth, error) {
	if len(a) != tcpAuthLen {
		return tcpAuth{}, fmt.Errorf("tcp transport authentication of %d bytes, want %d", len(a), tcpAuthLen)
	}
	au := tcpAuth{mac: a[:32], nonce: a[32:64], idx: int(a[80]), n: int(a[81])}
	copy(au.id[:], a[64:80])
	if au.n == 0 || au.idx >= au.n {
		return tcpAuth{}, fmt.Errorf("tcp transport authentication names stream %d of %d", au.idx, au.n)
	}
	return au, nil
}

func (l *tcpListener) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("accept tcp connection on %s: %w", l.addr, ctx.Err())
	case <-l.done:
		l.mu.Lock()
		err := l.err
		l.mu.Unlock()
		if err == nil || errors.Is(err, net.ErrClosed) {
			err = net.ErrClosed
		}
		return nil, fmt.Errorf("accept tcp connection on %s: %w", l.addr, err)
	}
}

func (l *tcpListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.ln.Close()
		l.hs.closeAll()
		l.mu.Lock()
		for k, p := range l.pending {
			for _, s := range p.streams {
				if s != nil {
					s.Close()
				}
			}
			delete(l.pending, k)
		}
		l.mu.Unlock()
		for {
			select {
			case c := <-l.ready:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Dial connects cfg.Streams streams to addr and authenticates each.
func (t *TCP) Dial(ctx context.Context, addr string) (Conn, error) {
	var id [16]byte
	rand.Read(id[:])
	n := t.cfg.Streams
	if t.cfg.LoopbackStreams > 0 && isLoopback(addr) {
		n = t.cfg.LoopbackStreams
	}
	streams := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streams[i], errs[i] = t.dialStream(ctx, addr, id, i, n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range streams {
			if s != nil {
				s.Close()
			}
		}
		return nil, err
	}
	return newTCPConn(&t.cfg, streams), nil
}

func (t *TCP) dialStream(ctx context.Context, addr string, id [16]byte, idx, n int) (net.Conn, error) {
	d := net.Dialer{Timeout: t.cfg.HandshakeTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial tcp transport at %s: %w", addr, err)
	}
	dl := time.Now().Add(t.cfg.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	nc.SetDeadline(dl)
	fail := func(err error) (net.Conn, error) { nc.Close(); return nil, err }
	var banner [tcpBannerLen]byte
	if _, err := io.ReadFull(nc, banner[:]); err != nil {
		return fail(fmt.Errorf("read tcp transport greeting from %s: %w", addr, err))
	}
	if string(banner[:4]) != tcpMagic || banner[4] != tcpVersion {
		return fail(fmt.Errorf("%s is not a shoal tcp transport listener of version %d (greeting %q); every node must run the same shoal", addr, tcpVersion, banner[:5]))
	}
	if err := checkMode(banner[5], t.mode(), addr); err != nil {
		return fail(err)
	}
	s := nc
	var binding []byte
	if !t.cfg.Insecure {
		_, cli := tlsConfigs()
		tc := tls.Client(tlsSocket(nc), cli)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("tls handshake with the tcp transport at %s: %w", addr, err))
		}
		s, binding = tc, wire.ClientBinding(tc.ConnectionState())
	}
	fail = func(err error) (net.Conn, error) { s.Close(); return nil, err }
	var snonce [tcpNonceLen]byte
	if _, err := io.ReadFull(s, snonce[:]); err != nil {
		return fail(fmt.Errorf("read tcp transport greeting from %s: %w", addr, err))
	}
	auth := make([]byte, tcpAuthLen)
	nonce := wire.NewNonce()
	copy(auth, wire.Proof(t.cfg.Secret, tcpClientLabel, nonce, snonce[:], binding))
	copy(auth[32:], nonce)
	copy(auth[64:], id[:])
	auth[80], auth[81] = byte(idx), byte(n)
	if _, err := s.Write(auth); err != nil {
		return fail(fmt.Errorf("send tcp transport authentication to %s: %w", addr, err))
	}
	var reply [tcpReplyLen]byte
	if _, err := io.ReadFull(s, reply[:1]); err != nil {
		return fail(fmt.Errorf("read tcp transport answer from %s: %w", addr, err))
	}
	if reply[0] != 0 {
		return fail(fmt.Errorf("%w: the tcp transport at %s does not accept this cluster secret; use the secret of the cluster the peer belongs to (SHOAL_SECRET)", wire.ErrAuth, addr))
	}
	if _, err := io.ReadFull(s, reply[1:]); err != nil {
		return fail(fmt.Errorf("read tcp transport answer from %s: %w", addr, err))
	}
	if !wire.CheckProof(t.cfg.Secret, tcpServerLabel, nonce, snonce[:], binding, reply[1:]) {
		return fail(fmt.Errorf("%w: the tcp transport at %s does not know this cluster's secret (or a man in the middle answered)", wire.ErrAuth, addr))
	}
	nc.SetDeadline(time.Time{})
	tuneTCP(nc)
	return s, nil
}

// ErrDataPlaneMismatch is wrapped by a dial to a peer whose data plane is encrypted when this
// end's is not, or the other way round.
var ErrDataPlaneMismatch = errors.New("data plane encryption setting differs between the two ends")

// checkMode compares the listener's mode (its banner) with this end's.
func checkMode(theirs, mine byte, addr string) error {
	if theirs == mine {
		return nil
	}
	switch theirs {
	case tcpModeTLS:
		return fmt.Errorf("%w: the tcp transport at %s encrypts (the default) but this end runs with the data plane in clear; set the same on every node and rank of the cluster (%s)", ErrDataPlaneMismatch, addr, InsecureHint)
	case tcpModeClear:
		return fmt.Errorf("%w: the tcp transport at %s runs with the data plane in clear (insecure data plane) but this end encrypts; set the same on every node and rank of the cluster (%s)", ErrDataPlaneMismatch, addr, InsecureHint)
	}
	return fmt.Errorf("the tcp transport at %s announced an unknown mode %q; every node must run the same shoal", addr, theirs)
}

func isLoopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func tuneTCP(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		// fewer wake-ups of a sender of large messages; a fixed receive buffer instead of the
		// kernel's auto-tuning, which starts small and made the first large messages of a
		// connection wait for the window to grow (docs/collectives.md)
		tc.SetWriteBuffer(4 << 20)
		tc.SetReadBuffer(4 << 20)
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(5 * time.Second)
	}
}

// tcpConn is one Conn made of several TCP streams. Every message starts with its length (8
// bytes) on stream 0. A message shorter than StripeMin follows on stream 0; a longer one is
// cut into len(streams) contiguous parts, part i on stream i. Both ends derive the same
// layout from the length, so the parts need no headers.
type tcpConn struct {
	cfg     *TCPConfig
	streams []net.Conn
	st      []*tcpStream
	hdr     [8]byte
	rhdr    [8]byte
	wbuf    []byte // a small message's header and body, written with one system call
	scratch []byte // RecvStream's buffer
	sndbuf  int    // the kernel's send buffer of a one-stream conn (0: several streams)
	// blocking: the streams are TLS sessions, read and written through blocking calls, so
	// an operation arms its deadline and cancellation before it starts, not after a spin
	blocking bool

	closeOnce sync.Once
}

func newTCPConn(cfg *TCPConfig, streams []net.Conn) *tcpConn {
	c := &tcpConn{cfg: cfg, streams: streams, st: make([]*tcpStream, len(streams)), wbuf: make([]byte, 8+tcpSmallMax)}
	for i, s := range streams {
		c.st[i] = newTCPStream(s)
		if c.st[i].raw == nil {
			c.blocking = true
		}
	}
	s0 := streams[0]
	if tc, ok := s0.(*tls.Conn); ok {
		s0 = tc.NetConn()
	}
	if tc, ok := s0.(*net.TCPConn); ok && len(streams) == 1 {
		if raw, err := tc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
				if err == nil {
					c.sndbuf = v / 2 // the kernel reports twice what it holds for data
				}
			})
		}
	}
	return c
}

// Buffered returns how many bytes a Send can leave unread without blocking: the socket's send
// buffer, for a one-stream conn; 0 for a striped one (its large messages must not be cut
// into pieces that would all go on stream 0).
//
// It reports at most tcpPieceBuf, so that collectives cut messages into pieces of a quarter of
// that (512 KiB): on loopback, 4-16 MiB allreduces ran 15-30% faster in such pieces than in
// 1 MiB ones (the reduction of a piece runs while it is still in cache, and each side waits
// less for the other's next piece), and 1 MiB ones 10% faster than in 256 KiB pieces.
func (c *tcpConn) Buffered() int { return min(c.sndbuf, tcpPieceBuf) }

const tcpPieceBuf = 2 << 20

// striped reports whether an n-byte message is cut into one part per stream.
func (c *tcpConn) striped(n int) bool { return n >= c.cfg.StripeMin && len(c.streams) > 1 }

// parts returns the byte range of each stream's part of an n-byte message.
func (c *tcpConn) parts(n int) [][2]int {
	k := len(c.streams)
	if !c.striped(n) {
		return [][2]int{{0, n}}
	}
	per := (n/k + 4095) &^ 4095
	out := make([][2]int, 0, k)
	for off := 0; off < n; off += per {
		out = append(out, [2]int{off, min(off+per, n)})
	}
	return out
}

// tcpSmallMax is the largest message whose header and body go in one write.
const tcpSmallMax = 64 << 10

// writeQuick writes h then p on stream i without arming anything when the socket takes them
// at once, else arms ctx's deadline and cancellation (*undo) and blocks until they are written.
func (c *tcpConn) writeQuick(ctx context.Context, i int, h, p []byte, undo *func()) error {
	if c.blocking && *undo == nil {
		*undo = c.watch(ctx, false, len(c.streams))
	}
	n, err := c.st[i].write(h, p, *undo != nil)
	if err == nil && n < len(h)+len(p) {
		*undo = c.watch(ctx, false, len(c.streams))
		if n < len(h) {
			_, err = c.st[i].write(h[n:], p, true)
		} else {
			_, err = c.st[i].write(nil, p[n-len(h):], true)
		}
	}
	return err
}

// readQuick fills p from stream i: at once when the bytes are there or come within a short
// spin, else it arms ctx's deadline and cancellation (*undo) and blocks.
func (c *tcpConn) readQuick(ctx context.Context, i int, p []byte, undo *func()) error {
	if c.blocking {
		// TLS: crypto/tls's reads block, so the deadline goes first; the socket under it
		// still spins before it parks (block false)
		if *undo == nil {
			*undo = c.watch(ctx, true, len(c.streams))
		}
		_, err := c.st[i].read(p, false)
		return err
	}
	n, err := c.st[i].read(p, *undo != nil)
	if err == nil && n < len(p) {
		*undo = c.watch(ctx, true, len(c.streams))
		_, err = c.st[i].read(p[n:], true)
	}
	return err
}

func runUndo(undo *func()) {
	if *undo != nil {
		(*undo)()
	}
}

// watch applies ctx's deadline to the streams and makes ctx's cancellation interrupt them.
// The returned function undoes it.
func (c *tcpConn) watch(ctx context.Context, read bool, k int) func() {
	set := func(t time.Time) {
		for _, s := range c.streams[:k] {
			if read {
				s.SetReadDeadline(t)
			} else {
				s.SetWriteDeadline(t)
			}
		}
	}
	dl, hasDL := ctx.Deadline()
	if hasDL {
		set(dl)
	}
	if ctx.Done() == nil {
		// the deadline must not outlive the operation: a later one reads and writes without
		// arming (rdma/tcpio.go), and the poller fails even a non-blocking read once an old
		// deadline has passed
		return func() {
			if hasDL {
				set(time.Time{})
			}
		}
	}
	var mu sync.Mutex
	finished, fired := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			fired = true
			set(time.Unix(1, 0))
		}
	})
	return func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		finished = true
		if hasDL || fired {
			set(time.Time{})
		}
	}
}

func (c *tcpConn) fail(op string, ctx context.Context, err error) error {
	c.Close()
	err = ctxErr(ctx, err)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("peer closed the connection: %w", err)
	}
	return fmt.Errorf("tcp %s %s: %w", op, c.streams[0].RemoteAddr(), err)
}

// Send writes b as one message.
func (c *tcpConn) Send(ctx context.Context, b []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tcp send: %w", err)
	}
	var undo func()
	defer runUndo(&undo)
	if !c.striped(len(b)) {
		var err error
		if len(b) <= tcpSmallMax { // header and body in one write
			binary.BigEndian.PutUint64(c.wbuf, uint64(len(b)))
			n := copy(c.wbuf[8:], b)
			err = c.writeQuick(ctx, 0, nil, c.wbuf[:8+n], &undo)
		} else {
			binary.BigEndian.PutUint64(c.hdr[:], uint64(len(b)))
			err = c.writeQuick(ctx, 0, c.hdr[:], b, &undo)
		}
		if err != nil {
			return c.fail("send to", ctx, err)
		}
		return nil
	}
	undo = c.watch(ctx, false, len(c.streams))
	binary.BigEndian.PutUint64(c.hdr[:], uint64(len(b)))
	if _, err := c.st[0].write(nil, c.hdr[:], true); err != nil {
		return c.fail("send to", ctx, err)
	}
	if err := eachPart(c.parts(len(b)), b, c.writeChunks); err != nil {
		return c.fail("send to", ctx, err)
	}
	return nil
}

// eachPart runs f on each stream's part of b (part i on stream i), the others in goroutines
// beside the caller's, and joins their errors. One part runs on the caller alone.
func eachPart(parts [][2]int, b []byte, f func(i int, b []byte) error) error {
	if len(parts) == 1 {
		return f(0, b)
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i := 1; i < len(parts); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i, b[parts[i][0]:parts[i][1]])
		}()
	}
	errs[0] = f(0, b[parts[0][0]:parts[0][1]])
	wg.Wait()
	return errors.Join(errs...)
}

// writeChunks and readChunks move one stream's part of a striped message (deadline armed).
func (c *tcpConn) writeChunks(i int, b []byte) error {
	_, err := c.st[i].write(nil, b, true)
	return err
}

func (c *tcpConn) readChunks(i int, b []byte) error {
	_, err := c.st[i].read(b, true)
	return err
}

// ErrSize is wrapped by a Recv whose buffer does not have the size of the message that came.
var ErrSize = errors.New("message size mismatch")

// Recv fills b with the next message, which must be exactly len(b) bytes.
func (c *tcpConn) Recv(ctx context.Context, b []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tcp recv: %w", err)
	}
	var undo func()
	defer runUndo(&undo)
	if err := c.recvHeader(ctx, len(b), &undo); err != nil {
		return err
	}
	if !c.striped(len(b)) {
		if err := c.readQuick(ctx, 0, b, &undo); err != nil {
			return c.fail("recv from", ctx, err)
		}
		return nil
	}
	if undo == nil {
		undo = c.watch(ctx, true, len(c.streams))
	}
	if err := eachPart(c.parts(len(b)), b, c.readChunks); err != nil {
		return c.fail("recv from", ctx, err)
	}
	return nil
}

func (c *tcpConn) recvHeader(ctx context.Context, n int, undo *func()) error {
	if err := c.readQuick(ctx, 0, c.rhdr[:], undo); err != nil {
		return c.fail("recv from", ctx, err)
	}
	if m := binary.BigEndian.Uint64(c.rhdr[:]); m != uint64(n) {
		return c.fail("recv from", ctx, fmt.Errorf("%w: the peer sent %d bytes, the receiver expected %d (both sides must agree on counts and types)", ErrSize, m, n))
	}
	return nil
}

// Close closes every stream; the peer's pending and later operations fail.
func (c *tcpConn) Close() error {
	c.closeOnce.Do(func() {
		for _, s := range c.streams {
			s.Close()
		}
	})
	return nil
}

// ctxErr turns the timeout of a deadline that ctx set into ctx's own error, so that callers
// can test for context.DeadlineExceeded and context.Canceled.
func ctxErr(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// RecvStream receives the next message, of n bytes, handing it to fn in pieces of up to 256
// KiB as they are read (one stream), or whole (striped over several streams).
func (c *tcpConn) RecvStream(ctx context.Context, n int, fn func(off int, p []byte)) error {
	if c.striped(n) {
		if cap(c.scratch) < n {
			c.scratch = make([]byte, n)
		}
		b := c.scratch[:n]
		if err := c.Recv(ctx, b); err != nil {
			return err
		}
		fn(0, b)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tcp recv: %w", err)
	}
	var undo func()
	defer runUndo(&undo)
	if err := c.recvHeader(ctx, n, &undo); err != nil {
		return err
	}
	const piece = 256 << 10
	if cap(c.scratch) < min(n, piece) {
		c.scratch = make([]byte, min(n, piece))
	}
	for off := 0; off < n; {
		k := min(n-off, piece)
		if err := c.readQuick(ctx, 0, c.scratch[:k], &undo); err != nil {
			return c.fail("recv from", ctx, err)
		}
		fn(off, c.scratch[:k])
		off += k
	}
	return nil
}
