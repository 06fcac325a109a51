package ucx

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/rdma"
)

// benchPair connects two transports (separate workers and threads) of one process.
func benchPair(b *testing.B, cfg tconf) (rdma.Conn, rdma.Conn) {
	needUCX(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, c := newTransport(b, secret, cfg), newTransport(b, secret, cfg)
	l, err := a.Listen(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	acc := make(chan rdma.Conn, 1)
	go func() {
		s, err := l.Accept(ctx)
		if err != nil {
			b.Error(err)
		}
		acc <- s
	}()
	d, err := c.Dial(ctx, l.Addr())
	if err != nil {
		b.Fatal(err)
	}
	s := <-acc
	b.Cleanup(func() { s.Close(); d.Close() })
	return d, s
}

// BenchmarkStreamBW sends b.N messages one way, as ucx_perftest -t stream_bw does; compare
// with its numbers in docs/benchmarks.md.
func BenchmarkStreamBW(b *testing.B) {
	for _, name := range []string{"tcp", "tcp,shm"} {
		for _, size := range []int{64 << 10, 1 << 20, 16 << 20} {
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				tx, rx := benchPair(b, configs[name])
				ctx := context.Background()
				buf, rbuf := make([]byte, size), make([]byte, size)
				done := make(chan error, 1)
				b.SetBytes(int64(size))
				b.ResetTimer()
				go func() {
					for i := 0; i < b.N; i++ {
						if err := rx.Recv(ctx, rbuf); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for i := 0; i < b.N; i++ {
					if err := tx.Send(ctx, buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkStreamLat is a ping-pong of 8 bytes; half of ns/op is the one-way latency that
// ucx_perftest -t stream_lat reports.
func BenchmarkStreamLat(b *testing.B) {
	for _, name := range []string{"tcp", "tcp,shm"} {
		b.Run(name, func(b *testing.B) {
			c, s := benchPair(b, configs[name])
			ctx := context.Background()
			ping, pong := make([]byte, 8), make([]byte, 8)
			done := make(chan error, 1)
			b.ResetTimer()
			go func() {
				for i := 0; i < b.N; i++ {
					if err := s.Recv(ctx, pong); err != nil {
						done <- err
						return
					}
					if err := s.Send(ctx, pong); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			for i := 0; i < b.N; i++ {
				if err := c.Send(ctx, ping); err != nil {
					b.Fatal(err)
				}
				if err := c.Recv(ctx, ping); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkStreamLatProcess is the same ping-pong with the peer in another process, as
// ucx_perftest runs it; half of ns/op is the one-way latency.
func BenchmarkStreamLatProcess(b *testing.B) {
	for _, name := range []string{"tcp", "tcp,shm"} {
		b.Run(name, func(b *testing.B) {
			needUCX(b)
			ctx := context.Background()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SHOAL_UCX_HELPER=pong")
			cmd.Env = append(cmd.Env, configs[name].env()...)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			addr, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			c, err := newTransport(b, secret, configs[name]).Dial(ctx, strings.TrimSpace(addr))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ping := make([]byte, 8)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Send(ctx, ping); err != nil {
					b.Fatal(err)
				}
				if err := c.Recv(ctx, ping); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
