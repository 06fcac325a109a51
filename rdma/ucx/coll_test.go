package ucx_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/rdma/coll"
	"github.com/shoal-hpc/shoal/rdma/ucx"
)

// kv is an in-process rendezvous store with the KV client's methods.
type kv struct {
	mu   sync.Mutex
	vals map[string][]byte
}

func (m *kv) KVPut(_ context.Context, k string, v []byte) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[k] = v
	return "127.0.0.1", nil
}

func (m *kv) KVGet(ctx context.Context, k string, wait time.Duration) ([]byte, bool, error) {
	end := time.Now().Add(wait)
	for time.Now().Before(end) {
		m.mu.Lock()
		v, ok := m.vals[k]
		m.mu.Unlock()
		if ok {
			return v, true, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil, false, nil
}

func (m *kv) KVDelete(_ context.Context, k string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.vals[k]
	delete(m.vals, k)
	return ok, nil
}

// world runs f on n ranks of one collective group formed with backend.
func world(t *testing.T, n int, backend string, f func(g *coll.Group) error) {
	t.Helper()
	store := &kv{vals: map[string][]byte{}}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := coll.NewGroup(context.Background(), store, "ucx-test", r, n,
				coll.Options{Secret: "s3cret", Cluster: "c1", Backend: backend, Timeout: 30 * time.Second,
					Insecure: backend == "ucx"}) // ucx runs only on an insecure data plane
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			errs[r] = f(g)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// TestCollectiveOverUCX: the collectives of rdma/coll run over the registered "ucx" backend.
func TestCollectiveOverUCX(t *testing.T) {
	if _, err := ucx.Open(); errors.Is(err, rdma.ErrNotSupported) {
		t.Skipf("UCX is not installed: %v", err)
	}
	t.Setenv("SHOAL_UCX", "on")
	t.Setenv("UCX_TLS", "tcp") // as between nodes; with shm listed UCX can report a live peer lost under load (test/rdma.sh)
	const n, elems = 3, 1 << 18
	world(t, n, "ucx", func(g *coll.Group) error {
		buf := make([]byte, 4*elems)
		for i := 0; i < elems; i++ {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(g.Rank()+1)*float32(i%7)))
		}
		if err := g.AllReduce(context.Background(), buf, coll.Float32, coll.Sum); err != nil {
			return err
		}
		for i := 0; i < elems; i++ {
			want := float32(n*(n+1)/2) * float32(i%7)
			if got := math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:])); got != want {
				return fmt.Errorf("element %d: %v, want %v", i, got, want)
			}
		}
		for r, b := range g.Backends() {
			if b != "ucx" {
				return fmt.Errorf("rank %d reached over %s, want ucx", r, b)
			}
		}
		return nil
	})
}

// TestUCXRefusedWhenEncrypted: naming ucx on an encrypted data plane is an error that says why.
func TestUCXRefusedWhenEncrypted(t *testing.T) {
	_, err := coll.NewGroup(context.Background(), &kv{vals: map[string][]byte{}}, "g", 0, 1,
		coll.Options{Secret: "s", Backend: "ucx"})
	if err == nil || !strings.Contains(err.Error(), "insecure-data-plane") {
		t.Fatalf("ucx on an encrypted data plane: %v, want an error naming --insecure-data-plane", err)
	}
}

// TestAutoSkipsUCXWithoutRDMA: on a node without an ACTIVE RDMA port (this one) the "ucx"
// backend declines with ErrNotSupported, and an automatic group uses the others.
func TestAutoSkipsUCXWithoutRDMA(t *testing.T) {
	if ok, _ := ucx.Preferred(ucx.SysfsPorts("")); ok {
		t.Skip("this node has an ACTIVE RDMA port")
	}
	t.Setenv("SHOAL_UCX", "")
	_, err := rdma.New("ucx", rdma.Config{Secret: "s"})
	if !errors.Is(err, rdma.ErrNotSupported) {
		t.Fatalf("rdma.New(ucx) without RDMA: %v, want ErrNotSupported", err)
	}
	world(t, 2, "auto", func(g *coll.Group) error {
		if err := g.Barrier(context.Background()); err != nil {
			return err
		}
		for r, b := range g.Backends() {
			if b == "ucx" {
				return fmt.Errorf("rank %d reached over ucx on a node without RDMA", r)
			}
		}
		return nil
	})
}
