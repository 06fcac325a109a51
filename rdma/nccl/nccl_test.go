package nccl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/shoal-hpc/shoal/internal/cgotrace" // C frames in crash tracebacks
	"github.com/shoal-hpc/shoal/rdma"
)

// TestABI holds the golden layout of the NCCL ABI subset (nccl.h facts, NCCL 2.17 onward for
// ncclConfig_t's first fields) and the enum values.
func TestABI(t *testing.T) {
	got := abiLayout()
	want := layout{
		UniqueIDSize: 128, ConfigSize: 40,
		Magic: 8, Version: 12, Blocking: 16, CGA: 20, MinCTAs: 24, MaxCTAs: 28, NetName: 32,
		APIMagic: 0xcafebeef, ConfigVersion: 21700, UndefInt: math.MinInt32,
		Success: 0, InProgress: 7, RemoteError: 6, Timeout: 8,
		CUDANotReady: 600, HostToDevice: 1, DeviceToHost: 2,
	}
	if got != want {
		t.Fatalf("NCCL ABI layout:\n got %+v\nwant %+v", got, want)
	}
	if b, size := configBlocking(); b != 0 || size != 40 {
		t.Fatalf("config: blocking=%d size=%d, want a non-blocking config of 40 bytes", b, size)
	}
	types := map[DataType]int{Int8: 0, Uint8: 1, Int32: 2, Uint32: 3, Int64: 4, Uint64: 5, Float16: 6,
		Float32: 7, Float64: 8, Bfloat16: 9, Float8e4m3: 10, Float8e5m2: 11}
	for dt, v := range types {
		if int(dt) != v {
			t.Errorf("ncclDataType_t %d: have %d", v, dt)
		}
	}
	ops := map[RedOp]int{Sum: 0, Prod: 1, Max: 2, Min: 3, Avg: 4}
	for op, v := range ops {
		if int(op) != v {
			t.Errorf("ncclRedOp_t %d: have %d", v, op)
		}
	}
	if Float32.Size() != 4 || Bfloat16.Size() != 2 || Float64.Size() != 8 || Int8.Size() != 1 {
		t.Error("element sizes wrong")
	}
	if versionString(22105) != "2.21.5" || versionString(2708) != "2.7.8" {
		t.Errorf("version decoding: %s %s", versionString(22105), versionString(2708))
	}
}

// TestMissingLibrary: without NCCL or the CUDA runtime, Open says ErrNotSupported and names
// what it tried.
func TestMissingLibrary(t *testing.T) {
	for _, tc := range []struct{ nccl, cudart, name string }{
		{"/nonexistent/libnccl.so.2", "", "/nonexistent/libnccl.so.2"},
		{"", "/nonexistent/libcudart.so.12", "/nonexistent/libcudart.so.12"},
		{"libc.so.6", "libc.so.6", "cudaSetDevice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nccl != "" {
				t.Setenv("SHOAL_NCCL_LIB", tc.nccl)
			}
			if tc.cudart != "" {
				t.Setenv("SHOAL_CUDART_LIB", tc.cudart)
			}
			_, err := Open()
			if !errors.Is(err, rdma.ErrNotSupported) || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("Open: %v; want ErrNotSupported naming %s", err, tc.name)
			}
		})
	}
}

// memRendezvous is a Rendezvous in memory for ranks in one process.
type memRendezvous struct {
	mu sync.Mutex
	m  map[string][]byte
	c  *sync.Cond
}

func newMem() *memRendezvous {
	r := &memRendezvous{m: map[string][]byte{}}
	r.c = sync.NewCond(&r.mu)
	return r
}

func (r *memRendezvous) Put(_ context.Context, k string, v []byte) error {
	r.mu.Lock()
	r.m[k] = v
	r.mu.Unlock()
	r.c.Broadcast()
	return nil
}

func (r *memRendezvous) Get(ctx context.Context, k string) ([]byte, error) {
	stop := context.AfterFunc(ctx, r.c.Broadcast)
	defer stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.m[k] == nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.c.Wait()
	}
	return r.m[k], nil
}

// fakeLib builds testdata/fakenccl.c and points Open at it.
func fakeLib(t *testing.T) (*Lib, string) {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no C compiler (gcc) to build the fake NCCL")
	}
	dir := t.TempDir()
	so := filepath.Join(dir, "libfakenccl.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-Wall", "-o", so, "testdata/fakenccl.c").CombinedOutput(); err != nil {
		t.Fatalf("build fake nccl: %v\n%s", err, out)
	}
	t.Setenv("SHOAL_NCCL_LIB", so)
	t.Setenv("SHOAL_CUDART_LIB", so)
	log := filepath.Join(dir, "calls.log")
	t.Setenv("FAKE_NCCL_LOG", log)
	l, err := Open()
	if err != nil {
		t.Fatalf("open fake nccl: %v", err)
	}
	return l, log
}

func calls(t *testing.T, log string) string {
	b, _ := os.ReadFile(log)
	return string(b)
}

// TestFakeInit: two ranks meet through the rendezvous; each passes a non-blocking config
// that NCCL's own parsing accepts, with rank 0's id, and waits out ncclInProgress.
func TestFakeInit(t *testing.T) {
	l, log := fakeLib(t)
	t.Setenv("FAKE_NCCL_INIT_POLLS", "5")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rv := newMem()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.NewComm(ctx, rv, "job1/nccl", r, 2, 0)
			if err == nil {
				c.Close()
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	got := calls(t, log)
	var ids []string
	for _, line := range strings.Split(got, "\n") {
		if !strings.HasPrefix(line, "init ") {
			continue
		}
		for _, want := range []string{"size=40", "magic=0xcafebeef", "version=21700", "blocking=0", "cga=-2147483648", "netName=(null)"} {
			if !strings.Contains(line, want) {
				t.Errorf("init call %q lacks %s", line, want)
			}
		}
		ids = append(ids, line[strings.Index(line, "id="):])
	}
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("the two ranks did not init with the same unique id: %v\n%s", ids, got)
	}
}

// TestFakeInitTimeout: when a rank never arrives, NewComm gives up when its context ends and
// aborts the communicator instead of hanging.
func TestFakeInitTimeout(t *testing.T) {
	l, log := fakeLib(t)
	t.Setenv("FAKE_NCCL_INIT_HANG", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := l.NewComm(ctx, newMem(), "k", 0, 2, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("init with a missing rank: %v, want context.DeadlineExceeded", err)
	}
	if !strings.Contains(calls(t, log), "abort rank=0") {
		t.Fatalf("the communicator was not aborted:\n%s", calls(t, log))
	}
}

// TestFakeCollectives runs each collective on one rank through the fake, with host<->device
// copies, and checks the data and the call's arguments.
func TestFakeCollectives(t *testing.T) {
	l, log := fakeLib(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.NewComm(ctx, newMem(), "k", 0, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.NewStream(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 1000
	host := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(host[4*i:], math.Float32bits(float32(i)+0.5))
	}
	send, _ := l.Malloc(0, len(host))
	recv, _ := l.Malloc(0, len(host))
	defer l.Free(0, send)
	defer l.Free(0, recv)
	if err := l.CopyToDevice(0, send, host); err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func() error{
		"allreduce":     func() error { return c.AllReduce(ctx, send, recv, n, Float32, Sum, s) },
		"allgather":     func() error { return c.AllGather(ctx, send, recv, n, Float32, s) },
		"reducescatter": func() error { return c.ReduceScatter(ctx, send, recv, n, Float32, Sum, s) },
		"broadcast":     func() error { return c.Broadcast(ctx, send, recv, n, Float32, 0, s) },
	} {
		if err := run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := make([]byte, len(host))
		if err := l.CopyToHost(0, out, recv); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, host) {
			t.Fatalf("%s on one rank: result differs from the input", name)
		}
		if !strings.Contains(calls(t, log), name+" rank=0 count=1000 dtype=7") {
			t.Fatalf("%s call not made with count 1000, float32:\n%s", name, calls(t, log))
		}
	}
	if _, err := l.NewStream(3); err == nil || !strings.Contains(err.Error(), "invalid device ordinal") {
		t.Fatalf("stream on a missing GPU: %v", err)
	}
}

// TestFakePeerDies: a collective whose peer died ends with NCCL's error, the communicator is
// aborted, and later collectives fail at once.
func TestFakePeerDies(t *testing.T) {
	l, log := fakeLib(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.NewComm(ctx, newMem(), "k", 0, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := l.NewStream(0)
	defer s.Close()
	buf, _ := l.Malloc(0, 64)
	defer l.Free(0, buf)
	t.Setenv("FAKE_NCCL_COLL_ERROR", "6")
	err = c.AllReduce(ctx, buf, buf, 16, Float32, Sum, s)
	var ne *Error
	if !errors.As(err, &ne) || ne.Result != 6 {
		t.Fatalf("allreduce with a dead peer: %v, want NCCL error 6 (remote error)", err)
	}
	if !strings.Contains(calls(t, log), "abort rank=0") {
		t.Fatal("the communicator was not aborted after the remote error")
	}
	if err := c.AllReduce(ctx, buf, buf, 16, Float32, Sum, s); err == nil {
		t.Fatal("a collective on an aborted communicator succeeded")
	}
}
