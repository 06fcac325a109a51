package ucx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/shoal-hpc/shoal/internal/cgotrace" // C frames in crash tracebacks
	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/wire"
)

// The test binary doubles as the peer process: TestMain runs a helper when SHOAL_UCX_HELPER
// names one.
func TestMain(m *testing.M) {
	if h := os.Getenv("SHOAL_UCX_HELPER"); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

const secret = "0123456789abcdef-test-secret"

// tconf is one way to run UCX in the tests: its UCX_TLS.
type tconf struct {
	tls string
}

func (c tconf) opts() []Option {
	return []Option{WithHost("127.0.0.1"), WithConfig(map[string]string{"TLS": c.tls})}
}

func (c tconf) env() []string { return []string{"SHOAL_UCX_TEST_TLS=" + c.tls} }

func helperConf() tconf { return tconf{os.Getenv("SHOAL_UCX_TEST_TLS")} }

// configs are the UCX transport lists the tests run with. Connections are made through UCX's
// TCP connection manager, which needs the tcp transport for wire-up (UCX_TLS=shm alone cannot
// connect). With tcp,shm listed, UCX 1.13 still moved the stream data of these client-server
// endpoints over TCP (strace: one sendmsg per 64 KiB); the run checks that the configuration
// works, not that shared memory carries it.
var configs = map[string]tconf{
	"tcp":     {"tcp"},
	"tcp,shm": {"tcp,shm"},
}

// sizes are the message sizes exchanged: 1 B to 64 MiB, with odd sizes that end mid-fragment.
var sizes = []int{1, 7, 4096, 65537, 1<<20 + 3, 8 << 20, 64 << 20}

func needUCX(t testing.TB) {
	t.Helper()
	if _, err := Open(); err != nil {
		if errors.Is(err, rdma.ErrNotSupported) {
			t.Skipf("UCX is not installed here (scripts/deps.sh installs libucx0): %v", err)
		}
		t.Fatal(err)
	}
}

func newTransport(t testing.TB, secret string, cfg tconf) *Transport {
	t.Helper()
	tr, err := New(secret, cfg.opts()...)
	if err != nil {
		t.Fatalf("new ucx transport: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// pattern fills a message whose bytes depend on seed and position, so a misplaced or
// truncated fragment shows.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// pair connects two transports with separate workers and returns both ends.
func pair(t *testing.T, ctx context.Context, a, b *Transport) (rdma.Conn, rdma.Conn) {
	t.Helper()
	l, err := a.Listen(ctx)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	type res struct {
		c   rdma.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() { c, err := l.Accept(ctx); acc <- res{c, err} }()
	cb, err := b.Dial(ctx, l.Addr())
	if err != nil {
		t.Fatalf("dial %s: %v", l.Addr(), err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close(); cb.Close() })
	return r.c, cb
}

// TestExchange sends every size both ways at once between two workers of one process and
// checks every byte.
func TestExchange(t *testing.T) {
	needUCX(t)
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ca, cb := pair(t, ctx, newTransport(t, secret, cfg), newTransport(t, secret, cfg))
			for _, n := range sizes {
				var wg sync.WaitGroup
				errs := make([]error, 4)
				gotA, gotB := make([]byte, n), make([]byte, n)
				wantA, wantB := pattern(n, 1), pattern(n, 2) // A sends wantB's... see below
				wg.Add(4)
				go func() { defer wg.Done(); errs[0] = ca.Send(ctx, wantB) }()
				go func() { defer wg.Done(); errs[1] = cb.Recv(ctx, gotB) }()
				go func() { defer wg.Done(); errs[2] = cb.Send(ctx, wantA) }()
				go func() { defer wg.Done(); errs[3] = ca.Recv(ctx, gotA) }()
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatalf("%d bytes: %v", n, err)
					}
				}
				if !bytes.Equal(gotA, wantA) || !bytes.Equal(gotB, wantB) {
					t.Fatalf("%d bytes: received data differs from what was sent", n)
				}
			}
		})
	}
}

// startHelper runs this test binary as a peer process and returns it with a reader of its
// stdout.
func startHelper(t *testing.T, name string, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"SHOAL_UCX_HELPER=" + name}, env...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", name, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewReader(out)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read from helper: %v", err)
	}
	return strings.TrimSpace(s)
}

// TestTwoProcesses exchanges every size with an echo server in another process, over tcp
// and over shared memory.
func TestTwoProcesses(t *testing.T) {
	needUCX(t)
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd, out := startHelper(t, "echo", cfg.env()...)
			addr := readLine(t, out)
			c, err := newTransport(t, secret, cfg).Dial(ctx, addr)
			if err != nil {
				t.Fatalf("dial echo helper at %s: %v", addr, err)
			}
			for _, n := range sizes {
				want := pattern(n, 3)
				got := make([]byte, n)
				if err := c.Send(ctx, want); err != nil {
					t.Fatalf("send %d bytes: %v", n, err)
				}
				if err := c.Recv(ctx, got); err != nil {
					t.Fatalf("recv %d bytes: %v", n, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%d bytes: echo differs from what was sent", n)
				}
			}
			c.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("echo helper: %v", err)
			}
		})
	}
}

// TestWrongSecret: a dialer with another secret is refused and never reaches Accept; a right
// one then connects.
func TestWrongSecret(t *testing.T) {
	needUCX(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := newTransport(t, secret, configs["tcp"])
	l, err := srv.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = newTransport(t, "another cluster's secret", configs["tcp"]).Dial(ctx, l.Addr())
	if !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("dial with a wrong secret: got %v, want an error wrapping wire.ErrAuth", err)
	}
	actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if c, err := l.Accept(actx); err == nil {
		t.Fatalf("accept returned a connection from a peer with a wrong secret: %v", c)
	}
	acancel()

	good := newTransport(t, secret, configs["tcp"])
	acc := make(chan rdma.Conn, 1)
	go func() {
		c, err := l.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	c, err := good.Dial(ctx, l.Addr())
	if err != nil {
		t.Fatalf("dial with the right secret after a refused one: %v", err)
	}
	defer c.Close()
	sc := <-acc
	if sc == nil {
		t.FailNow()
	}
	defer sc.Close()
	if err := c.Send(ctx, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	if err := sc.Recv(ctx, got); err != nil || string(got) != "ok" {
		t.Fatalf("recv after auth: %q, %v", got, err)
	}
}

// TestServerWithWrongSecret: a listener of another cluster cannot pass itself off: the dialer
// checks the server's proof.
func TestServerWithWrongSecret(t *testing.T) {
	needUCX(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := newTransport(t, "other", configs["tcp"]).Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go l.Accept(ctx)
	if _, err := newTransport(t, secret, configs["tcp"]).Dial(ctx, l.Addr()); !errors.Is(err, wire.ErrAuth) {
		t.Fatalf("dial a listener with another secret: got %v, want wire.ErrAuth", err)
	}
}

// TestPeerDies: a Recv waiting on a peer process that is killed fails; it does not hang.
func TestPeerDies(t *testing.T) {
	needUCX(t)
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			l, err := newTransport(t, secret, cfg).Listen(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cmd, out := startHelper(t, "dialhang", append(cfg.env(), "SHOAL_UCX_TEST_ADDR="+l.Addr())...)
			c, err := l.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if s := readLine(t, out); s != "connected" {
				t.Fatalf("helper said %q", s)
			}
			done := make(chan error, 1)
			go func() { done <- c.Recv(ctx, make([]byte, 1<<20)) }()
			cmd.Process.Kill()
			cmd.Wait()
			err = <-done
			if err == nil {
				t.Fatal("recv from a killed peer succeeded")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("recv from a killed peer hung until the test's deadline: %v", err)
			}
			t.Logf("recv from a killed peer: %v", err)
			if err := c.Send(ctx, []byte{1}); err == nil {
				t.Fatal("send to a killed peer's connection succeeded after the loss was seen")
			}
		})
	}
}

// TestCloseFailsPeer: closing one end makes the other end's pending Recv fail.
func TestCloseFailsPeer(t *testing.T) {
	needUCX(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, cb := pair(t, ctx, newTransport(t, secret, configs["tcp"]), newTransport(t, secret, configs["tcp"]))
	done := make(chan error, 1)
	go func() { done <- cb.Recv(ctx, make([]byte, 10)) }()
	time.Sleep(50 * time.Millisecond) // let the Recv start; the result is the same if it has not
	ca.Close()
	if err := <-done; err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv after the peer closed: got %v, want a connection error", err)
	}
	if err := ca.Send(ctx, []byte{1}); err == nil {
		t.Fatal("send on a closed connection succeeded")
	}
}

// TestCancelledRecv: a Recv whose context ends returns the context's error and closes the
// connection.
func TestCancelledRecv(t *testing.T) {
	needUCX(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, cb := pair(t, ctx, newTransport(t, secret, configs["tcp"]), newTransport(t, secret, configs["tcp"]))
	rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer rcancel()
	if err := ca.Recv(rctx, make([]byte, 4)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv with nothing sent: got %v, want context.DeadlineExceeded", err)
	}
	if err := cb.Recv(ctx, make([]byte, 4)); err == nil {
		t.Fatal("the peer of a connection closed by a cancelled recv could still receive")
	}
}

// TestLibraryMissing: without libucp, New says ErrNotSupported and names the library. It runs
// in a child process because a process opens UCX once.
func TestLibraryMissing(t *testing.T) {
	for _, lib := range []string{"/nonexistent/libucp.so.0", "libc.so.6"} {
		t.Run(lib, func(t *testing.T) {
			cmd, out := startHelper(t, "new", "SHOAL_UCX_LIB="+lib)
			line := readLine(t, out)
			cmd.Wait()
			if !strings.HasPrefix(line, "notsupported ") || !strings.Contains(line, lib) {
				t.Fatalf("ucx.New with SHOAL_UCX_LIB=%s: %s; want ErrNotSupported naming the library", lib, line)
			}
		})
	}
}

// helper runs one peer role in a child process; its exit code is the result.
func helper(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := helperConf()
	switch name {
	case "new":
		_, err := New(secret)
		switch {
		case errors.Is(err, rdma.ErrNotSupported):
			fmt.Println("notsupported", err)
		case err != nil:
			fmt.Println("error", err)
		default:
			fmt.Println("ok")
		}
		return 0
	case "echo":
		tr, err := New(secret, cfg.opts()...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer tr.Close()
		l, err := tr.Listen(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(l.Addr())
		c, err := l.Accept(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, n := range sizes {
			b := make([]byte, n)
			if err := c.Recv(ctx, b); err != nil {
				fmt.Fprintln(os.Stderr, "echo recv", n, err)
				return 1
			}
			if err := c.Send(ctx, b); err != nil {
				fmt.Fprintln(os.Stderr, "echo send", n, err)
				return 1
			}
		}
		// the dialer closes: the next Recv must fail
		if err := c.Recv(ctx, make([]byte, 1)); err == nil {
			fmt.Fprintln(os.Stderr, "recv after the peer closed succeeded")
			return 1
		}
		return 0
	case "pong":
		// answers every 8-byte message with itself until the connection ends (benchmarks)
		tr, err := New(secret, cfg.opts()...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer tr.Close()
		l, err := tr.Listen(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(l.Addr())
		c, err := l.Accept(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		b := make([]byte, 8)
		bg := context.Background()
		for c.Recv(bg, b) == nil && c.Send(bg, b) == nil {
		}
		return 0
	case "dialhang":
		tr, err := New(secret, cfg.opts()...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := tr.Dial(ctx, os.Getenv("SHOAL_UCX_TEST_ADDR")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("connected")
		<-ctx.Done()
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper", strconv.Quote(name))
	return 2
}

// TestDataBeforeClose: what a peer sent before it closed is still received, as with TCP; the
// Recv after it fails.
func TestDataBeforeClose(t *testing.T) {
	needUCX(t)
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ca, cb := pair(t, ctx, newTransport(t, secret, cfg), newTransport(t, secret, cfg))
			for _, n := range []int{8, 1 << 20} {
				want := pattern(n, 9)
				if err := ca.Send(ctx, want); err != nil {
					t.Fatal(err)
				}
			}
			ca.Close()
			time.Sleep(100 * time.Millisecond) // the close reaches the receiver first
			for _, n := range []int{8, 1 << 20} {
				got := make([]byte, n)
				if err := cb.Recv(ctx, got); err != nil {
					t.Fatalf("recv %d bytes sent before the peer closed: %v", n, err)
				}
				if !bytes.Equal(got, pattern(n, 9)) {
					t.Fatalf("%d bytes sent before close: data differs", n)
				}
			}
			if err := cb.Recv(ctx, make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("recv past the end of a closed peer's data: %v, want a connection error", err)
			}
		})
	}
}

// TestSizeMismatch: a Recv whose size differs from the message sent fails naming both sizes;
// zero-byte messages are messages too.
func TestSizeMismatch(t *testing.T) {
	needUCX(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, cb := pair(t, ctx, newTransport(t, secret, configs["tcp"]), newTransport(t, secret, configs["tcp"]))
	if err := ca.Send(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := cb.Recv(ctx, nil); err != nil {
		t.Fatalf("recv of a zero-byte message: %v", err)
	}
	if err := ca.Send(ctx, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	err := cb.Recv(ctx, make([]byte, 12))
	if err == nil || !strings.Contains(err.Error(), "message of 10 bytes, this side expects 12") {
		t.Fatalf("recv of 12 bytes when 10 were sent: %v", err)
	}
}
