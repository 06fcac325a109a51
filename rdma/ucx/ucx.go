// Package ucx is shoal's RDMA transport: rdma.Transport over UCX's ucp stream API, with
// libucp opened by dlopen at run time (see ucxabi.h and docs/rdma.md).
//
// UCX picks the fastest path it has between two workers: InfiniBand or RoCE verbs where the
// node has an HCA, shared memory (sysv, posix, cma) inside a node, TCP otherwise. Connections
// are made through a sockaddr listener (UCX's TCP or RDMA-CM connection manager), so a
// Listener's Addr is "host:port". Before a connection carries data, each side proves it knows
// the cluster secret: an HMAC-SHA256 challenge over the new endpoint, as wire/auth.go does for
// the control plane.
//
// New fails with an error wrapping rdma.ErrNotSupported when libucp.so.0 cannot be opened
// (SHOAL_UCX_LIB names another path), so callers fall back to TCP. Every UCX call runs on one
// OS thread per Transport; Send and Recv hand their buffers to it (pinned with
// runtime.Pinner) and wait. A Conn whose Send or Recv is cancelled through its context is
// closed, since UCX cannot take back a stream request that has started.
package ucx

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/rdma"
)

var errClosed = errors.New("ucx connection closed")

// Option changes a Transport.
type Option func(*Transport)

// WithLogger sets the logger (default: discard).
func WithLogger(l hclog.Logger) Option { return func(t *Transport) { t.log = l } }

// WithHost sets the address listeners bind to and advertise in Addr; default: bind every
// address and advertise the first non-loopback IPv4 address of an interface that is up.
func WithHost(host string) Option { return func(t *Transport) { t.host = host } }

// WithConfig sets UCX configuration variables without the UCX_ prefix ({"TLS": "tcp"});
// they override the UCX_* environment.
func WithConfig(kv map[string]string) Option {
	return func(t *Transport) {
		for k, v := range kv {
			t.config[k] = v
		}
	}
}

// Transport makes UCX connections authenticated by a cluster secret. It is safe for
// concurrent use.
type Transport struct {
	secret string
	host   string
	config map[string]string
	log    hclog.Logger
	w      *worker

	closeOnce sync.Once
}

var _ rdma.Transport = (*Transport)(nil)

// New opens UCX and starts a worker. It fails with an error wrapping rdma.ErrNotSupported when
// the library is missing; with another error when UCX is there but cannot start (a bad
// UCX_* setting, no usable transport).
func New(secret string, opts ...Option) (*Transport, error) {
	if secret == "" {
		return nil, errors.New("start ucx transport: empty cluster secret (set SHOAL_SECRET)")
	}
	if _, err := Open(); err != nil {
		return nil, err
	}
	t := &Transport{secret: secret, config: map[string]string{}, log: hclog.NewNullLogger()}
	for _, o := range opts {
		o(t)
	}
	w, err := startWorker(t.config, "shoal")
	if err != nil {
		return nil, fmt.Errorf("start ucx transport: %w", err)
	}
	t.w = w
	return t, nil
}

// Name is "ucx".
func (t *Transport) Name() string { return "ucx" }

// Close ends every connection and listener of t and releases UCX.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.w.stop.Store(true)
		C.shoal_ucx_signal(t.w.w)
		<-t.w.stopped
	})
	return nil
}

// Listener accepts authenticated UCX connections.
type Listener struct {
	t        *Transport
	lst      *C.shoal_lst
	addr     string
	accepted chan *Conn
	closed   chan struct{}
	once     sync.Once
	// handshaking counts the endpoints in their handshake (at most maxHandshakes)
	handshaking atomic.Int32
}

var _ rdma.Listener = (*Listener)(nil)

// Listen starts a sockaddr listener on an ephemeral port.
func (t *Transport) Listen(ctx context.Context) (rdma.Listener, error) {
	bind, adv := t.host, t.host
	if bind == "" {
		bind, adv = "0.0.0.0", advertisedHost()
	}
	ip, err := resolve(ctx, bind)
	if err != nil {
		return nil, fmt.Errorf("ucx listen on %s: %w", bind, err)
	}
	l := &Listener{t: t, accepted: make(chan *Conn, 64), closed: make(chan struct{})}
	l.lst = (*C.shoal_lst)(C.calloc(1, C.sizeof_shoal_lst))
	var st C.int
	var port C.int
	ok := t.w.call(func() {
		var ss C.struct_sockaddr_storage
		var sl C.socklen_t
		cip := C.CString(ip)
		defer C.free(unsafe.Pointer(cip))
		C.shoal_ucx_sockaddr(cip, 0, &ss, &sl)
		st = C.shoal_ucx_listen(t.w.w, (*C.struct_sockaddr)(unsafe.Pointer(&ss)), sl, l.lst, &port)
		if st == C.SX_OK {
			l.addr = net.JoinHostPort(adv, strconv.Itoa(int(port)))
			t.w.listeners[l] = struct{}{}
		}
	})
	if !ok || st != C.SX_OK {
		C.free(unsafe.Pointer(l.lst))
		if !ok {
			return nil, fmt.Errorf("ucx listen on %s: %w", bind, errClosed)
		}
		return nil, fmt.Errorf("ucx listen on %s: %w", bind, statusErr("create listener", st))
	}
	t.log.Debug("ucx listening", "addr", l.addr)
	return l, nil
}

// Addr is "host:port".
func (l *Listener) Addr() string { return l.addr }

// Accept returns the next connection whose peer proved the secret. Peers that fail the
// handshake are logged and dropped.
func (l *Listener) Accept(ctx context.Context) (rdma.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("ucx accept on %s: listener closed", l.addr)
	case <-l.t.w.stopped:
		return nil, fmt.Errorf("ucx accept on %s: transport closed", l.addr)
	case <-ctx.Done():
		return nil, fmt.Errorf("ucx accept on %s: %w", l.addr, ctx.Err())
	}
}

// Close stops accepting; connections already accepted stay open.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.t.w.call(func() { l.destroy() })
		for {
			select {
			case c := <-l.accepted:
				c.Close()
				continue
			default:
			}
			break
		}
	})
	return nil
}

// destroy frees the UCX listener; on the worker thread.
func (l *Listener) destroy() {
	if _, ok := l.t.w.listeners[l]; !ok {
		return
	}
	delete(l.t.w.listeners, l)
	C.shoal_ucx_unlisten(l.lst)
	C.free(unsafe.Pointer(l.lst))
	l.lst = nil
}

// incoming makes an endpoint for a connection request and runs the server's side of the
// handshake; on the worker thread.
func (l *Listener) incoming(r C.sx_conn_request_h) {
	var buf [64]C.char
	peer := "a peer"
	if C.shoal_ucx_client_addr(r, &buf[0], C.size_t(len(buf))) == 0 {
		peer = C.GoString(&buf[0])
	}
	if l.handshaking.Load() >= maxHandshakes {
		// a flood of requests that do not authenticate costs no endpoint
		C.shoal_lst_reject(l.lst, r)
		l.t.log.Warn("ucx: rejected a connection request: too many handshakes in progress", "addr", l.addr, "peer", peer)
		return
	}
	c, err := l.t.w.newConn(nil, 0, r, peer)
	if err != nil {
		l.t.log.Warn("ucx: cannot accept connection", "addr", l.addr, "error", err)
		return
	}
	l.handshaking.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		err := c.serverHandshake(ctx, l.t.secret)
		l.handshaking.Add(-1)
		if err != nil {
			l.t.log.Warn("ucx: refused connection", "addr", l.addr, "error", err)
			c.Close()
			return
		}
		select {
		case l.accepted <- c:
		case <-l.closed:
			c.Close()
		}
	}()
}

// Dial connects to a listener's Addr and runs the client's side of the handshake.
func (t *Transport) Dial(ctx context.Context, addr string) (rdma.Conn, error) {
	host, port, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	ip, err := resolve(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("ucx dial %s: %w", addr, err)
	}
	var c *Conn
	ok := t.w.call(func() {
		var ss C.struct_sockaddr_storage
		var sl C.socklen_t
		cip := C.CString(ip)
		defer C.free(unsafe.Pointer(cip))
		C.shoal_ucx_sockaddr(cip, C.int(port), &ss, &sl)
		c, err = t.w.newConn((*C.struct_sockaddr)(unsafe.Pointer(&ss)), sl, nil, addr)
	})
	if !ok {
		return nil, fmt.Errorf("ucx dial %s: %w", addr, errClosed)
	}
	if err != nil {
		return nil, fmt.Errorf("ucx dial %s: %w", addr, err)
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := c.clientHandshake(hctx, t.secret); err != nil {
		c.Close()
		return nil, fmt.Errorf("ucx dial %s: %w", addr, err)
	}
	return c, nil
}

// Conn is one authenticated UCX endpoint. Its messages are framed (see conn.go).
type Conn struct {
	w     *worker
	ep    C.sx_ep_h
	state *C.shoal_epstate
	peer  string
	err   error // set under the worker's mutex once the endpoint is closed

	closed  atomic.Bool // Close was called: this side's Send and Recv fail
	peerFin atomic.Bool // the peer's end-of-stream frame was read
	// hdr is the receiver's header buffer and sbuf the sender's scratch for small messages;
	// each is its own allocation, since cgo may not be handed a pointer into Conn
	hdr  []byte
	sbuf []byte
	once sync.Once
}

var _ rdma.Conn = (*Conn)(nil)

// newConn makes an endpoint; under the worker's mutex.
func (w *worker) newConn(sa *C.struct_sockaddr, sl C.socklen_t, req C.sx_conn_request_h, peer string) (*Conn, error) {
	c := &Conn{w: w, peer: peer, hdr: make([]byte, hdrLen)}
	c.state = (*C.shoal_epstate)(C.calloc(1, C.sizeof_shoal_epstate))
	st := C.shoal_ucx_connect(w.w, sa, sl, req, c.state, &c.ep)
	if st != C.SX_OK {
		C.free(unsafe.Pointer(c.state))
		return nil, statusErr("create endpoint", st)
	}
	w.conns[c] = struct{}{}
	return c, nil
}

// fail closes the endpoint with err: pending requests complete with it, later ones get it at
// once. Under the worker's mutex.
func (c *Conn) fail(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	force := !errors.Is(err, errClosed)
	released := c.w.closeEP(c.ep, force)
	delete(c.w.conns, c)
	// UCX completes the endpoint's requests when it closes it; poll hands out the results.
	c.w.poll()
	if released {
		// UCX let go of the endpoint: its error handler can no longer write the state
		C.free(unsafe.Pointer(c.state))
		c.state = nil
	}
}

// raw sends or receives exactly len(b) bytes of the endpoint's stream.
func (c *Conn) raw(ctx context.Context, b []byte, recv bool) error {
	what := "send"
	if recv {
		what = "recv"
	}
	if len(b) == 0 {
		return nil
	}
	var pin runtime.Pinner
	pin.Pin(&b[0])
	defer pin.Unpin()
	o := &op{recv: recv, conn: c, done: make(chan error, 1), what: fmt.Sprintf("ucx %s %d bytes with %s", what, len(b), c.peer)}
	p := unsafe.Pointer(&b[0])
	ok := c.w.run(func() {
		if c.err != nil {
			o.done <- fmt.Errorf("%s: %w", o.what, c.err)
			return
		}
		var req unsafe.Pointer
		var st C.int
		if recv {
			st = C.shoal_ucx_recv(c.ep, p, C.size_t(len(b)), &req)
		} else {
			st = C.shoal_ucx_send(c.ep, p, C.size_t(len(b)), &req)
		}
		c.w.track(o, st, req)
	})
	if !ok {
		return fmt.Errorf("%s: %w", o.what, errClosed)
	}
	if err, ok := c.w.wait(ctx, o); ok {
		return wrapOp(o.what, err)
	}
	// UCX cannot withdraw a started stream request: close the endpoint, which completes it,
	// and only then let go of b.
	if c.w.run(func() { c.fail(fmt.Errorf("%s: %w", o.what, ctx.Err())) }) {
		<-o.done
	} else {
		// the worker closed, which completed every request
		select {
		case <-o.done:
		case <-c.w.stopped:
		}
	}
	return fmt.Errorf("%s: %w", o.what, ctx.Err())
}

func wrapOp(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// parseAddr splits a listener's Addr ("host:port", "[v6]:port") for Dial.
func parseAddr(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("ucx dial %q: want host:port, as a ucx listener's Addr gives: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("ucx dial %q: port %q is not a number from 1 to 65535", addr, ps)
	}
	if host == "" {
		return "", 0, fmt.Errorf("ucx dial %q: no host", addr)
	}
	return host, port, nil
}

// resolve returns a numeric IP for host.
func resolve(ctx context.Context, host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		if ip.IP.To4() != nil {
			return ip.IP.String(), nil
		}
	}
	return ips[0].IP.String(), nil
}

// advertisedHost is the first non-loopback IPv4 address of an interface that is up, or
// 127.0.0.1.
func advertisedHost() string {
	ifs, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
					return n.IP.String()
				}
			}
		}
	}
	return "127.0.0.1"
}
