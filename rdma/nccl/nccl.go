// Package nccl runs NCCL collectives on GPU buffers, with libnccl.so.2 and the CUDA runtime
// opened by dlopen at run time, so shoal builds without CUDA and starts on nodes without GPUs.
//
// Fault tolerance: communicators are created non-blocking (ncclConfig_t.blocking = 0 with
// ncclCommInitRankConfig) and every init and collective is polled through
// ncclCommGetAsyncError and cudaStreamQuery against the caller's context. When the context
// ends, or NCCL reports an error (a dead peer shows as ncclRemoteError or ncclSystemError),
// the communicator is aborted with ncclCommAbort, so a dead rank never hangs the others. The
// communicator is then unusable; make a new one.
//
// Rank 0's ncclUniqueId travels through a Rendezvous (the cluster's key-value store on the
// head). Requires NCCL 2.14 or later (non-blocking communicators) and CUDA runtime 11 or 12.
package nccl

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/shoal-hpc/shoal/rdma"
)

// Default library names; SHOAL_NCCL_LIB and SHOAL_CUDART_LIB (colon-separated candidates)
// override them.
const (
	DefaultNCCL   = "libnccl.so.2"
	DefaultCUDART = "libcudart.so.12:libcudart.so.11.0:libcudart.so"
)

// MinVersion is the oldest NCCL this package drives (ncclCommInitRankConfig, non-blocking
// communicators): NCCL_VERSION(2,14,0).
const MinVersion = 21400

// Lib is an opened NCCL and CUDA runtime. It is safe for concurrent use.
type Lib struct {
	version int
}

var (
	openMu   sync.Mutex
	opened   *Lib
	openedAt string
)

// Open loads NCCL and the CUDA runtime. Without them it returns an error wrapping
// rdma.ErrNotSupported that names what is missing. A successful Open is kept for the process
// (the libraries are never unloaded); a failed one is tried again on the next call.
func Open() (*Lib, error) {
	np, cp := DefaultNCCL, DefaultCUDART
	if v := os.Getenv("SHOAL_NCCL_LIB"); v != "" {
		np = v
	}
	if v := os.Getenv("SHOAL_CUDART_LIB"); v != "" {
		cp = v
	}
	openMu.Lock()
	defer openMu.Unlock()
	if opened != nil && openedAt == np+"|"+cp {
		return opened, nil
	}
	cn, cc := C.CString(np), C.CString(cp)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cc))
	var buf [512]C.char
	if C.shoal_nccl_open(cn, cc, &buf[0], C.size_t(len(buf))) != 0 {
		return nil, fmt.Errorf("open NCCL (%s) and the CUDA runtime: %s (install NCCL and CUDA, or set SHOAL_NCCL_LIB and SHOAL_CUDART_LIB): %w",
			np, C.GoString(&buf[0]), rdma.ErrNotSupported)
	}
	v := int(C.shoal_nccl_version())
	if v < MinVersion {
		return nil, fmt.Errorf("NCCL %s at %s is too old: shoal needs 2.14 or later (non-blocking communicators): %w",
			versionString(v), np, rdma.ErrNotSupported)
	}
	opened, openedAt = &Lib{version: v}, np+"|"+cp
	return opened, nil
}

// versionString decodes NCCL_VERSION_CODE (X*1000+Y*100+Z up to 2.8, X*10000+Y*100+Z after).
func versionString(code int) string {
	if code < 0 {
		return "unknown"
	}
	if code < 10000 {
		return fmt.Sprintf("%d.%d.%d", code/1000, code%1000/100, code%100)
	}
	return fmt.Sprintf("%d.%d.%d", code/10000, code%10000/100, code%100)
}

// Version is the NCCL version, "2.21.5".
func (l *Lib) Version() string { return versionString(l.version) }

// DeviceCount is how many GPUs the CUDA runtime sees (after CUDA_VISIBLE_DEVICES).
func (l *Lib) DeviceCount() (int, error) {
	var n C.int
	if e := C.shoal_cuda_device_count(&n); e != 0 {
		return 0, cudaErr("count GPUs", e)
	}
	return int(n), nil
}

// DataType is ncclDataType_t.
type DataType int

// Data types (ncclDataType_t values).
const (
	Int8       DataType = C.NX_INT8
	Uint8      DataType = C.NX_UINT8
	Int32      DataType = C.NX_INT32
	Uint32     DataType = C.NX_UINT32
	Int64      DataType = C.NX_INT64
	Uint64     DataType = C.NX_UINT64
	Float16    DataType = C.NX_FLOAT16
	Float32    DataType = C.NX_FLOAT32
	Float64    DataType = C.NX_FLOAT64
	Bfloat16   DataType = C.NX_BFLOAT16
	Float8e4m3 DataType = C.NX_FLOAT8E4M3
	Float8e5m2 DataType = C.NX_FLOAT8E5M2
)

// Size is the element size in bytes.
func (d DataType) Size() int {
	switch d {
	case Int8, Uint8, Float8e4m3, Float8e5m2:
		return 1
	case Float16, Bfloat16:
		return 2
	case Int32, Uint32, Float32:
		return 4
	case Int64, Uint64, Float64:
		return 8
	}
	return 0
}

// RedOp is ncclRedOp_t.
type RedOp int

// Reduction operations (ncclRedOp_t values).
const (
	Sum  RedOp = C.NX_SUM
	Prod RedOp = C.NX_PROD
	Max  RedOp = C.NX_MAX
	Min  RedOp = C.NX_MIN
	Avg  RedOp = C.NX_AVG
)

// DevicePtr is an address in GPU memory.
type DevicePtr uintptr

// Stream is a CUDA stream on one device.
type Stream struct {
	dev int
	s   C.nx_stream_t
}

// NewStream makes a CUDA stream on device dev.
func (l *Lib) NewStream(dev int) (*Stream, error) {
	s := &Stream{dev: dev}
	if e := C.shoal_cuda_stream_create(C.int(dev), &s.s); e != 0 {
		return nil, cudaErr(fmt.Sprintf("create a CUDA stream on GPU %d", dev), e)
	}
	return s, nil
}

// Close destroys the stream.
func (s *Stream) Close() error {
	if e := C.shoal_cuda_stream_destroy(C.int(s.dev), s.s); e != 0 {
		return cudaErr("destroy CUDA stream", e)
	}
	return nil
}

// Malloc allocates n bytes on device dev.
func (l *Lib) Malloc(dev, n int) (DevicePtr, error) {
	var p unsafe.Pointer
	if e := C.shoal_cuda_malloc(C.int(dev), &p, C.size_t(n)); e != 0 {
		return 0, cudaErr(fmt.Sprintf("allocate %d bytes on GPU %d", n, dev), e)
	}
	return DevicePtr(p), nil
}

// Free releases memory from Malloc.
func (l *Lib) Free(dev int, p DevicePtr) error {
	if e := C.shoal_cuda_free(C.int(dev), devptr(p)); e != 0 {
		return cudaErr("free GPU memory", e)
	}
	return nil
}

// CopyToDevice copies src to dst on device dev and waits for the copy.
func (l *Lib) CopyToDevice(dev int, dst DevicePtr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	if e := C.shoal_cuda_copy(C.int(dev), devptr(dst), unsafe.Pointer(&src[0]), C.size_t(len(src)), C.NX_MEMCPY_HOST_TO_DEVICE); e != 0 {
		return cudaErr(fmt.Sprintf("copy %d bytes to GPU %d", len(src), dev), e)
	}
	return nil
}

// CopyToHost copies len(dst) bytes from src on device dev and waits for the copy.
func (l *Lib) CopyToHost(dev int, dst []byte, src DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	if e := C.shoal_cuda_copy(C.int(dev), unsafe.Pointer(&dst[0]), devptr(src), C.size_t(len(dst)), C.NX_MEMCPY_DEVICE_TO_HOST); e != 0 {
		return cudaErr(fmt.Sprintf("copy %d bytes from GPU %d", len(dst), dev), e)
	}
	return nil
}

// devptr turns a device address into the pointer type C wants. The address is not Go memory.
func devptr(p DevicePtr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&p))
}

// Rendezvous carries rank 0's unique id to the other ranks: the cluster's key-value store.
// Get waits until the key is there or ctx ends.
type Rendezvous interface {
	Put(ctx context.Context, key string, value []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
}

// Error is a failed NCCL or CUDA call.
type Error struct {
	Action string
	// Result is the ncclResult_t, or 0 for a CUDA error.
	Result int
	// CUDA is the cudaError_t, or 0 for an NCCL error.
	CUDA int
	Msg  string
}

func (e *Error) Error() string {
	if e.CUDA != 0 {
		return fmt.Sprintf("%s: CUDA error %d: %s", e.Action, e.CUDA, e.Msg)
	}
	return fmt.Sprintf("%s: NCCL error %d: %s", e.Action, e.Result, e.Msg)
}

func ncclErr(action string, r C.int) error {
	if r < 0 {
		return cudaErr(action, -r)
	}
	return &Error{Action: action, Result: int(r), Msg: C.GoString(C.shoal_nccl_error(r))}
}

func cudaErr(action string, e C.int) error {
	return &Error{Action: action, CUDA: int(e), Msg: C.GoString(C.shoal_cuda_error(e))}
}

// Comm is one rank's NCCL communicator. Its collectives are serialized; each returns when
// its work on the stream has finished.
type Comm struct {
	lib               *Lib
	dev, rank, nranks int
	comm              C.nx_comm_t
	mu                sync.Mutex
	err               error // set once the communicator is aborted
}

// NewComm makes rank's communicator of nranks on device dev. Rank 0 makes the unique id and
// puts it under key; the others get it. The init is non-blocking and polled: when ctx ends
// first (a rank never came), the communicator is aborted and the error says so.
func (l *Lib) NewComm(ctx context.Context, rv Rendezvous, key string, rank, nranks, dev int) (*Comm, error) {
	if nranks < 1 || rank < 0 || rank >= nranks {
		return nil, fmt.Errorf("nccl communicator: rank %d of %d is out of range", rank, nranks)
	}
	var id C.nx_unique_id_t
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&id)), C.NX_UNIQUE_ID_BYTES)
	if rank == 0 {
		if r := C.shoal_nccl_unique_id(&id); r != C.NX_SUCCESS {
			return nil, ncclErr("make nccl unique id", r)
		}
		if err := rv.Put(ctx, key, append([]byte(nil), raw...)); err != nil {
			return nil, fmt.Errorf("publish nccl unique id under %q: %w", key, err)
		}
	} else {
		b, err := rv.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("get nccl unique id %q from rank 0: %w", key, err)
		}
		if len(b) != C.NX_UNIQUE_ID_BYTES {
			return nil, fmt.Errorf("nccl unique id %q has %d bytes, want %d: another program uses this key", key, len(b), C.NX_UNIQUE_ID_BYTES)
		}
		copy(raw, b)
	}
	c := &Comm{lib: l, dev: dev, rank: rank, nranks: nranks}
	var ce C.int
	r := C.shoal_nccl_init(C.int(dev), &c.comm, C.int(nranks), &id, C.int(rank), &ce)
	runtime.KeepAlive(&id)
	if r == -1 {
		return nil, cudaErr(fmt.Sprintf("use GPU %d", dev), ce)
	}
	if r != C.NX_SUCCESS && r != C.NX_IN_PROGRESS {
		if c.comm != nil {
			C.shoal_nccl_abort(C.int(dev), c.comm)
		}
		return nil, ncclErr(fmt.Sprintf("init nccl rank %d of %d", rank, nranks), r)
	}
	what := fmt.Sprintf("init nccl rank %d of %d on GPU %d", rank, nranks, dev)
	if err := c.poll(ctx, what, nil); err != nil {
		return nil, err
	}
	return c, nil
}

// poll waits until the communicator has no operation in progress and, with a stream, until
// the stream is idle. It polls without sleeping for the first spinFor (a small collective on
// NVLink takes tens of µs), then sleeps with a growing pause up to 2 ms. On an NCCL error or
// the end of ctx it aborts the communicator.
func (c *Comm) poll(ctx context.Context, what string, s *Stream) error {
	const spinFor = 200 * time.Microsecond
	start := time.Now()
	delay := 50 * time.Microsecond
	for {
		var ae C.int
		if r := C.shoal_nccl_async_error(c.comm, &ae); r != C.NX_SUCCESS {
			return c.abort(ncclErr(what+": query async error", r))
		}
		switch {
		case ae == C.NX_IN_PROGRESS:
		case ae != C.NX_SUCCESS:
			return c.abort(ncclErr(what, ae))
		case s == nil:
			return nil
		default:
			switch q := C.shoal_cuda_stream_query(C.int(s.dev), s.s); q {
			case C.NX_CUDA_SUCCESS:
				return nil
			case C.NX_CUDA_ERROR_NOT_READY:
			default:
				return c.abort(cudaErr(what, q))
			}
		}
		if err := ctx.Err(); err != nil {
			return c.abort(fmt.Errorf("%s: %w (a rank is missing or dead; communicator aborted)", what, err))
		}
		if time.Since(start) < spinFor {
			runtime.Gosched()
			continue
		}
		time.Sleep(delay)
		delay = min(2*delay, 2*time.Millisecond)
	}
}

// abort ends the communicator with ncclCommAbort, which never waits for peers.
func (c *Comm) abort(err error) error {
	if c.err == nil {
		C.shoal_nccl_abort(C.int(c.dev), c.comm)
		c.err = err
	}
	return err
}

// Abort ends the communicator at once; pending and later collectives fail.
func (c *Comm) Abort() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abort(errors.New("nccl communicator aborted"))
	return nil
}

// Close releases the communicator. Every collective has finished when it returned, so Close
// uses ncclCommAbort, which frees the same resources as ncclCommDestroy but never waits for
// a peer that may be dead.
func (c *Comm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abort(errors.New("nccl communicator closed"))
	return nil
}

// run starts one collective and waits for it.
func (c *Comm) run(ctx context.Context, what string, s *Stream, start func() C.int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return fmt.Errorf("%s: %w", what, c.err)
	}
	if s == nil || s.dev != c.dev {
		return fmt.Errorf("%s: the stream must belong to the communicator's GPU %d", what, c.dev)
	}
	if r := start(); r != C.NX_SUCCESS && r != C.NX_IN_PROGRESS {
		return c.abort(ncclErr(what, r))
	}
	return c.poll(ctx, what, s)
}

// AllReduce reduces count elements of send across ranks with op into recv (in place when
// send == recv).
func (c *Comm) AllReduce(ctx context.Context, send, recv DevicePtr, count int, dt DataType, op RedOp, s *Stream) error {
	return c.run(ctx, fmt.Sprintf("nccl allreduce of %d elements", count), s, func() C.int {
		return C.shoal_nccl_all_reduce(C.int(c.dev), devptr(send), devptr(recv), C.size_t(count), C.int(dt), C.int(op), c.comm, s.s)
	})
}

// AllGather gathers count elements from every rank into recv (nranks*count elements,
// rank i's at offset i*count).
func (c *Comm) AllGather(ctx context.Context, send, recv DevicePtr, count int, dt DataType, s *Stream) error {
	return c.run(ctx, fmt.Sprintf("nccl allgather of %d elements", count), s, func() C.int {
		return C.shoal_nccl_all_gather(C.int(c.dev), devptr(send), devptr(recv), C.size_t(count), C.int(dt), c.comm, s.s)
	})
}

// ReduceScatter reduces nranks*count elements of send with op and leaves block rank of the
// result (count elements) in recv.
func (c *Comm) ReduceScatter(ctx context.Context, send, recv DevicePtr, count int, dt DataType, op RedOp, s *Stream) error {
	return c.run(ctx, fmt.Sprintf("nccl reduce-scatter of %d elements", count), s, func() C.int {
		return C.shoal_nccl_reduce_scatter(C.int(c.dev), devptr(send), devptr(recv), C.size_t(count), C.int(dt), C.int(op), c.comm, s.s)
	})
}

// Broadcast copies count elements of root's send into every rank's recv.
func (c *Comm) Broadcast(ctx context.Context, send, recv DevicePtr, count int, dt DataType, root int, s *Stream) error {
	return c.run(ctx, fmt.Sprintf("nccl broadcast of %d elements from rank %d", count, root), s, func() C.int {
		return C.shoal_nccl_broadcast(C.int(c.dev), devptr(send), devptr(recv), C.size_t(count), C.int(dt), C.int(root), c.comm, s.s)
	})
}

// Rank and Size are this communicator's rank and number of ranks.
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.nranks }
