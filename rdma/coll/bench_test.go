package coll

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkAllReduceSmall: two ranks in this process, 4-byte allreduce over shm.
func BenchmarkAllReduceSmall(b *testing.B) { benchAllReduce2(b, "shm", 4) }

// BenchmarkAllReduceTCP1MiB: two ranks in this process, 1 MiB float32 allreduce over tcp.
func BenchmarkAllReduceTCP1MiB(b *testing.B) {
	b.SetBytes(1 << 20)
	benchAllReduce2(b, "tcp", 1<<20)
}

// benchAllReduce2 forms a group of two ranks of this process over backend and times float32
// sum allreduces of n bytes, rank 1 in a goroutine of its own.
func benchAllReduce2(b *testing.B, backend string, n int) {
	kv := newMemKV()
	gs := make([]*Group, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := NewGroup(context.Background(), kv, "bench", r, 2, Options{Secret: "s", Cluster: "bench", Backend: backend, Timeout: time.Minute})
			if err != nil {
				b.Error(err)
			}
			gs[r] = g
		}()
	}
	wg.Wait()
	if gs[0] == nil || gs[1] == nil {
		b.FailNow()
	}
	defer gs[0].Close()
	defer gs[1].Close()
	done := make(chan struct{})
	go func() {
		buf := make([]byte, n)
		for i := 0; i < b.N; i++ {
			gs[1].AllReduce(context.Background(), buf, Float32, Sum)
		}
		close(done)
	}()
	buf := make([]byte, n)
	for i := 0; i < b.N; i++ {
		gs[0].AllReduce(context.Background(), buf, Float32, Sum)
	}
	<-done
}

func BenchmarkReduce(b *testing.B) {
	for _, d := range []DType{Float32, Float64, Int32, Float16, BFloat16} {
		b.Run(d.String(), func(b *testing.B) {
			dst, src := make([]byte, 1<<20), make([]byte, 1<<20)
			b.SetBytes(1 << 20)
			for b.Loop() {
				Reduce(dst, src, d, Sum)
			}
		})
	}
}
