package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/rdma/nccl"
)

// benchNCCLCommand is `shoal bench nccl`: NCCL collectives through rdma/nccl on this node's
// GPUs, one rank per GPU, with nccl-tests' columns. It is the device check of rdma/nccl.
func benchNCCLCommand() *cli.Command {
	return &cli.Command{
		Name:  "nccl",
		Usage: "NCCL collectives on this node's GPUs through rdma/nccl (nccl-tests columns)",
		UsageText: "shoal bench nccl [--op allreduce|allgather|reducescatter|broadcast] [--gpus N] [--min-bytes B] [--max-bytes B]\n\n" +
			"   Example: shoal bench nccl --op allreduce --gpus 8 --min-bytes 8 --max-bytes 1GiB\n\n" +
			"   Runs one rank per GPU in this process (NCCL and the CUDA runtime opened at run time) and prints\n" +
			"   bytes, time_us (median of --repeats, the slowest rank), algbw and busbw in GB/s, with\n" +
			"   nccl-tests' definitions. Every result is checked on the host once per size. Exit status 1 with\n" +
			"   the reason where NCCL, the CUDA runtime or a GPU is missing.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "op", Value: "allreduce", EnvVars: []string{"SHOAL_BENCH_OP"}, Usage: "allreduce, allgather, reducescatter or broadcast"},
			&cli.IntFlag{Name: "gpus", EnvVars: []string{"SHOAL_BENCH_GPUS"}, Usage: "ranks, one per GPU (default: every visible GPU)"},
			&cli.StringFlag{Name: "min-bytes", Value: "8", EnvVars: []string{"SHOAL_BENCH_MIN_BYTES"}, Usage: "smallest size (K, M, G, KiB, MiB suffixes)"},
			&cli.StringFlag{Name: "max-bytes", Value: "64MiB", EnvVars: []string{"SHOAL_BENCH_MAX_BYTES"}, Usage: "largest size"},
			&cli.IntFlag{Name: "step-factor", Value: 2, EnvVars: []string{"SHOAL_BENCH_STEP_FACTOR"}, Usage: "each size is this many times the last"},
			&cli.IntFlag{Name: "repeats", Value: 5, EnvVars: []string{"SHOAL_BENCH_REPEATS"}, Usage: "timed repeats per size; the median is shown"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, EnvVars: []string{"SHOAL_BENCH_TIMEOUT"}, Usage: "bound on init and on every operation (a rank that hangs is aborted)"},
		},
		Action: benchNCCL,
	}
}

// ncclMem is a Rendezvous for ranks in this process.
type ncclMem struct {
	mu sync.Mutex
	m  map[string][]byte
	ch chan struct{}
}

func (r *ncclMem) Put(_ context.Context, k string, v []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[k] = v
	close(r.ch)
	r.ch = make(chan struct{})
	return nil
}

func (r *ncclMem) Get(ctx context.Context, k string) ([]byte, error) {
	for {
		r.mu.Lock()
		v, ch := r.m[k], r.ch
		r.mu.Unlock()
		if v != nil {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func benchNCCL(c *cli.Context) error {
	op := c.String("op")
	if !slices.Contains([]string{"allreduce", "allgather", "reducescatter", "broadcast"}, op) {
		return cli.Exit("--op: want allreduce, allgather, reducescatter or broadcast, not "+op, 2)
	}
	minB, err := parseBenchBytes(c.String("min-bytes"))
	if err != nil {
		return cli.Exit("--min-bytes: "+err.Error(), 2)
	}
	maxB, err := parseBenchBytes(c.String("max-bytes"))
	if err != nil {
		return cli.Exit("--max-bytes: "+err.Error(), 2)
	}
	if minB < 4 || maxB < minB || c.Int("step-factor") < 2 || c.Int("repeats") < 1 {
		return cli.Exit("want 4 <= --min-bytes <= --max-bytes, --step-factor >= 2, --repeats >= 1", 2)
	}
	lib, err := nccl.Open()
	if err != nil {
		return cli.Exit(fmt.Errorf("bench nccl: %w", err), 1)
	}
	ngpu, err := lib.DeviceCount()
	if err != nil {
		return cli.Exit(fmt.Errorf("bench nccl: %w", err), 1)
	}
	n := c.Int("gpus")
	if n == 0 {
		n = ngpu
	}
	if n < 1 || n > ngpu {
		return cli.Exit(fmt.Sprintf("bench nccl: %d GPU(s) asked, %d visible (check --gpus and CUDA_VISIBLE_DEVICES): %v", n, ngpu, rdma.ErrNotSupported), 1)
	}
	var sizes []int
	for b := minB; b <= maxB; b *= c.Int("step-factor") {
		sizes = append(sizes, b&^3) // whole float32 elements
	}
	fmt.Printf("# shoal bench nccl: %s, %d GPU(s), NCCL %s, float32 sum, %d repeats (median), time = slowest rank\n",
		op, n, lib.Version(), c.Int("repeats"))
	fmt.Printf("%12s %12s %10s %10s\n", "bytes", "time_us", "algbw", "busbw")
	times := make([][][]time.Duration, n) // rank, size, repeat
	errs := make([]error, n)
	rv := &ncclMem{m: map[string][]byte{}, ch: make(chan struct{})}
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			times[r], errs[r] = ncclRank(c, lib, rv, op, r, n, sizes)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return cli.Exit(fmt.Errorf("bench nccl: %w", err), 1)
	}
	for i, b := range sizes {
		var per []time.Duration
		for k := 0; k < c.Int("repeats"); k++ {
			var slow time.Duration
			for r := 0; r < n; r++ {
				slow = max(slow, times[r][i][k])
			}
			per = append(per, slow)
		}
		slices.Sort(per)
		t := per[len(per)/2].Seconds() / float64(benchIters(b))
		alg := float64(b) / t / 1e9
		f := 1.0
		switch op {
		case "allreduce":
			f = 2 * float64(n-1) / float64(n)
		case "allgather", "reducescatter":
			f = float64(n-1) / float64(n)
		}
		fmt.Printf("%12d %12.2f %10.3f %10.3f\n", b, t*1e6, alg, alg*f)
	}
	return nil
}

// ncclRank runs one rank on GPU r: the timed repeats of every size, then a check of the last
// result on the host. bytes is the whole buffer (allgather: the output; reducescatter: the
// input), as nccl-tests counts it.
func ncclRank(c *cli.Context, lib *nccl.Lib, rv nccl.Rendezvous, op string, r, n int, sizes []int) ([][]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("timeout"))
	defer cancel()
	comm, err := lib.NewComm(ctx, rv, "bench", r, n, r)
	if err != nil {
		return nil, err
	}
	defer comm.Close()
	s, err := lib.NewStream(r)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	maxB := sizes[len(sizes)-1]
	send, err := lib.Malloc(r, maxB)
	if err != nil {
		return nil, err
	}
	defer lib.Free(r, send)
	recv, err := lib.Malloc(r, maxB)
	if err != nil {
		return nil, err
	}
	defer lib.Free(r, recv)
	ones := make([]byte, maxB)
	for i := 0; i+4 <= maxB; i += 4 {
		copy(ones[i:], []byte{0, 0, 0x80, 0x3f}) // float32 1.0
	}
	if err := lib.CopyToDevice(r, send, ones); err != nil {
		return nil, err
	}
	out := make([][]time.Duration, len(sizes))
	for i, b := range sizes {
		elems := b / 4
		run := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), c.Duration("timeout"))
			defer cancel()
			switch op {
			case "allreduce":
				return comm.AllReduce(ctx, send, recv, elems, nccl.Float32, nccl.Sum, s)
			case "allgather":
				return comm.AllGather(ctx, send, recv, elems/n, nccl.Float32, s)
			case "reducescatter":
				return comm.ReduceScatter(ctx, send, recv, elems/n, nccl.Float32, nccl.Sum, s)
			default:
				return comm.Broadcast(ctx, send, recv, elems, nccl.Float32, 0, s)
			}
		}
		if err := run(); err != nil { // warm-up, and the result to check
			return nil, err
		}
		if err := ncclCheck(lib, op, r, n, recv, elems); err != nil {
			return nil, fmt.Errorf("%s of %d bytes on rank %d: %w", op, b, r, err)
		}
		for k := 0; k < c.Int("repeats"); k++ {
			t0 := time.Now()
			for j := 0; j < benchIters(b); j++ {
				if err := run(); err != nil {
					return nil, err
				}
			}
			out[i] = append(out[i], time.Since(t0))
		}
	}
	return out, nil
}

// ncclCheck compares the result with what every rank sending 1.0s gives.
func ncclCheck(lib *nccl.Lib, op string, r, n int, recv nccl.DevicePtr, elems int) error {
	count := elems
	want := float32(1)
	switch op {
	case "allreduce":
		want = float32(n)
	case "allgather":
		count = elems / n * n
	case "reducescatter":
		count, want = elems/n, float32(n)
	}
	got := make([]byte, 4*count)
	if err := lib.CopyToHost(r, got, recv); err != nil {
		return err
	}
	for i := 0; i < count; i++ {
		v := uint32(got[4*i]) | uint32(got[4*i+1])<<8 | uint32(got[4*i+2])<<16 | uint32(got[4*i+3])<<24
		if v != math.Float32bits(want) {
			return fmt.Errorf("element %d is wrong (bits %#x, want %v)", i, v, want)
		}
	}
	return nil
}
