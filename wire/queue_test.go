package wire

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// stalled returns a Conn whose peer never reads (net.Pipe has no buffer: every write waits for
// a reader), and the peer's end.
func stalled(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	c := NewConn(a)
	t.Cleanup(func() { c.Close(); b.Close() })
	return c, b
}

// overflowSpy records the overflow callback's calls.
type overflowSpy struct {
	mu   sync.Mutex
	errs []error
}

func (s *overflowSpy) call(err error) { s.mu.Lock(); s.errs = append(s.errs, err); s.mu.Unlock() }
func (s *overflowSpy) got() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func TestSendQueueBounds(t *testing.T) {
	frame, _ := Encode(TOK, 1, nil)
	cases := []struct {
		name string
		lim  Limits
		size int // bytes of each frame sent
		ok   int // frames accepted before the bound (the one in flight included)
	}{
		{"frames", Limits{Bytes: 1 << 30, Frames: 10}, len(frame), 10},
		{"bytes", Limits{Bytes: 10 << 10, Frames: 1000}, 1 << 10, 10},
		{"bytes, frames not multiple", Limits{Bytes: 10<<10 + 100, Frames: 1000}, 1 << 10, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := stalled(t)
			var spy overflowSpy
			c.SetLimits(tc.lim, spy.call)
			b := make([]byte, tc.size)
			copy(b, frame)
			for i := 0; i < tc.ok; i++ {
				if err := c.SendRaw(b); err != nil {
					t.Fatalf("frame %d of %d within the bound: %v", i+1, tc.ok, err)
				}
			}
			if len(spy.got()) != 0 {
				t.Fatalf("overflow reported within the bound: %v", spy.got())
			}
			err := c.SendRaw(b)
			if !errors.Is(err, ErrSendQueueFull) {
				t.Fatalf("frame past the bound: got %v, want ErrSendQueueFull", err)
			}
			if got := spy.got(); len(got) != 1 || !errors.Is(got[0], ErrSendQueueFull) {
				t.Fatalf("overflow callback calls: %v, want one ErrSendQueueFull", got)
			}
			// every later send fails the same way, and the callback is not called again
			if err := c.Send(TOK, 2, nil); !errors.Is(err, ErrSendQueueFull) {
				t.Fatalf("send after overflow: %v", err)
			}
			if len(spy.got()) != 1 {
				t.Fatalf("callback called %d times", len(spy.got()))
			}
			// the peer is disconnected: draining it ends (in EOF), it does not get the queue;
			// and the queue's memory goes (the batch that was in flight once its write fails)
			io.Copy(io.Discard, peer)
			deadline := time.Now().Add(10 * time.Second)
			for {
				n, b := c.Queued()
				if n == 0 && b == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d frames (%d bytes) still held after the overflow", n, b)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// The default bound lets a well-behaved peer have one maximal frame (a large inline reply) in
// flight and more besides; only what goes past the bytes bound disconnects it. Frames this big
// are allocated but never touched, so they cost address space, not memory.
func TestDefaultLimitsAdmitAMaximalFrame(t *testing.T) {
	if DefaultLimits.Bytes < MaxFrame+64<<20 {
		t.Fatalf("DefaultLimits.Bytes = %d leaves less than 64 MiB beside a %d-byte frame", DefaultLimits.Bytes, MaxFrame)
	}
	c, _ := stalled(t)
	var spy overflowSpy
	c.SetLimits(Limits{}, spy.call)
	big := make([]byte, MaxFrame+4)
	if err := c.SendRaw(big); err != nil {
		t.Fatalf("one maximal frame: %v", err)
	}
	small, _ := Encode(TReady, 0, &Ready{Objs: []Obj{{Data: make([]byte, 1000)}}})
	for i := 0; i < 1000; i++ {
		if err := c.SendRaw(small); err != nil {
			t.Fatalf("small frame %d beside a maximal one: %v", i, err)
		}
	}
	rest := DefaultLimits.Bytes - int64(len(big)) - 1000*int64(len(small))
	if err := c.SendRaw(make([]byte, rest)); err != nil {
		t.Fatalf("a frame that fills the bound exactly: %v", err)
	}
	if err := c.SendRaw(small); !errors.Is(err, ErrSendQueueFull) {
		t.Fatalf("one frame past the bound: %v", err)
	}
}
