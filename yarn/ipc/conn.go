package ipc

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/protowire"
)

// Hadoop IPC constants (org.apache.hadoop.ipc.RpcConstants, Server.AuthProtocol).
const (
	rpcVersion        = 9
	serviceClass      = 0
	authProtocolSASL  = 0xDF
	callIDSASL        = -33
	callIDConnContext = -3
	rpcKindProtobuf   = 2 // RpcKindProto.RPC_PROTOCOL_BUFFER
	rpcOpFinalPacket  = 0 // RpcRequestHeaderProto.OperationProto.RPC_FINAL_PACKET
	protocolVersion   = 1 // every YARN *PB protocol is version 1
	maxFrame          = 128 << 20
)

// RpcResponseHeaderProto.RpcStatusProto.
const (
	statusSuccess = 0
	statusError   = 1
	statusFatal   = 2
)

const errorFatalUnauthorized = 15 // RpcErrorCodeProto.FATAL_UNAUTHORIZED

// RpcSaslProto.SaslState.
const (
	saslSuccess   = 0
	saslNegotiate = 1
	saslInitiate  = 2
	saslChallenge = 3
	saslResponse  = 4
	saslWrap      = 5
)

// conn is one authenticated Hadoop IPC connection speaking one protocol.
// Calls are serialized: Hadoop matches responses by call id, but one call at
// a time is all an AM needs and keeps the state simple.
type conn struct {
	mu       sync.Mutex
	nc       net.Conn
	br       *bufio.Reader
	addr     string
	protocol string
	clientID [16]byte
	nextCall int32
	broken   error // set when the stream is out of sync; every later call fails
	log      hclog.Logger

	layer *saslLayer // with integrity or privacy: every packet after the handshake is wrapped
	plain []byte     // unwrapped bytes from the server not yet consumed
	prot  Protection
}

// dial connects, authenticates with tok over SASL DIGEST-MD5 and sends the
// connection context for protocol.
func dial(ctx context.Context, addr, protocol string, tok Token, log hclog.Logger) (*conn, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c := &conn{nc: nc, br: bufio.NewReader(nc), addr: addr, protocol: protocol, log: log}
	if _, err := rand.Read(c.clientID[:]); err != nil {
		nc.Close()
		return nil, fmt.Errorf("make client id: %w", err)
	}
	stop := c.watch(ctx)
	err = c.handshake(tok)
	if !stop() && err == nil {
		err = fmt.Errorf("cancelled: %w", ctx.Err())
	}
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s (%s): %w", addr, short(protocol), ctx.Err())
		}
		return nil, fmt.Errorf("connect to %s (%s): %w", addr, short(protocol), err)
	}
	log.Debug("connected", "addr", addr, "protocol", short(protocol), "protection", c.prot)
	return c, nil
}

func short(protocol string) string { return protocol[strings.LastIndex(protocol, ".")+1:] }

// watch applies ctx's deadline and cancellation to the socket until stop.
// stop reports false when cancellation fired meanwhile: the socket may then
// carry a past deadline, so the connection must not be used again.
func (c *conn) watch(ctx context.Context) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	}
	unregister := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() bool {
		if !unregister() {
			return false
		}
		c.nc.SetDeadline(time.Time{})
		return true
	}
}

func (c *conn) handshake(tok Token) error {
	hdr := []byte{'h', 'r', 'p', 'c', rpcVersion, serviceClass, authProtocolSASL}
	var neg msg
	neg.int(2, saslNegotiate) // RpcSaslProto.state = 2
	if err := c.send(append(hdr, c.packet(callIDSASL, nil, neg)...)); err != nil {
		return fmt.Errorf("send connection header: %w", err)
	}
	var dc *digestClient
	for {
		rh, payload, err := c.recv()
		if err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
		if rh.status != statusSuccess {
			re := rh.remoteError()
			if rh.errorDetail == errorFatalUnauthorized || isAuthClass(re.Class) || dc != nil {
				return fmt.Errorf("%w: %w", ErrAuth, re)
			}
			return fmt.Errorf("sasl: %w", re)
		}
		if rh.callID != callIDSASL {
			return fmt.Errorf("sasl: response for call %d, want %d", rh.callID, callIDSASL)
		}
		sm, err := decodeSasl(payload)
		if err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
		var reply msg
		switch sm.state {
		case saslNegotiate:
			var chosen *saslAuth
			var offered []string
			for i := range sm.auths {
				a := &sm.auths[i]
				offered = append(offered, a.method+"/"+a.mechanism)
				if a.method == "TOKEN" && a.mechanism == "DIGEST-MD5" && chosen == nil {
					chosen = a
				}
			}
			if chosen == nil {
				return fmt.Errorf("%w: server offers %v, this client speaks only TOKEN/DIGEST-MD5", ErrAuth, offered)
			}
			dc = newDigestClient(tok, chosen.protocol, chosen.serverID)
			var token []byte
			if len(chosen.challenge) > 0 {
				if token, err = dc.respond(chosen.challenge); err != nil {
					return fmt.Errorf("%w: %w", ErrAuth, err)
				}
			}
			reply.int(2, saslInitiate)
			if token != nil {
				reply.bytes(3, token)
			}
			var a msg // SaslAuth: method 1, mechanism 2, protocol 3, serverId 4
			a.str(1, chosen.method)
			a.str(2, chosen.mechanism)
			a.str(3, chosen.protocol)
			a.str(4, chosen.serverID)
			reply.sub(4, a)
		case saslChallenge:
			if dc == nil {
				return fmt.Errorf("sasl: challenge before negotiation")
			}
			token, err := dc.respond(sm.token)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrAuth, err)
			}
			reply.int(2, saslResponse)
			reply.bytes(3, token)
		case saslSuccess:
			if dc == nil {
				return fmt.Errorf("%w: server accepted the connection without authentication (simple auth); YARN's AM and NM protocols need a token", ErrAuth)
			}
			if err := dc.verify(sm.token); err != nil {
				return fmt.Errorf("%w: %w", ErrAuth, err)
			}
			if dc.qop != "auth" {
				l, err := newSaslLayer(dc.ha1, dc.qop, dc.cipher, dc.maxSend)
				if err != nil {
					return fmt.Errorf("sasl: %w", err)
				}
				c.layer = l
			}
			c.prot = protectionOf(dc.qop)
			return c.sendContext()
		default:
			return fmt.Errorf("sasl: unexpected state %d from server", sm.state)
		}
		if err := c.send(c.packet(callIDSASL, nil, reply)); err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
	}
}

// sendContext sends IpcConnectionContextProto (protocol = 3). With token
// authentication the server takes the user from the token, and it refuses a
// userInfo naming anyone else, so none is sent.
func (c *conn) sendContext() error {
	var cc msg
	cc.str(3, c.protocol)
	if err := c.send(c.packet(callIDConnContext, nil, cc)); err != nil {
		return fmt.Errorf("send connection context: %w", err)
	}
	return nil
}

func isAuthClass(class string) bool {
	return strings.Contains(class, "SaslException") || strings.Contains(class, "InvalidToken") ||
		strings.Contains(class, "AccessControlException")
}

// packet frames one request: 4-byte big-endian length, then the delimited
// RpcRequestHeaderProto, then each part delimited.
func (c *conn) packet(callID int32, parts ...[]byte) []byte {
	var h msg // RpcRequestHeaderProto
	h.int(1, rpcKindProtobuf)
	h.int(2, rpcOpFinalPacket)
	h.sint(3, callID)
	if callID >= 0 {
		h.bytes(4, c.clientID[:])
		h.sint(5, 0) // retryCount: first try
	} else {
		h.bytes(4, nil) // SASL and the connection context use the dummy id
		h.sint(5, -1)
	}
	body := delimited(nil, h)
	for _, p := range parts {
		if p != nil {
			body = delimited(body, p)
		}
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	return append(out, body...)
}

// send writes packets; after a handshake that negotiated integrity or privacy
// it wraps them, in pieces the server's maxbuf allows, each in a SASL WRAP
// message (call id -33), as Hadoop's SaslRpcClient does.
func (c *conn) send(b []byte) error {
	if c.layer != nil {
		var out []byte
		for len(b) > 0 {
			n := min(len(b), c.layer.maxRaw)
			var w msg
			w.int(2, saslWrap)
			w.bytes(3, c.layer.wrap(b[:n]))
			out = append(out, c.packet(callIDSASL, nil, w)...)
			b = b[n:]
		}
		b = out
	}
	_, err := c.nc.Write(b)
	return err
}

// recv reads one response frame; with a security layer, from the bytes
// unwrapped from the server's WRAP messages.
func (c *conn) recv() (respHeader, []byte, error) {
	if c.layer == nil {
		frame, err := c.readFrame()
		if err != nil {
			return respHeader{}, nil, err
		}
		return parseResponse(frame)
	}
	for {
		if len(c.plain) >= 4 {
			n := binary.BigEndian.Uint32(c.plain)
			if n > maxFrame {
				return respHeader{}, nil, fmt.Errorf("read response: frame of %d bytes over the %d limit", n, maxFrame)
			}
			if uint64(len(c.plain)) >= 4+uint64(n) {
				frame := c.plain[4 : 4+n]
				c.plain = c.plain[4+n:]
				return parseResponse(frame)
			}
		}
		frame, err := c.readFrame()
		if err != nil {
			return respHeader{}, nil, err
		}
		h, payload, err := parseResponse(frame)
		if err != nil {
			return h, nil, err
		}
		if h.status != statusSuccess { // the server refused before wrapping anything
			return h, nil, nil
		}
		if h.callID != callIDSASL {
			return h, nil, fmt.Errorf("read response: call %d in clear on a connection with %s protection", h.callID, c.prot)
		}
		sm, err := decodeSasl(payload)
		if err != nil {
			return h, nil, fmt.Errorf("read response: %w", err)
		}
		if sm.state != saslWrap {
			return h, nil, fmt.Errorf("read response: SASL state %d, want WRAP", sm.state)
		}
		p, err := c.layer.unwrap(sm.token)
		if err != nil {
			return h, nil, fmt.Errorf("read response from %s: %w", c.addr, err)
		}
		c.plain = append(c.plain, p...)
	}
}

// readFrame reads one length-prefixed frame from the socket.
func (c *conn) readFrame() ([]byte, error) {
	var lb [4]byte
	if _, err := io.ReadFull(c.br, lb[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read response: server closed the connection: %w", io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("read response: %w", err)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > maxFrame {
		return nil, fmt.Errorf("read response: frame of %d bytes over the %d limit (is %s a Hadoop IPC port?)", n, maxFrame, c.addr)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(c.br, frame); err != nil {
		return nil, fmt.Errorf("read response: %w", noEOF(err))
	}
	return frame, nil
}

// respHeader is RpcResponseHeaderProto.
type respHeader struct {
	callID      int32 // uint32 on the wire; Java writes negative ids as their bits
	status      int32
	serverIPC   uint32
	exception   string
	errorMsg    string
	errorDetail int32
}

func (h respHeader) remoteError() *RemoteError {
	return &RemoteError{Class: h.exception, Msg: h.errorMsg, Fatal: h.status == statusFatal}
}

// parseResponse splits a response frame (without its length) into the
// header and, for a successful call, the response message.
func parseResponse(frame []byte) (respHeader, []byte, error) {
	var h respHeader
	hb, n := protowire.ConsumeBytes(frame)
	if n < 0 {
		return h, nil, fmt.Errorf("parse response header: %w", protowire.ParseError(n))
	}
	rest := frame[n:]
	seenCall, seenStatus := false, false
	err := fields(hb, func(f field) error {
		var err error
		switch f.num {
		case 1:
			var v uint64
			v, err = f.varint()
			h.callID, seenCall = int32(uint32(v)), true
		case 2:
			h.status, err = f.int32()
			seenStatus = true
		case 3:
			var v uint64
			v, err = f.varint()
			h.serverIPC = uint32(v)
		case 4:
			h.exception, err = f.str()
		case 5:
			h.errorMsg, err = f.str()
		case 6:
			h.errorDetail, err = f.int32()
		}
		return err
	})
	if err != nil {
		return h, nil, fmt.Errorf("parse response header: %w", err)
	}
	if !seenCall || !seenStatus {
		return h, nil, fmt.Errorf("parse response header: no call id or status")
	}
	if h.status != statusSuccess {
		return h, nil, nil
	}
	if len(rest) == 0 {
		return h, nil, nil
	}
	body, n := protowire.ConsumeBytes(rest)
	if n < 0 {
		return h, nil, fmt.Errorf("parse response body: %w", protowire.ParseError(n))
	}
	if n != len(rest) {
		return h, nil, fmt.Errorf("parse response: %d bytes after the body", len(rest)-n)
	}
	return h, body, nil
}

// saslAuth is RpcSaslProto.SaslAuth.
type saslAuth struct {
	method, mechanism, protocol, serverID string
	challenge                             []byte
}

type saslMsg struct {
	state int32
	token []byte
	auths []saslAuth
}

func decodeSasl(b []byte) (m saslMsg, err error) {
	m.state = -1
	err = fields(b, func(f field) error {
		var err error
		switch f.num {
		case 2:
			m.state, err = f.int32()
		case 3:
			m.token, err = f.bytes()
		case 4:
			var ab []byte
			if ab, err = f.bytes(); err != nil {
				return err
			}
			var a saslAuth
			err = fields(ab, func(g field) (err error) {
				switch g.num {
				case 1:
					a.method, err = g.str()
				case 2:
					a.mechanism, err = g.str()
				case 3:
					a.protocol, err = g.str()
				case 4:
					a.serverID, err = g.str()
				case 5:
					a.challenge, err = g.bytes()
				}
				return err
			})
			m.auths = append(m.auths, a)
		}
		return err
	})
	if err == nil && m.state < 0 {
		err = fmt.Errorf("sasl message without state")
	}
	return m, err
}

// call runs one protobuf RPC: RequestHeaderProto (methodName = 1,
// declaringClassProtocolName = 2, clientProtocolVersion = 3) and the request,
// and returns the response message.
func (c *conn) call(ctx context.Context, method string, req msg) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	var rh msg
	rh.str(1, method)
	rh.str(2, c.protocol)
	rh.uint(3, protocolVersion)
	if req == nil {
		req = msg{}
	}
	id := c.nextCall
	c.nextCall++
	stop := c.watch(ctx)
	defer func() {
		if !stop() && c.broken == nil {
			c.broken = fmt.Errorf("connection to %s is closed: a call was cancelled", c.addr)
			c.nc.Close()
		}
	}()
	fail := func(err error) ([]byte, error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		c.broken = fmt.Errorf("connection to %s is closed after an earlier error: %w", c.addr, err)
		c.nc.Close()
		return nil, err
	}
	if err := c.send(c.packet(id, rh, req)); err != nil {
		return fail(fmt.Errorf("send %s: %w", method, err))
	}
	for {
		h, body, err := c.recv()
		if err != nil {
			return fail(fmt.Errorf("%s: %w", method, err))
		}
		if h.callID != id {
			if h.status == statusFatal {
				return fail(fmt.Errorf("%s: %w", method, h.remoteError()))
			}
			c.log.Debug("response for another call ignored", "call_id", h.callID, "want", id)
			continue
		}
		switch h.status {
		case statusSuccess:
			return body, nil
		case statusFatal:
			return fail(fmt.Errorf("%s: %w", method, h.remoteError()))
		default:
			return nil, fmt.Errorf("%s: %w", method, h.remoteError())
		}
	}
}

func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = fmt.Errorf("connection to %s is closed", c.addr)
	}
	return c.nc.Close()
}

// usable says whether calls can still go through this connection.
func (c *conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken == nil
}
