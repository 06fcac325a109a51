package rdma

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// pair connects a Dial end and an Accept end of tr.
func pair(t *testing.T, tr Transport) (a, b Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := tr.Listen(ctx)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	var wg sync.WaitGroup
	var aerr error
	wg.Add(1)
	go func() { defer wg.Done(); b, aerr = ln.Accept(ctx) }()
	a, err = tr.Dial(ctx, ln.Addr())
	wg.Wait()
	if err != nil || aerr != nil {
		t.Fatalf("dial: %v, accept: %v", err, aerr)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// conformance checks what every Transport promises (rdma/transport.go).
func conformance(t *testing.T, tr Transport) {
	t.Run("messages both ways", func(t *testing.T) {
		a, b := pair(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sizes := []int{0, 1, 7, 4096, 65537, 1 << 20, 5<<20 + 13, 17 << 20}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		send := func(c Conn, seed uint64, slot int) {
			defer wg.Done()
			for i, n := range sizes {
				if err := c.Send(ctx, randBytes(n, seed+uint64(i))); err != nil {
					errs[slot] = err
					return
				}
			}
		}
		recv := func(c Conn, seed uint64, slot int) {
			defer wg.Done()
			for i, n := range sizes {
				got := make([]byte, n)
				if err := c.Recv(ctx, got); err != nil {
					errs[slot] = err
					return
				}
				if !bytes.Equal(got, randBytes(n, seed+uint64(i))) {
					errs[slot] = errors.New("received bytes differ from the sent ones")
					return
				}
			}
		}
		wg.Add(4)
		go send(a, 100, 0)
		go recv(b, 100, 1)
		go send(b, 200, 2)
		go recv(a, 200, 3)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("size mismatch is an error", func(t *testing.T) {
		a, b := pair(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go a.Send(ctx, make([]byte, 100))
		err := b.Recv(ctx, make([]byte, 64))
		if !errors.Is(err, ErrSize) {
			t.Fatalf("recv of 64 bytes when 100 came: got %v, want ErrSize", err)
		}
	})
	t.Run("closing one end fails the other's recv", func(t *testing.T) {
		a, b := pair(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go func() { time.Sleep(50 * time.Millisecond); a.Close() }()
		if err := b.Recv(ctx, make([]byte, 10)); err == nil || ctx.Err() != nil {
			t.Fatalf("recv after the peer closed: %v (ctx %v), want a prompt error", err, ctx.Err())
		}
	})
	t.Run("deadline ends a recv that gets nothing", func(t *testing.T) {
		_, b := pair(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := b.Recv(ctx, make([]byte, 10))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("recv with nothing sent: %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("deadline ends a send the peer never reads", func(t *testing.T) {
		a, _ := pair(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := a.Send(ctx, make([]byte, 256<<20))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("send of 256 MiB nobody reads: %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("cancel ends a recv", func(t *testing.T) {
		_, b := pair(t, tr)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		err := b.Recv(ctx, make([]byte, 10))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("recv cancelled: %v, want context.Canceled", err)
		}
	})
	t.Run("an op that ends before its deadline leaves the conn usable", func(t *testing.T) {
		a, b := pair(t, tr)
		for i := range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			sent := make(chan error, 1)
			go func() { sent <- a.Send(ctx, []byte{byte(i)}) }()
			got := make([]byte, 1)
			if err := b.Recv(ctx, got); err != nil || got[0] != byte(i) {
				t.Fatalf("message %d: %v %v", i, got, err)
			}
			if err := <-sent; err != nil { // one Send at a time on a Conn
				t.Fatalf("send of message %d: %v", i, err)
			}
			cancel()
		}
	})
}
