package ucx

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	a, err := New("s1", WithHost("127.0.0.1"), WithConfig(map[string]string{"TLS": "tcp"}))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New("s1", WithHost("127.0.0.1"), WithConfig(map[string]string{"TLS": "tcp"}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := a.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(l.Addr())
	go func() {
		c, err := l.Accept(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		buf := make([]byte, 5)
		if err := c.Recv(ctx, buf); err != nil {
			t.Error(err)
		}
		c.Send(ctx, buf)
	}()
	c, err := b.Dial(ctx, l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if err := c.Recv(ctx, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte("hello")) {
		t.Fatal(string(got))
	}
}
