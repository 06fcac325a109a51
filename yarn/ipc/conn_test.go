package ipc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The first bytes a client sends: connection header, then the SASL NEGOTIATE
// packet. Laid out by hand from RpcHeader.proto.
func TestNegotiatePacketBytes(t *testing.T) {
	c := &conn{}
	var neg msg
	neg.int(2, saslNegotiate)
	got := c.packet(callIDSASL, nil, neg)
	want := []byte{
		0, 0, 0, 14, // length of what follows
		10,      // RpcRequestHeaderProto, 10 bytes:
		0x08, 2, // rpcKind = RPC_PROTOCOL_BUFFER
		0x10, 0, // rpcOp = RPC_FINAL_PACKET
		0x18, 65, // callId = -33, zigzag
		0x22, 0, // clientId = dummy (empty)
		0x28, 1, // retryCount = -1, zigzag
		2, 0x10, 1, // RpcSaslProto{state: NEGOTIATE}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("packet\n got % x\nwant % x", got, want)
	}
}

func respFrame(h msg, body msg) []byte {
	f := delimited(nil, h)
	if body != nil {
		f = delimited(f, body)
	}
	return f
}

func TestParseResponse(t *testing.T) {
	var ok msg
	ok.uint(1, 7)
	ok.int(2, statusSuccess)
	ok.uint(3, 9)
	var body msg
	body.bool(1, true)
	h, b, err := parseResponse(respFrame(ok, body))
	if err != nil || h.callID != 7 || h.status != statusSuccess || !bytes.Equal(b, body) {
		t.Errorf("success: %+v % x %v", h, b, err)
	}

	var fatal msg
	fatal.uint(1, uint64(uint32(0xFFFFFFDF))) // -33 as Java writes a negative uint32
	fatal.int(2, statusFatal)
	fatal.str(4, "javax.security.sasl.SaslException")
	fatal.str(5, "DIGEST-MD5: digest response format violation. Mismatched response.\n\tat a.b.C")
	fatal.int(6, errorFatalUnauthorized)
	h, b, err = parseResponse(respFrame(fatal, nil))
	if err != nil || h.callID != callIDSASL || h.status != statusFatal || b != nil {
		t.Fatalf("fatal: %+v %v", h, err)
	}
	re := h.remoteError()
	if want := "server error javax.security.sasl.SaslException: DIGEST-MD5: digest response format violation. Mismatched response."; re.Error() != want || !re.Fatal {
		t.Errorf("remote error %q, want %q", re.Error(), want)
	}

	for name, frame := range map[string][]byte{
		"empty":          nil,
		"short header":   {5, 8},
		"no status":      respFrame(func() msg { var m msg; m.uint(1, 1); return m }(), nil),
		"trailing bytes": append(respFrame(ok, body), 0),
		"short body":     respFrame(ok, body)[:len(respFrame(ok, body))-1],
	} {
		if _, _, err := parseResponse(frame); err == nil {
			t.Errorf("%s: accepted % x", name, frame)
		}
	}
}

func FuzzParseResponse(f *testing.F) {
	var ok msg
	ok.uint(1, 7)
	ok.int(2, statusSuccess)
	var body msg
	body.bool(1, true)
	f.Add(respFrame(ok, body))
	var fatal msg
	fatal.uint(1, 0xFFFFFFDF)
	fatal.int(2, statusFatal)
	fatal.str(4, "javax.security.sasl.SaslException")
	f.Add(respFrame(fatal, nil))
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, b, err := parseResponse(frame)
		if err != nil {
			return
		}
		if h.status != statusSuccess && b != nil {
			t.Fatal("error response with a body")
		}
		if len(b) > len(frame) {
			t.Fatal("body longer than the frame")
		}
	})
}

// fakeServer answers the first packet of a connection with one frame.
func fakeServer(t *testing.T, reply func(m msg) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hdr := make([]byte, 7+4)
		if _, err := c.Read(hdr); err != nil {
			return
		}
		rest := make([]byte, binary.BigEndian.Uint32(hdr[7:]))
		c.Read(rest)
		var h msg
		h.uint(1, 0xFFFFFFDF)
		frame := reply(h)
		c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame))))
		c.Write(frame)
		time.Sleep(100 * time.Millisecond)
	}()
	return ln.Addr().String()
}

// How the client reports servers it cannot authenticate with. The real
// exchange runs against YARN in TestYARNApplicationMaster.
func TestHandshakeRefusals(t *testing.T) {
	tok := Token{Identifier: []byte("id"), Password: []byte("pw")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	addr := fakeServer(t, func(h msg) []byte {
		h.int(2, statusFatal)
		h.str(4, "org.apache.hadoop.security.token.SecretManager$InvalidToken")
		h.str(5, "appattempt_1_0001_000001 not found")
		h.int(6, errorFatalUnauthorized)
		return respFrame(h, nil)
	})
	_, err := dial(ctx, addr, amProtocol, tok, nil)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "InvalidToken") {
		t.Errorf("refused token: %v", err)
	}
	var re *RemoteError
	if !errors.As(err, &re) || !re.Fatal {
		t.Errorf("refused token: no fatal *RemoteError in %v", err)
	}

	addr = fakeServer(t, func(h msg) []byte {
		h.int(2, statusSuccess)
		var s, a msg
		s.int(2, saslNegotiate)
		a.str(1, "KERBEROS")
		a.str(2, "GSSAPI")
		s.sub(4, a)
		return respFrame(h, s)
	})
	_, err = dial(ctx, addr, amProtocol, tok, nil)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "KERBEROS/GSSAPI") {
		t.Errorf("kerberos-only server: %v", err)
	}

	addr = fakeServer(t, func(h msg) []byte {
		h.int(2, statusSuccess)
		var s msg
		s.int(2, saslSuccess)
		return respFrame(h, s)
	})
	_, err = dial(ctx, addr, amProtocol, tok, nil)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "without authentication") {
		t.Errorf("simple-auth server: %v", err)
	}
}

// A call cancelled while the server is silent returns promptly with the
// context's error, and the connection is not used again.
func TestCallCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			defer s.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{nc: nc, br: bufio.NewReader(nc), addr: ln.Addr().String(), protocol: amProtocol, log: hclog.NewNullLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = c.call(ctx, "allocate", nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v", err)
	}
	if c.usable() {
		t.Error("connection still usable after a cancelled call")
	}
}
