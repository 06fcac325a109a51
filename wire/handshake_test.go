package wire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// testServer is an agent-like listener: TLS on TCP, a Gate, Accept; results go to errs.
type testServer struct {
	ln    net.Listener
	addr  string
	gate  *Gate
	errs  chan error
	auths chan *Auth
}

func startServer(t *testing.T, network string) *testServer {
	t.Helper()
	var ln net.Listener
	var err error
	s := &testServer{errs: make(chan error, 512), auths: make(chan *Auth, 16), gate: NewGate(MaxPending)}
	if network == "unix" {
		p := t.TempDir() + "/s.sock"
		ln, err = net.Listen("unix", p)
		s.addr = "unix:" + p
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			s.addr = "tcp:" + ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	conf, err := ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			ticket := s.gate.Admit(nc)
			if network == "tcp" {
				nc = tls.Server(nc, conf)
			}
			go func() {
				c, a, err := AcceptGated(nc, ticket, testSecret, "c1", func(a *Auth) (*Welcome, error) {
					return &Welcome{Node: "n1", Client: []byte("12345678")}, nil
				})
				s.errs <- err
				if c != nil {
					s.auths <- a
					// answer INFO until the client goes
					for {
						f, err := c.Read()
						if err != nil {
							break
						}
						c.Send(TOK, f.Seq, &InfoReply{Cluster: "c1"})
					}
					c.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.gate.Close() })
	return s
}

func TestHandshakeBothWays(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, network)
			c, w, err := Dial(s.addr, testSecret, Auth{Role: "driver", PID: 7})
			if err != nil {
				t.Fatalf("right secret refused: %v", err)
			}
			defer c.Close()
			if err := <-s.errs; err != nil {
				t.Fatalf("server side: %v", err)
			}
			if w.Node != "n1" || string(w.Client) != "12345678" {
				t.Fatalf("welcome %+v", w)
			}
			if a := <-s.auths; a.Role != "driver" || a.PID != 7 {
				t.Fatalf("server got auth %+v", a)
			}
			_, isTLS := c.Net().(*tls.Conn)
			if isTLS != (network == "tcp") {
				t.Fatalf("connection is TLS: %v, want TLS exactly on tcp", isTLS)
			}
			var r InfoReply
			if err := c.Call(TInfo, 1, nil, &r); err != nil || r.Cluster != "c1" {
				t.Fatalf("call after the handshake: %+v %v", r, err)
			}
		})
	}
}

func TestHandshakeWrongSecret(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, network)
			_, _, err := Dial(s.addr, "wrong", Auth{Role: "cli"})
			if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "wrong secret") {
				t.Fatalf("client: got %v, want ErrAuth naming the wrong secret", err)
			}
			if err := <-s.errs; !errors.Is(err, ErrAuth) {
				t.Fatalf("server side: got %v, want ErrAuth", err)
			}
		})
	}
}

// recorder records what passes through a connection in each direction.
type recorder struct {
	net.Conn
	mu        sync.Mutex
	in, out   bytes.Buffer
	stopAfter int // stop recording reads after this many bytes (0: never)
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.in.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

// recordUnix makes one real connection over a Unix socket (no TLS, so the frames are in clear)
// and returns what the client sent and what it received.
func recordUnix(t *testing.T, s *testServer) (sent, got []byte) {
	t.Helper()
	nc, err := net.Dial("unix", strings.TrimPrefix(s.addr, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: nc}
	c, _, err := ClientHandshake(rec, s.addr, testSecret, Auth{Role: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-s.errs; err != nil {
		t.Fatal(err)
	}
	c.Close()
	return bytes.Clone(rec.out.Bytes()), bytes.Clone(rec.in.Bytes())
}

func TestReplayedAuthRefused(t *testing.T) {
	s := startServer(t, "unix")
	sent, _ := recordUnix(t, s)
	nc, err := net.Dial("unix", strings.TrimPrefix(s.addr, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := ReadFrame(nc); err != nil { // a fresh HELLO, with a fresh nonce
		t.Fatal(err)
	}
	nc.Write(sent) // the AUTH recorded from the earlier connection
	f, err := ReadFrame(nc)
	if err != nil {
		t.Fatal(err)
	}
	var e Error
	if f.Type != TError || f.Decode(&e) != nil || e.Code != "auth" {
		t.Fatalf("replayed AUTH answered with type %d %+v, want ERROR auth", f.Type, e)
	}
	if err := <-s.errs; !errors.Is(err, ErrAuth) {
		t.Fatalf("server side: got %v, want ErrAuth", err)
	}
}

// TestReplayedWelcomeRefused: a fake agent that replays the HELLO and WELCOME recorded from a
// real connection is not believed (with protocol 1 it was: the server's MAC covered only its
// own nonce, which the fake chooses).
func TestReplayedWelcomeRefused(t *testing.T) {
	s := startServer(t, "unix")
	_, got := recordUnix(t, s)
	p := t.TempDir() + "/fake.sock"
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bytes.NewReader(got)
		ReadFrame(r)
		nc.Write(got[:len(got)-r.Len()]) // HELLO
		ReadFrame(nc)                    // the victim's AUTH
		nc.Write(got[len(got)-r.Len():]) // the recorded WELCOME
		io.Copy(io.Discard, nc)
	}()
	_, _, err = Dial("unix:"+p, testSecret, Auth{Role: "member"})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("a replayed WELCOME: got %v, want ErrAuth", err)
	}
}

// otherCert is a certificate that is not the process's: a man in the middle's.
func otherCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shoal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestManInTheMiddleRefused: a relay that terminates the client's TLS with its own certificate
// and opens its own TLS to the agent sees plaintext, but the proofs bind each side's view of
// the server certificate, so neither side accepts the other's proof.
func TestManInTheMiddleRefused(t *testing.T) {
	s := startServer(t, "tcp")
	ln := otherListener(t)
	go func() {
		cc, err := ln.Accept()
		if err != nil {
			return
		}
		defer cc.Close()
		sc, err := tls.Dial("tcp", strings.TrimPrefix(s.addr, "tcp:"), ClientTLS())
		if err != nil {
			return
		}
		defer sc.Close()
		go io.Copy(cc, sc)
		io.Copy(sc, cc)
	}()
	_, _, err := Dial("tcp:"+ln.Addr().String(), testSecret, Auth{Role: "member"})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("through a man in the middle: got %v, want ErrAuth", err)
	}
	if err := <-s.errs; !errors.Is(err, ErrAuth) {
		t.Fatalf("agent behind a man in the middle: got %v, want ErrAuth", err)
	}
}

// TestClientRefusesAnotherServersProof: a server that knows the secret but sits behind a
// different certificate than the one its proof binds (the proof of a relayed connection) is
// refused by the client itself, before it reads anything else.
func TestClientRefusesUnboundProof(t *testing.T) {
	ln := otherListener(t)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		sn := NewNonce()
		writeFrame(nc, THello, &Hello{Proto: Proto, Nonce: sn, Cluster: "c1"})
		f, err := ReadFrame(nc)
		if err != nil {
			return
		}
		var a Auth
		f.Decode(&a)
		// right secret and nonces, but the binding of the process certificate, not the one
		// this connection presented
		writeFrame(nc, TWelcome, &Welcome{Node: "n1", Proof: Proof(testSecret, ServerLabel, a.Nonce, sn, ServerBinding())})
		io.Copy(io.Discard, nc)
	}()
	_, _, err := Dial("tcp:"+ln.Addr().String(), testSecret, Auth{Role: "member"})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestOversizedPreAuthFrame(t *testing.T) {
	t.Run("reader", func(t *testing.T) {
		hdr := []byte{0x10, 0, 0, 0} // 256 MiB
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ReadFrameLimit(io.MultiReader(bytes.NewReader(hdr), zeros{}), PreAuthMax)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrCorruptFrame) {
			t.Fatalf("got %v, want ErrCorruptFrame", err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
			t.Fatalf("refusing the frame allocated %d bytes", d)
		}
	})
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, network)
			n, a, _ := SplitAddr(s.addr)
			nc, err := net.Dial(n, a)
			if err != nil {
				t.Fatal(err)
			}
			if network == "tcp" {
				nc = tls.Client(nc, ClientTLS())
			}
			defer nc.Close()
			if _, err := ReadFrame(nc); err != nil {
				t.Fatal(err)
			}
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], MaxFrame)
			nc.Write(hdr[:])
			f, err := ReadFrame(nc)
			var e Error
			if err != nil || f.Type != TError || f.Decode(&e) != nil || e.Code != "corrupt_frame" {
				t.Fatalf("got %+v %v %+v, want ERROR corrupt_frame", f, err, e)
			}
			if err := <-s.errs; !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("server side: got %v, want ErrCorruptFrame", err)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestHandshakeDeadline(t *testing.T) {
	old := handshakeTimeout
	handshakeTimeout = 200 * time.Millisecond
	defer func() { handshakeTimeout = old }()
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, network)
			n, a, _ := SplitAddr(s.addr)
			nc, err := net.Dial(n, a)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			// say nothing: neither TLS nor AUTH
			select {
			case err := <-s.errs:
				if err == nil {
					t.Fatal("a silent connection was accepted")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a silent connection was not dropped at the handshake deadline")
			}
		})
	}
}

func TestGateChoosesWhomToDrop(t *testing.T) {
	t.Run("oldest", func(t *testing.T) {
		g := NewGate(2)
		a, b, c := newClosable("10.0.0.1"), newClosable("10.0.0.1"), newClosable("10.0.0.1")
		ta := g.Admit(a)
		g.Admit(b)
		ta.Done() // a finished its handshake: not counted, not closed
		tc := g.Admit(c)
		if a.isClosed() || b.isClosed() || c.isClosed() || g.Pending() != 2 {
			t.Fatalf("under the limit: closed a=%v b=%v c=%v, pending %d", a.isClosed(), b.isClosed(), c.isClosed(), g.Pending())
		}
		d := newClosable("10.0.0.1")
		g.Admit(d)
		if !b.isClosed() || c.isClosed() || d.isClosed() {
			t.Fatalf("over the limit: closed b=%v c=%v d=%v, want only b (the oldest)", b.isClosed(), c.isClosed(), d.isClosed())
		}
		tc.Done()
		g.Close()
		if !d.isClosed() {
			t.Fatal("Close left a pending connection open")
		}
		e := newClosable("10.0.0.1")
		g.Admit(e)
		if !e.isClosed() {
			t.Fatal("a closed gate admitted a connection")
		}
	})
	t.Run("no progress first", func(t *testing.T) {
		g := NewGate(2)
		a, b := newClosable("10.0.0.1"), newClosable("10.0.0.1")
		g.Admit(a).Progress() // through TLS
		g.Admit(b)
		g.Admit(newClosable("10.0.0.1"))
		if a.isClosed() || !b.isClosed() {
			t.Fatalf("closed a=%v b=%v, want b (no progress) although a is older", a.isClosed(), b.isClosed())
		}
	})
	t.Run("busiest address first", func(t *testing.T) {
		g := NewGate(3)
		y, x1, x2 := newClosable("10.0.0.2"), newClosable("10.0.0.1"), newClosable("10.0.0.1")
		g.Admit(y)
		g.Admit(x1)
		g.Admit(x2)
		g.Admit(newClosable("10.0.0.3"))
		if y.isClosed() || !x1.isClosed() || x2.isClosed() {
			t.Fatalf("closed y=%v x1=%v x2=%v, want x1 (oldest of the busiest address)", y.isClosed(), x1.isClosed(), x2.isClosed())
		}
	})
}

type closable struct {
	net.Conn
	addr   net.Addr
	mu     sync.Mutex
	closed bool
}

func newClosable(ip string) *closable {
	return &closable{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}}
}
func (c *closable) RemoteAddr() net.Addr { return c.addr }
func (c *closable) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}
func (c *closable) isClosed() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.closed }

// TestServedDuringFlood: with far more silent connections than the gate admits, a real client
// still gets through, and one that authenticated earlier is still answered.
func TestServedDuringFlood(t *testing.T) {
	s := startServer(t, "tcp")
	early, _, err := Dial(s.addr, testSecret, Auth{Role: "driver"})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	_, a, _ := SplitAddr(s.addr)
	var flood []net.Conn
	for i := 0; i < 4*MaxPending; i++ {
		nc, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, nc)
	}
	defer func() {
		for _, nc := range flood {
			nc.Close()
		}
	}()
	if err := early.Call(TInfo, 1, nil, nil); err != nil {
		t.Fatalf("an authenticated client during the flood: %v", err)
	}
	c, _, err := Dial(s.addr, testSecret, Auth{Role: "cli"})
	if err != nil {
		t.Fatalf("a new client during the flood: %v", err)
	}
	c.Close()
	if p := s.gate.Pending(); p > MaxPending {
		t.Fatalf("%d connections in their handshake, over the limit %d", p, MaxPending)
	}
}

func TestVersionMismatch(t *testing.T) {
	s := startServer(t, "unix")
	nc, err := net.Dial("unix", strings.TrimPrefix(s.addr, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ReadFrame(nc)
	writeFrame(nc, TAuth, &Auth{Proto: 1})
	f, err := ReadFrame(nc)
	var e Error
	if err != nil || f.Type != TError || f.Decode(&e) != nil || e.Code != "version" {
		t.Fatalf("protocol 1 AUTH: got %+v %v %+v, want ERROR version", f, err, e)
	}
	if err := <-s.errs; !errors.Is(err, ErrProtocolVersion) {
		t.Fatalf("server side: got %v", err)
	}
}

// otherListener is a TLS 1.3 listener on loopback with a certificate other than this process's
// (a man in the middle's, or a relay's); closed when the test ends.
func otherListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{otherCert(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
