package coll

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkAllReduceSmall: two ranks in this process, 4-byte allreduce over shm.
func BenchmarkAllReduceSmall(b *testing.B) {
	kv := newMemKV()
	gs := make([]*Group, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := NewGroup(context.Background(), kv, "bench", r, 2, Options{Secret: "s", Cluster: "bench", Backend: "shm", Timeout: time.Minute})
			if err != nil {
				b.Error(err)
			}
			gs[r] = g
		}()
	}
	wg.Wait()
	defer gs[0].Close()
	defer gs[1].Close()
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 4)
		for i := 0; i < b.N; i++ {
			gs[1].AllReduce(context.Background(), buf, Float32, Sum)
		}
		close(done)
	}()
	buf := make([]byte, 4)
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

// BenchmarkAllReduceTCP1MiB: two ranks in this process, 1 MiB float32 allreduce over tcp.
func BenchmarkAllReduceTCP1MiB(b *testing.B) {
	kv := newMemKV()
	gs := make([]*Group, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := NewGroup(context.Background(), kv, "bench", r, 2, Options{Secret: "s", Cluster: "bench", Backend: "tcp", Timeout: time.Minute})
			if err != nil {
				b.Error(err)
			}
			gs[r] = g
		}()
	}
	wg.Wait()
	defer gs[0].Close()
	defer gs[1].Close()
	b.SetBytes(1 << 20)
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			gs[1].AllReduce(context.Background(), buf, Float32, Sum)
		}
		close(done)
	}()
	buf := make([]byte, 1<<20)
	for i := 0; i < b.N; i++ {
		gs[0].AllReduce(context.Background(), buf, Float32, Sum)
	}
	<-done
}
