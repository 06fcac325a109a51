package rdma

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

func TestTCP(t *testing.T) {
	for _, streams := range []int{1, 4} {
		tr, err := NewTCP(TCPConfig{Secret: wire.NewSecret(), Streams: streams, LoopbackStreams: streams, StripeMin: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(map[int]string{1: "one stream", 4: "four streams"}[streams], func(t *testing.T) { conformance(t, tr) })
	}
}

func TestTCPWrongSecret(t *testing.T) {
	server, _ := NewTCP(TCPConfig{Secret: wire.NewSecret()})
	client, _ := NewTCP(TCPConfig{Secret: wire.NewSecret()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := server.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = client.Dial(ctx, ln.Addr())
	if !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("dial with another cluster's secret: %v, want wire.ErrAuth", err)
	}
	actx, acancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer acancel()
	if c, err := ln.Accept(actx); err == nil {
		c.Close()
		t.Fatal("the listener accepted a connection from a peer with the wrong secret")
	}
}

func TestTCPNoSecret(t *testing.T) {
	if _, err := NewTCP(TCPConfig{}); err == nil {
		t.Fatal("NewTCP without a secret succeeded")
	}
}

func BenchmarkTCP(b *testing.B) {
	for _, streams := range []int{1, 2, 4} {
		tr, _ := NewTCP(TCPConfig{Secret: "s", Streams: streams, LoopbackStreams: streams, StripeMin: 1 << 20})
		b.Run(map[int]string{1: "1stream", 2: "2streams", 4: "4streams"}[streams], func(b *testing.B) { benchPingPong(b, tr, 16<<20) })
	}
}

func benchPingPong(b *testing.B, tr Transport, n int) {
	ctx := context.Background()
	ln, _ := tr.Listen(ctx)
	defer ln.Close()
	done := make(chan Conn)
	go func() { c, _ := ln.Accept(ctx); done <- c }()
	a, err := tr.Dial(ctx, ln.Addr())
	if err != nil {
		b.Fatal(err)
	}
	c := <-done
	defer a.Close()
	defer c.Close()
	buf, buf2 := make([]byte, n), make([]byte, n)
	go func() {
		for {
			if c.Recv(ctx, buf2) != nil || c.Send(ctx, buf2) != nil {
				return
			}
		}
	}()
	b.SetBytes(int64(2 * n))
	b.ResetTimer()
	for b.Loop() {
		if err := a.Send(ctx, buf); err != nil {
			b.Fatal(err)
		}
		if err := a.Recv(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkShm(b *testing.B) {
	tr, err := NewShm(ShmConfig{Secret: "s", Cluster: "bench"})
	if err != nil {
		b.Skip(err)
	}
	benchPingPong(b, tr, 16<<20)
}

func BenchmarkShmSmall(b *testing.B) {
	tr, err := NewShm(ShmConfig{Secret: "s", Cluster: "bench"})
	if err != nil {
		b.Skip(err)
	}
	benchPingPong(b, tr, 8)
}

func BenchmarkTCPSmall(b *testing.B) {
	tr, _ := NewTCP(TCPConfig{Secret: "s"})
	benchPingPong(b, tr, 8)
}

func BenchmarkTCPEncryption(b *testing.B) {
	for _, insecure := range []bool{false, true} {
		tr, _ := NewTCP(TCPConfig{Secret: "s", Insecure: insecure})
		b.Run(map[bool]string{false: "tls", true: "clear"}[insecure], func(b *testing.B) { benchPingPong(b, tr, 4<<20) })
	}
}
