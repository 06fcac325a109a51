package rdma

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

func TestTCPInsecure(t *testing.T) {
	for _, streams := range []int{1, 4} {
		tr, err := NewTCP(TCPConfig{Secret: wire.NewSecret(), Streams: streams, LoopbackStreams: streams, StripeMin: 1 << 20, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(map[int]string{1: "one stream", 4: "four streams"}[streams], func(t *testing.T) { conformance(t, tr) })
	}
}

// TestTCPEncrypted: a stream of the default transport is a TLS 1.3 session, one of an
// insecure one is a plain socket (the fast path of tcpio.go).
func TestTCPEncrypted(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		tr, _ := NewTCP(TCPConfig{Secret: "s", Insecure: insecure})
		a, _ := pair(t, tr)
		st := a.(*tcpConn).st[0]
		if encrypted := st.raw == nil; encrypted == insecure {
			t.Fatalf("insecure=%v: stream is %T", insecure, st.nc)
		}
	}
}

// TestTCPModeMismatch: two ends that disagree about encryption fail at once, and the error
// names the setting.
func TestTCPModeMismatch(t *testing.T) {
	secret := wire.NewSecret()
	for _, serverInsecure := range []bool{false, true} {
		server, _ := NewTCP(TCPConfig{Secret: secret, Insecure: serverInsecure})
		client, _ := NewTCP(TCPConfig{Secret: secret, Insecure: !serverInsecure})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ln, err := server.Listen(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = client.Dial(ctx, ln.Addr())
		if !errors.Is(err, ErrDataPlaneMismatch) || !strings.Contains(err.Error(), "--insecure-data-plane") {
			t.Fatalf("server insecure=%v: dial: %v, want ErrDataPlaneMismatch naming --insecure-data-plane", serverInsecure, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the mismatch took %s to show", d)
		}
		ln.Close()
		cancel()
	}
}

// rawClient runs the client's side of an insecure stream's handshake by hand up to its proof,
// returning the connection and the server's nonce.
func rawClient(t *testing.T, addr string) (net.Conn, []byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, tcpBannerLen+tcpNonceLen)
	if _, err := io.ReadFull(nc, b); err != nil {
		t.Fatal(err)
	}
	return nc, b[tcpBannerLen:]
}

// TestTCPReplayedClientProof: a client's authentication, recorded off the wire, is refused
// on a new connection (its proof covers the server's fresh nonce).
func TestTCPReplayedClientProof(t *testing.T) {
	secret := wire.NewSecret()
	tr, _ := NewTCP(TCPConfig{Secret: secret, Insecure: true})
	ln, err := tr.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// a real client's authentication, as a listener on the network would record it
	nc, auth, _ := genuineAuth(t, secret, ln.Addr())
	var st [1]byte
	if _, err := io.ReadFull(nc, st[:]); err != nil || st[0] != 0 {
		t.Fatalf("the genuine client was refused: %v %d", err, st[0])
	}
	nc.Close()
	// the recording, replayed
	nc2, _ := rawClient(t, ln.Addr())
	defer nc2.Close()
	auth[64] = 1 // another conn id: the replay is not refused for a duplicate stream
	nc2.Write(auth)
	if _, err := io.ReadFull(nc2, st[:]); err == nil && st[0] == 0 {
		t.Fatal("the listener accepted a replayed client proof")
	}
}

// TestTCPReplayedServerProof: a fake listener that replays a real server's recorded answer
// (and its nonce) is refused by the client (the answer covers the client's fresh nonce).
func TestTCPReplayedServerProof(t *testing.T) {
	secret := wire.NewSecret()
	tr, _ := NewTCP(TCPConfig{Secret: secret, Insecure: true})
	ln, err := tr.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, _, snonce := genuineAuth(t, secret, ln.Addr())
	reply := make([]byte, tcpReplyLen)
	if _, err := io.ReadFull(nc, reply); err != nil || reply[0] != 0 {
		t.Fatalf("the genuine client was refused: %v", err)
	}
	nc.Close()

	fake, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	go func() {
		c, err := fake.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(append([]byte{'S', 'H', 'R', 'T', tcpVersion, tcpModeClear}, snonce...))
		io.ReadFull(c, make([]byte, tcpAuthLen))
		c.Write(reply)
		io.Copy(io.Discard, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := tr.Dial(ctx, fake.Addr().String()); !errors.Is(err, wire.ErrAuth) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial to a listener replaying a recorded answer: %v, want wire.ErrAuth", err)
	}
}

// TestTCPHandshakeFlood: connections that never authenticate occupy at most MaxHandshakes
// handshakes, and a genuine client is served while they keep coming.
func TestTCPHandshakeFlood(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		secret := wire.NewSecret()
		tr, _ := NewTCP(TCPConfig{Secret: secret, MaxHandshakes: 8, HandshakeTimeout: 20 * time.Second, Insecure: insecure})
		ln, err := tr.Listen(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var flood []net.Conn
		for range 100 {
			nc, err := net.Dial("tcp", ln.Addr())
			if err != nil {
				t.Fatal(err)
			}
			flood = append(flood, nc)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		done := make(chan error, 1)
		go func() {
			c, err := tr.Dial(ctx, ln.Addr())
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		// the flood goes on while the genuine client connects (a new connection every 5 ms;
		// the genuine one is evicted only if MaxHandshakes newer ones come during its handshake)
	flood:
		for {
			select {
			case err := <-done:
				done <- err
				break flood
			case <-time.After(5 * time.Millisecond):
				if nc, err := net.Dial("tcp", ln.Addr()); err == nil {
					flood = append(flood, nc)
				}
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("insecure=%v: a genuine client during a flood: %v", insecure, err)
		}
		cancel()
		// all but the newest MaxHandshakes flooders have been closed by the listener
		open := 0
		for _, nc := range flood {
			nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := io.Copy(io.Discard, nc); err != nil && isTimeout(err) {
				open++
			}
			nc.Close()
		}
		if open > 8 {
			t.Fatalf("insecure=%v: %d flooding connections still in their handshake, want at most 8", insecure, open)
		}
		ln.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestShmReplayedClientProof: the shm handshake's proof covers both nonces too.
func TestShmReplayedClientProof(t *testing.T) {
	secret := wire.NewSecret()
	tr, err := NewShm(ShmConfig{Secret: secret, Cluster: "replay", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() (net.Conn, []byte) {
		nc, err := net.Dial("unix", ln.Addr())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		n := make([]byte, 32)
		if _, err := io.ReadFull(nc, n); err != nil {
			t.Fatal(err)
		}
		return nc, n
	}
	nc, snonce := dial()
	cnonce := wire.NewNonce()
	auth := append(wire.Proof(secret, shmLabelC, cnonce, snonce, nil), cnonce...)
	nc.Write(auth)
	var st [1]byte
	if _, err := io.ReadFull(nc, st[:]); err != nil || st[0] != 0 {
		t.Fatalf("the genuine client was refused: %v %d", err, st[0])
	}
	nc.Close()
	nc2, _ := dial()
	defer nc2.Close()
	nc2.Write(auth)
	if _, err := io.ReadFull(nc2, st[:]); err == nil && st[0] == 0 {
		t.Fatal("the shm listener accepted a replayed client proof")
	}
}

// genuineAuth opens a clear connection to the listener at addr and sends a genuine client's
// authentication of one stream; it returns the connection and the bytes sent, as a listener on
// the network would record them, and the server's nonce they answer.
func genuineAuth(t *testing.T, secret, addr string) (net.Conn, []byte, []byte) {
	t.Helper()
	nc, snonce := rawClient(t, addr)
	cnonce := wire.NewNonce()
	auth := make([]byte, tcpAuthLen)
	copy(auth, wire.Proof(secret, tcpClientLabel, cnonce, snonce, nil))
	copy(auth[32:], cnonce)
	auth[81] = 1
	nc.Write(auth)
	return nc, auth, snonce
}
