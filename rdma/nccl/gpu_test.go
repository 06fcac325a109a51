package nccl

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/rdma"
)

// realGPUs opens the node's real NCCL and CUDA runtime, or skips with the reason.
func realGPUs(t *testing.T) (*Lib, int) {
	t.Helper()
	t.Setenv("SHOAL_NCCL_LIB", "")
	t.Setenv("SHOAL_CUDART_LIB", "")
	l, err := Open()
	if errors.Is(err, rdma.ErrNotSupported) {
		t.Skipf("no NCCL/CUDA on this node: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.DeviceCount()
	if err != nil || n == 0 {
		t.Skipf("NCCL %s is installed but no GPU is usable: %v", l.Version(), err)
	}
	return l, n
}

func floats(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func unfloats(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestGPUCollectives runs every collective with one rank per GPU of this node (rank r on GPU
// r; one rank when there is one GPU) and checks the results on the host.
func TestGPUCollectives(t *testing.T) {
	l, ngpu := realGPUs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rv := newMem()
	const n = 1 << 20
	var wg sync.WaitGroup
	errs := make([]error, ngpu)
	for r := 0; r < ngpu; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = gpuRank(ctx, l, rv, r, ngpu, n)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

func gpuRank(ctx context.Context, l *Lib, rv Rendezvous, r, size, n int) error {
	c, err := l.NewComm(ctx, rv, "gpu-test", r, size, r)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := l.NewStream(r)
	if err != nil {
		return err
	}
	defer s.Close()
	send, err := l.Malloc(r, 4*n*size)
	if err != nil {
		return err
	}
	defer l.Free(r, send)
	recv, err := l.Malloc(r, 4*n*size)
	if err != nil {
		return err
	}
	defer l.Free(r, recv)
	mine := make([]float32, n*size)
	for i := range mine {
		mine[i] = float32(r + 1)
	}
	if err := l.CopyToDevice(r, send, floats(mine)); err != nil {
		return err
	}
	check := func(what string, count int, want func(i int) float32) error {
		out := make([]byte, 4*count)
		if err := l.CopyToHost(r, out, recv); err != nil {
			return err
		}
		for i, v := range unfloats(out) {
			if v != want(i) {
				return errors.New(what + ": wrong value")
			}
		}
		return nil
	}
	total := float32(size * (size + 1) / 2)
	if err := c.AllReduce(ctx, send, recv, n, Float32, Sum, s); err != nil {
		return err
	}
	if err := check("allreduce", n, func(int) float32 { return total }); err != nil {
		return err
	}
	if err := c.AllGather(ctx, send, recv, n, Float32, s); err != nil {
		return err
	}
	if err := check("allgather", n*size, func(i int) float32 { return float32(i/n + 1) }); err != nil {
		return err
	}
	if err := c.ReduceScatter(ctx, send, recv, n, Float32, Sum, s); err != nil {
		return err
	}
	if err := check("reducescatter", n, func(int) float32 { return total }); err != nil {
		return err
	}
	if err := c.Broadcast(ctx, send, recv, n, Float32, 0, s); err != nil {
		return err
	}
	return check("broadcast", n, func(int) float32 { return 1 })
}

// TestGPUMissingRank: a communicator of two whose second rank never comes is aborted when
// the context ends; NewComm returns instead of hanging.
func TestGPUMissingRank(t *testing.T) {
	l, _ := realGPUs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.NewComm(ctx, newMem(), "missing-rank", 0, 2, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("init with a rank missing: %v, want context.DeadlineExceeded", err)
	}
}
