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
