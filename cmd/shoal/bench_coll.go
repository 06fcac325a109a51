package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/client"
	"github.com/shoal-hpc/shoal/rdma/coll"
	"github.com/shoal-hpc/shoal/wire"
)

// collBenchCommands are `shoal bench allreduce|allgather|reducescatter`: nccl-tests-style
// tables (bytes time_us algbw busbw) for shoal's collectives.
func collBenchCommands() []*cli.Command {
	var out []*cli.Command
	for _, op := range []string{"allreduce", "allgather", "reducescatter"} {
		op := op
		out = append(out, &cli.Command{
			Name:  op,
			Usage: op + " bandwidth and latency over shoal's collectives (nccl-tests columns)",
			UsageText: "shoal bench " + op + " [--np N] [--min-bytes B] [--max-bytes B] [--transport auto|shm|tcp]\n\n" +
				"   Example: shoal bench " + op + " --np 4 --min-bytes 4 --max-bytes 64MiB --transport shm\n\n" +
				"   Starts N ranks as processes on this machine (or, with --rank and --size inside a shoal cluster,\n" +
				"   joins the cluster's ranks) and prints one row per size: bytes, time_us (the slowest rank's time\n" +
				"   per operation, median of --repeats), algbw and busbw in GB/s, with nccl-tests' definitions\n" +
				"   (allreduce busbw = algbw*2(n-1)/n; allgather and reducescatter (n-1)/n, bytes = the whole output\n" +
				"   or input). scripts/bench-vs-mpi.sh runs it next to OpenMPI's MPI_Allreduce.",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "np", Value: 2, EnvVars: []string{"SHOAL_BENCH_NP"}, Usage: "ranks to start on this machine"},
				&cli.StringFlag{Name: "min-bytes", Value: "4", EnvVars: []string{"SHOAL_BENCH_MIN_BYTES"}, Usage: "smallest size (K, M, G, KiB, MiB suffixes)"},
				&cli.StringFlag{Name: "max-bytes", Value: "64MiB", EnvVars: []string{"SHOAL_BENCH_MAX_BYTES"}, Usage: "largest size"},
				&cli.IntFlag{Name: "step-factor", Value: 2, EnvVars: []string{"SHOAL_BENCH_STEP_FACTOR"}, Usage: "each size is this many times the last"},
				&cli.StringFlag{Name: "transport", Value: "auto", EnvVars: []string{"SHOAL_BENCH_TRANSPORT"}, Usage: "auto, shm, tcp (or another registered backend)"},
				&cli.StringFlag{Name: "dtype", Value: "float32", EnvVars: []string{"SHOAL_BENCH_DTYPE"}, Usage: "element type"},
				&cli.IntFlag{Name: "repeats", Value: 5, EnvVars: []string{"SHOAL_BENCH_REPEATS"}, Usage: "timed repeats per size; the median is shown"},
				&cli.IntFlag{Name: "warmup", Value: 2, EnvVars: []string{"SHOAL_BENCH_WARMUP"}, Usage: "untimed operations per size first"},
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, EnvVars: []string{"SHOAL_BENCH_TIMEOUT"}, Usage: "bound on every operation"},
				&cli.IntFlag{Name: "rank", Value: -1, EnvVars: []string{"SHOAL_BENCH_RANK"}, Usage: "inside a cluster: this process's rank (with --size)"},
				&cli.IntFlag{Name: "size", EnvVars: []string{"SHOAL_BENCH_SIZE"}, Usage: "inside a cluster: the number of ranks"},
				&cli.StringFlag{Name: "bind", Value: "cpu", EnvVars: []string{"SHOAL_BENCH_BIND"}, Usage: "local ranks: cpu (rank r on CPU r mod CPUs, as mpirun --bind-to core:overload-allowed), none (where the kernel puts them)"},
				&cli.StringFlag{Name: "rendezvous", Hidden: true, Usage: "directory the local ranks meet in (set by the parent)"},
			},
			Action: func(c *cli.Context) error { return benchColl(c, op) },
		})
	}
	return out
}

// parseBenchBytes reads 4, 64K, 64KiB, 1M, 256MiB, 1G (powers of 1024).
func parseBenchBytes(s string) (int, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mul := 1
	switch {
	case strings.HasSuffix(t, "K"):
		mul, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mul, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mul, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes such as 4, 64K or 256MiB", s)
	}
	return n * mul, nil
}

// benchIters is how many operations one timed repeat of size bytes runs; scripts/mpi_allreduce.c
// uses the same rule.
func benchIters(bytes int) int { return max(2, min(200, (64<<20)/max(bytes, 1))) }

func benchColl(c *cli.Context, op string) error {
	minB, err := parseBenchBytes(c.String("min-bytes"))
	if err != nil {
		return cli.Exit("--min-bytes: "+err.Error(), 2)
	}
	maxB, err := parseBenchBytes(c.String("max-bytes"))
	if err != nil {
		return cli.Exit("--max-bytes: "+err.Error(), 2)
	}
	d, err := coll.ParseDType(c.String("dtype"))
	if err != nil {
		return cli.Exit("--dtype: "+err.Error(), 2)
	}
	if minB < 1 || maxB < minB || c.Int("step-factor") < 2 || c.Int("repeats") < 1 {
		return cli.Exit("want 1 <= --min-bytes <= --max-bytes, --step-factor >= 2, --repeats >= 1", 2)
	}
	dir := c.String("rendezvous")
	rank, size := c.Int("rank"), c.Int("size")
	if dir == "" && rank < 0 {
		return benchSpawn(c)
	}
	var kv coll.KV
	opts := coll.Options{Backend: c.String("transport"), Timeout: c.Duration("timeout")}
	if dir != "" {
		size = c.Int("np")
		sec, err := os.ReadFile(filepath.Join(dir, "secret"))
		if err != nil {
			return err
		}
		opts.Secret, opts.Cluster = string(sec), "bench"+filepath.Base(dir)
		kv = &dirKV{dir: dir}
	} else {
		if size < 1 || rank >= size {
			return cli.Exit("--rank R needs --size N with 0 <= R < N", 2)
		}
		addr, secret := os.Getenv("SHOAL_ADDRESS"), os.Getenv("SHOAL_SECRET")
		cl, err := client.DialKV(nil, addr, secret)
		if err != nil {
			return fmt.Errorf("bench inside a cluster (--rank): %w", err)
		}
		defer cl.Close()
		kv = cl
		opts.Secret, opts.Cluster, opts.Node = secret, os.Getenv("SHOAL_CLUSTER_ID"), os.Getenv("SHOAL_NODE_ID")
		if opts.Node == "" {
			opts.Node = cl.NodeID()
		}
	}
	ctx := context.Background()
	g, err := coll.NewGroup(ctx, kv, "bench-"+op, rank, size, opts)
	if err != nil {
		return err
	}
	defer g.Close()
	n, es := g.Size(), d.Size()
	if rank == 0 {
		fmt.Printf("# shoal bench %s: %d ranks, transport %s, dtype %s, %d repeats (median), time = slowest rank\n", op, n, opts.Backend, d, c.Int("repeats"))
		fmt.Printf("%12s %12s %10s %10s\n", "bytes", "time_us", "algbw", "busbw")
	}
	for bytes := minB; bytes <= maxB; bytes *= c.Int("step-factor") {
		unit := es
		if op != "allreduce" {
			unit = es * n
		}
		s := max(unit, bytes/unit*unit)
		var run func() error
		switch op {
		case "allreduce":
			buf := make([]byte, s)
			run = func() error { return g.AllReduce(ctx, buf, d, coll.Sum) }
		case "allgather":
			in, out := make([]byte, s/n), make([]byte, s)
			run = func() error { return g.AllGather(ctx, in, out) }
		case "reducescatter":
			in, out := make([]byte, s), make([]byte, s/n)
			run = func() error { return g.ReduceScatter(ctx, in, out, d, coll.Sum) }
		}
		iters := benchIters(s)
		for range c.Int("warmup") {
			if err := run(); err != nil {
				return err
			}
		}
		var times []float64
		for range c.Int("repeats") {
			if err := g.Barrier(ctx); err != nil {
				return err
			}
			t0 := time.Now()
			for range iters {
				if err := run(); err != nil {
					return err
				}
			}
			dt := time.Since(t0).Seconds() / float64(iters)
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(dt))
			if err := g.AllReduce(ctx, b[:], coll.Float64, coll.Max); err != nil {
				return err
			}
			times = append(times, math.Float64frombits(binary.LittleEndian.Uint64(b[:])))
		}
		sort.Float64s(times)
		t := times[len(times)/2]
		algbw := float64(s) / t / 1e9
		f := float64(n-1) / float64(n)
		if op == "allreduce" {
			f *= 2
		}
		if rank == 0 {
			fmt.Printf("%12d %12.2f %10.3f %10.3f\n", s, t*1e6, algbw, algbw*f)
		}
	}
	return nil
}

// benchSpawn starts --np copies of this command as local ranks meeting in a fresh directory.
func benchSpawn(c *cli.Context) error {
	np := c.Int("np")
	if np < 1 || np > 256 {
		return cli.Exit("--np: want 1 to 256 ranks", 2)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "shoal-bench-coll-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(wire.NewSecret()), 0o600); err != nil {
		return err
	}
	bind := false
	switch c.String("bind") {
	case "cpu":
		bind = true
	case "none":
	default:
		return cli.Exit("--bind: want cpu or none", 2)
	}
	cmds := make([]*exec.Cmd, np)
	for r := range np {
		args := append(append([]string{}, os.Args[1:]...), "--rendezvous", dir, "--rank", strconv.Itoa(r))
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "SHOAL_BENCH_RANK=", "SHOAL_BENCH_SIZE=")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if r != 0 {
			cmd.Stdout = nil
		}
		if err := startBound(cmd, r, bind); err != nil {
			for _, k := range cmds[:r] {
				k.Process.Kill()
				k.Wait()
			}
			return fmt.Errorf("start rank %d: %w", r, err)
		}
		cmds[r] = cmd
	}
	errs := make([]error, np)
	var wg sync.WaitGroup
	var once sync.Once
	for r, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[r] = fmt.Errorf("rank %d: %w", r, err)
				once.Do(func() { // one rank failed: the others fail within their timeout; don't wait
					for _, k := range cmds {
						k.Process.Kill()
					}
				})
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startBound starts cmd; with bind, on CPU r only (the child inherits the affinity of the
// thread that forks it), as mpirun --bind-to core places its ranks.
func startBound(cmd *exec.Cmd, r int, bind bool) error {
	if !bind {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return cmd.Start()
	}
	cpus := []int{}
	for i := range 1024 {
		if old.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return cmd.Start()
	}
	one.Set(cpus[r%len(cpus)])
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return cmd.Start()
	}
	defer unix.SchedSetaffinity(0, &old)
	return cmd.Start()
}

// dirKV is the rendezvous store of local benchmark ranks: one file per key in a private
// directory.
type dirKV struct{ dir string }

func (k *dirKV) path(key string) string {
	return filepath.Join(k.dir, "kv-"+strings.NewReplacer("/", "_").Replace(key))
}

func (k *dirKV) KVPut(ctx context.Context, key string, v []byte) (string, error) {
	tmp := k.path(key) + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, v, 0o600); err != nil {
		return "", err
	}
	return "127.0.0.1", os.Rename(tmp, k.path(key))
}

func (k *dirKV) KVGet(ctx context.Context, key string, wait time.Duration) ([]byte, bool, error) {
	end := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(k.path(key))
		if err == nil {
			return b, true, nil
		}
		if time.Now().After(end) {
			return nil, false, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (k *dirKV) KVDelete(ctx context.Context, key string) (bool, error) {
	err := os.Remove(k.path(key))
	return err == nil, nil
}
