package coll

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// statsKV is a memKV that takes collective counts, as client.Client does.
type statsKV struct {
	*memKV
	mu  sync.Mutex
	got wire.CollStats
}

func (s *statsKV) ReportCollectives(c wire.CollStats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for op, n := range c.Ops {
		s.got.Ops[op] += n
		s.got.Bytes[op] += c.Bytes[op]
	}
	return nil
}

// TestGroupReportsItsCollectives: what a rank ran reaches its KV by the time it closes, each
// operation once, with its buffer's bytes.
func TestGroupReportsItsCollectives(t *testing.T) {
	kv := &statsKV{memKV: newMemKV(), got: wire.CollStats{Ops: map[string]uint64{}, Bytes: map[string]uint64{}}}
	opts := Options{Secret: wire.NewSecret(), Cluster: "stats", Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := NewGroup(context.Background(), kv, "stats", r, 2, opts)
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			buf := make([]byte, 4096)
			for range 3 {
				if errs[r] = g.AllReduce(context.Background(), buf, Float32, Sum); errs[r] != nil {
					return
				}
			}
			errs[r] = g.Broadcast(context.Background(), buf[:100], 0)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	want := map[string][2]uint64{"allreduce": {6, 6 * 4096}, "broadcast": {2, 200}, "barrier": {2, 0}}
	for op, w := range want {
		if kv.got.Ops[op] != w[0] || kv.got.Bytes[op] != w[1] {
			t.Errorf("%s: %d ops, %d bytes; want %d, %d", op, kv.got.Ops[op], kv.got.Bytes[op], w[0], w[1])
		}
	}
}
