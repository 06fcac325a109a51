package coll

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// memKV is an in-process rendezvous store for tests that run every rank in one process.
type memKV struct {
	mu   sync.Mutex
	vals map[string][]byte
	ch   chan struct{}
}

func newMemKV() *memKV { return &memKV{vals: map[string][]byte{}, ch: make(chan struct{})} }

func (m *memKV) KVPut(ctx context.Context, k string, v []byte) (string, error) {
	m.mu.Lock()
	m.vals[k] = v
	close(m.ch)
	m.ch = make(chan struct{})
	m.mu.Unlock()
	return "127.0.0.1", nil
}

func (m *memKV) KVGet(ctx context.Context, k string, wait time.Duration) ([]byte, bool, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		m.mu.Lock()
		v, ok := m.vals[k]
		ch := m.ch
		m.mu.Unlock()
		if ok {
			return v, true, nil
		}
		select {
		case <-ch:
		case <-t.C:
			return nil, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

func (m *memKV) KVDelete(ctx context.Context, k string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.vals[k]
	delete(m.vals, k)
	return ok, nil
}

// world forms a group of n ranks in this process and runs f on each rank at once.
func world(t *testing.T, n int, opts Options, f func(g *Group) error) {
	t.Helper()
	worldOn(t, make([]string, n), opts, func(_ int, g *Group) error { return f(g) })
}

// worldOn is world with rank r on node nodes[r] (Options.Node; "" for every rank is one node).
func worldOn(t *testing.T, nodes []string, opts Options, f func(r int, g *Group) error) {
	t.Helper()
	kv := newMemKV()
	if opts.Secret == "" {
		opts.Secret = wire.NewSecret()
	}
	if opts.Cluster == "" {
		opts.Cluster = fmt.Sprintf("t%d", rand.Uint32())
	}
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	name := fmt.Sprintf("g%d", rand.Uint32())
	n := len(nodes)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts
			if nodes[r] != "" {
				o.Node = nodes[r]
			}
			g, err := NewGroup(context.Background(), kv, name, r, n, o)
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			errs[r] = f(r, g)
		}()
	}
	wg.Wait()
	failed := false
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}
}

// vals gives rank r's test elements: small non-zero integers, so that every reduction is
// exact in every dtype and the reference needs no tolerance (no zero: a float product may
// be -0, which is equal to the reference's 0 but not the same bytes).
func vals(r, count int, seed uint64) []int64 {
	rng := rand.New(rand.NewPCG(seed, uint64(r)))
	out := make([]int64, count)
	for i := range out {
		out[i] = []int64{-2, -1, 1, 2}[rng.IntN(4)]
	}
	return out
}

func encode(v []int64, d DType) []byte {
	b := make([]byte, len(v)*d.Size())
	for i, x := range v {
		switch d {
		case Float32:
			binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(float32(x)))
		case Float64:
			binary.LittleEndian.PutUint64(b[i*8:], math.Float64bits(float64(x)))
		case Int32:
			binary.LittleEndian.PutUint32(b[i*4:], uint32(int32(x)))
		case Int64:
			binary.LittleEndian.PutUint64(b[i*8:], uint64(x))
		case Float16:
			binary.LittleEndian.PutUint16(b[i*2:], F32ToF16(float32(x)))
		case BFloat16:
			binary.LittleEndian.PutUint16(b[i*2:], F32ToBF16(float32(x)))
		}
	}
	return b
}

// reference computes op over ranks' values in int64 and encodes it in d; avg divides the
// exact sum the way a reader of the dtype would (in the dtype's own arithmetic).
func reference(all [][]int64, d DType, op Op) []byte {
	n, count := len(all), len(all[0])
	acc := make([]int64, count)
	copy(acc, all[0])
	for r := 1; r < n; r++ {
		for i, x := range all[r] {
			switch op {
			case Sum, Avg:
				acc[i] += x
			case Prod:
				acc[i] *= x
			case Min:
				acc[i] = min(acc[i], x)
			case Max:
				acc[i] = max(acc[i], x)
			}
		}
	}
	b := encode(acc, d)
	if op == Avg {
		scaleRef(b, d, n)
	}
	return b
}

func scaleRef(b []byte, d DType, n int) {
	es := d.Size()
	for i := 0; i < len(b); i += es {
		switch d {
		case Float32:
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits(v/float32(n)))
		case Float64:
			v := math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))
			binary.LittleEndian.PutUint64(b[i:], math.Float64bits(v/float64(n)))
		case Int32:
			binary.LittleEndian.PutUint32(b[i:], uint32(int32(binary.LittleEndian.Uint32(b[i:]))/int32(n)))
		case Int64:
			binary.LittleEndian.PutUint64(b[i:], uint64(int64(binary.LittleEndian.Uint64(b[i:]))/int64(n)))
		case Float16:
			v := F16ToF32(binary.LittleEndian.Uint16(b[i:]))
			binary.LittleEndian.PutUint16(b[i:], F32ToF16(v/float32(n)))
		case BFloat16:
			v := BF16ToF32(binary.LittleEndian.Uint16(b[i:]))
			binary.LittleEndian.PutUint16(b[i:], F32ToBF16(v/float32(n)))
		}
	}
}

var allDTypes = []DType{Float32, Float64, Int32, Int64, Float16, BFloat16}
var allOps = []Op{Sum, Prod, Min, Max, Avg}

// checkAll runs every collective, dtype and op on g against references; counts include ones
// smaller than the group, odd ones, and ones past the small-message limit (ring paths).
func checkAll(ctx context.Context, g *Group, counts []int) error {
	n, me := g.Size(), g.Rank()
	seed := uint64(42)
	for _, count := range counts {
		for _, d := range allDTypes {
			all := make([][]int64, n)
			for r := range n {
				all[r] = vals(r, count, seed)
			}
			for _, op := range allOps {
				buf := encode(all[me], d)
				if err := g.AllReduce(ctx, buf, d, op); err != nil {
					return err
				}
				if want := reference(all, d, op); !bytes.Equal(buf, want) {
					return fmt.Errorf("allreduce %s %s of %d elements on %d ranks: wrong result", d, op, count, n)
				}
				// reduce-scatter: each rank's input is n blocks of count elements
				in := make([][]int64, n)
				for r := range n {
					in[r] = vals(r+100, count*n, seed)
				}
				out := make([]byte, count*d.Size())
				if err := g.ReduceScatter(ctx, encode(in[me], d), out, d, op); err != nil {
					return err
				}
				blocks := make([][]int64, n)
				for r := range n {
					blocks[r] = in[r][me*count : (me+1)*count]
				}
				if want := reference(blocks, d, op); !bytes.Equal(out, want) {
					return fmt.Errorf("reducescatter %s %s of %d elements per rank on %d ranks: wrong result", d, op, count, n)
				}
			}
			out := make([]byte, count*d.Size()*n)
			if err := g.AllGather(ctx, encode(all[me], d), out); err != nil {
				return err
			}
			for r := range n {
				if !bytes.Equal(out[r*count*d.Size():(r+1)*count*d.Size()], encode(all[r], d)) {
					return fmt.Errorf("allgather %s of %d elements on %d ranks: block %d is wrong", d, count, n, r)
				}
			}
			root := (count + 1) % n
			buf := make([]byte, count*d.Size())
			if me == root {
				copy(buf, encode(all[root], d))
			}
			if err := g.Broadcast(ctx, buf, root); err != nil {
				return err
			}
			if !bytes.Equal(buf, encode(all[root], d)) {
				return fmt.Errorf("broadcast %s of %d elements from %d on %d ranks: wrong result", d, count, root, n)
			}
		}
	}
	if err := g.Barrier(ctx); err != nil {
		return err
	}
	// send/recv around the ring
	if n > 1 {
		msg := encode(vals(me, 1001, 7), Int64)
		got := make([]byte, len(msg))
		errc := make(chan error, 1)
		go func() { errc <- g.Send(ctx, msg, (me+1)%n) }()
		if err := g.Recv(ctx, got, (me+n-1)%n); err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		if !bytes.Equal(got, encode(vals((me+n-1)%n, 1001, 7), Int64)) {
			return fmt.Errorf("recv from %d: wrong bytes", (me+n-1)%n)
		}
	}
	return nil
}

func TestCollectivesInProcess(t *testing.T) {
	counts := []int{1, 3, 1000, 40001}
	for _, backend := range []string{"tcp", "shm"} {
		for _, n := range []int{1, 2, 3, 4, 5, 7, 8} {
			t.Run(fmt.Sprintf("%s/%d ranks", backend, n), func(t *testing.T) {
				world(t, n, Options{Backend: backend}, func(g *Group) error { return checkAll(context.Background(), g, counts) })
			})
		}
	}
}

func TestHierarchical(t *testing.T) {
	// ranks on three "nodes" (by node id): shm inside a node, tcp across, hierarchical allreduce
	nodes := []string{"a", "a", "b", "b", "b", "c"}
	worldOn(t, nodes, Options{}, func(r int, g *Group) error {
		if g.local == nil {
			return errors.New("a group over 3 nodes with several ranks per node is not hierarchical")
		}
		for peer, b := range g.Backends() {
			if want := map[bool]string{true: "shm", false: "tcp"}[nodes[peer] == nodes[r]]; b != want {
				return fmt.Errorf("rank %d reaches rank %d over %s, want %s", r, peer, b, want)
			}
		}
		return checkAll(context.Background(), g, []int{5, 40001})
	})
}

func TestBadArguments(t *testing.T) {
	world(t, 2, Options{Backend: "tcp"}, func(g *Group) error {
		ctx := context.Background()
		if err := g.AllReduce(ctx, make([]byte, 6), Float32, Sum); err == nil {
			return errors.New("allreduce of 6 bytes as float32 succeeded")
		}
		if err := g.AllReduce(ctx, make([]byte, 8), Float32, Op(9)); err == nil {
			return errors.New("allreduce with op 9 succeeded")
		}
		if err := g.AllGather(ctx, make([]byte, 8), make([]byte, 8)); err == nil {
			return errors.New("allgather into a too-small buffer succeeded")
		}
		if err := g.Broadcast(ctx, make([]byte, 8), 5); err == nil {
			return errors.New("broadcast from rank 5 of 2 succeeded")
		}
		return nil
	})
	if _, err := NewGroup(context.Background(), newMemKV(), "x", 3, 2, Options{Secret: "s"}); err == nil {
		t.Fatal("rank 3 of 2 joined")
	}
}

func TestMissingRankTimesOut(t *testing.T) {
	_, err := NewGroup(context.Background(), newMemKV(), "lonely", 0, 3, Options{Secret: "s", Timeout: 300 * time.Millisecond})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join with ranks 1 and 2 missing: %v, want a deadline error naming them", err)
	}
	t.Log(err)
}

func TestHalfConversions(t *testing.T) {
	for _, c := range []struct {
		f float32
		h uint16
	}{{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {1e6, 0x7c00}, {5.960464477539063e-08, 1}, {0.333251953125, 0x3555}} {
		if got := F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%v) = %#x, want %#x", c.f, got, c.h)
		}
		if c.f <= 65504 && F16ToF32(c.h) != c.f {
			t.Errorf("F16ToF32(%#x) = %v, want %v", c.h, F16ToF32(c.h), c.f)
		}
	}
	if F32ToBF16(1) != 0x3f80 || BF16ToF32(0x4000) != 2 || F32ToBF16(1.00390625) != 0x3f80 {
		t.Error("bfloat16 conversions are wrong")
	}
}

// A record left by a dead earlier incarnation of rank 1 (a listener that is gone): rank 0 reads
// it first, fails to connect, and finds the new record once rank 1 publishes it.
func TestStaleRecordIsReplaced(t *testing.T) {
	kv := newMemKV()
	kv.KVPut(context.Background(), groupKey("stale", 1), []byte(`{"rank":1,"node":"","addrs":{"tcp":"127.0.0.1:1"},"token":"deadbeefdeadbeefdeadbeef"}`))
	opts := Options{Secret: wire.NewSecret(), Cluster: "stale", Backend: "tcp", Timeout: 20 * time.Second}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r == 1 {
				time.Sleep(300 * time.Millisecond)
			}
			g, err := NewGroup(context.Background(), kv, "stale", r, 2, opts)
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			buf := encode([]int64{int64(r + 1)}, Int64)
			if err := g.AllReduce(context.Background(), buf, Int64, Sum); err != nil {
				errs[r] = err
			} else if !bytes.Equal(buf, encode([]int64{3}, Int64)) {
				errs[r] = errors.New("wrong sum")
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// A flat ring over two nodes (shm links inside, tcp links across) with blocks larger than a
// shm link's piece: both ends of every link must cut messages the same way.
func TestMixedRingLargeBlocks(t *testing.T) {
	nodes := []string{"a", "a", "a", "b", "b", "b"}
	worldOn(t, nodes, Options{Timeout: 60 * time.Second}, func(_ int, g *Group) error {
		return checkAll(context.Background(), g, []int{300001})
	})
}

// TestIdleAfterWait: an operation that had to wait (so the transport armed the group's
// deadline on its sockets), then an idle spell longer than the timeout, then another
// operation: it must not fail on the first operation's old deadline.
func TestIdleAfterWait(t *testing.T) {
	for _, backend := range []string{"tcp", "shm"} {
		t.Run(backend, func(t *testing.T) {
			world(t, 2, Options{Backend: backend, Timeout: time.Second}, func(g *Group) error {
				ctx := context.Background()
				buf := make([]byte, 4)
				if g.Rank() == 1 {
					time.Sleep(100 * time.Millisecond) // rank 0 waits well past its spin
				}
				if err := g.AllReduce(ctx, buf, Float32, Sum); err != nil {
					return err
				}
				time.Sleep(1500 * time.Millisecond)
				return g.AllReduce(ctx, buf, Float32, Sum)
			})
		})
	}
}
