// Command libshoalcoll is the collective library for other languages: built with
// `go build -buildmode=c-shared` (make build puts it in python/shoal/bin/libshoalcoll.so), it
// exports the groups of package rdma/coll through a small C ABI that python/shoal/collective.py
// calls with ctypes, passing the addresses of numpy arrays and torch tensors, so Python runs
// the same implementation at the same speed as Go.
//
// Every function returns 0 on success and -1 on failure; shoal_coll_error copies the calling
// group's last error message (or the last init error) into a caller's buffer. Buffers are
// only used during the call.
package main

/*
#include <stdint.h>
*/
import "C"

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/shoal-hpc/shoal/client"
	"github.com/shoal-hpc/shoal/rdma/coll"
)

var (
	mu      sync.Mutex
	groups  = map[int64]*coll.Group{}
	lastErr = map[int64]string{}
	nextID  int64
)

func setErr(h int64, err error) C.int {
	mu.Lock()
	lastErr[h] = err.Error()
	mu.Unlock()
	return -1
}

func group(h int64) (*coll.Group, error) {
	mu.Lock()
	defer mu.Unlock()
	g := groups[h]
	if g == nil {
		return nil, fmt.Errorf("collective group handle %d is not open (call init_group first)", h)
	}
	return g, nil
}

func bytesAt(p unsafe.Pointer, n C.int64_t) []byte {
	if n <= 0 || p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(p), int(n))
}

// shoal_coll_init joins a group and returns its handle (> 0), or 0 on failure (the error is
// under handle 0). addr, secret, cluster and node are the caller's SHOAL_ADDRESS,
// SHOAL_SECRET, SHOAL_CLUSTER_ID and SHOAL_NODE_ID (passed in, because the Go runtime of a
// shared library sees only the environment of the moment it was loaded); host, when not
// empty, is the address other nodes reach this rank on.
//
//export shoal_coll_init
func shoal_coll_init(name *C.char, rank, size C.int, backend *C.char, timeoutMs C.int64_t, addr, secret, cluster, node, host *C.char) C.int64_t {
	env := map[string]string{"SHOAL_ADDRESS": C.GoString(addr), "SHOAL_SECRET": C.GoString(secret),
		"SHOAL_CLUSTER_ID": C.GoString(cluster), "SHOAL_NODE_ID": C.GoString(node), "SHOAL_COLL_HOST": C.GoString(host)}
	g, err := initGroup(C.GoString(name), int(rank), int(size), C.GoString(backend), time.Duration(timeoutMs)*time.Millisecond, func(k string) string { return env[k] })
	if err != nil {
		setErr(0, err)
		return 0
	}
	mu.Lock()
	defer mu.Unlock()
	nextID++
	groups[nextID] = g
	return C.int64_t(nextID)
}

func initGroup(name string, rank, size int, backend string, timeout time.Duration, getenv func(string) string) (*coll.Group, error) {
	addr, secret := getenv("SHOAL_ADDRESS"), getenv("SHOAL_SECRET")
	opts := coll.Options{Secret: secret, Cluster: getenv("SHOAL_CLUSTER_ID"), Node: getenv("SHOAL_NODE_ID"),
		Backend: backend, Timeout: timeout, Host: getenv("SHOAL_COLL_HOST")}
	if opts.Cluster == "" && secret != "" {
		h := sha256.Sum256([]byte(secret))
		opts.Cluster = hex.EncodeToString(h[:6])
	}
	var kv coll.KV
	if size > 1 || addr != "" {
		if addr == "" || secret == "" {
			return nil, fmt.Errorf("init collective group %q: SHOAL_ADDRESS and SHOAL_SECRET are not set; run inside a shoal cluster (a task, an actor, or a driver under shoal run)", name)
		}
		c, err := client.DialKV(nil, addr, secret)
		if err != nil {
			return nil, fmt.Errorf("init collective group %q: %w", name, err)
		}
		if opts.Node == "" {
			opts.Node = c.NodeID()
		}
		kv = c
		// the group keeps the connection for its collective counts (/metrics) and closes it
		opts.OwnKV = true
		g, err := coll.NewGroup(context.Background(), kv, name, rank, size, opts)
		if err != nil {
			c.Close()
		}
		return g, err
	}
	return coll.NewGroup(context.Background(), kv, name, rank, size, opts)
}

// shoal_coll_error copies handle h's last error (NUL-terminated, truncated to n bytes) into buf
// and returns its full length.
//
//export shoal_coll_error
func shoal_coll_error(h C.int64_t, buf *C.char, n C.int) C.int {
	mu.Lock()
	msg := lastErr[int64(h)]
	mu.Unlock()
	if n > 0 {
		b := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
		k := copy(b[:n-1], msg)
		b[k] = 0
	}
	return C.int(len(msg))
}

func call(h C.int64_t, f func(g *coll.Group) error) C.int {
	g, err := group(int64(h))
	if err == nil {
		err = f(g)
	}
	if err != nil {
		return setErr(int64(h), err)
	}
	return 0
}

//export shoal_coll_allreduce
func shoal_coll_allreduce(h C.int64_t, p unsafe.Pointer, n C.int64_t, dtype, op C.int) C.int {
	return call(h, func(g *coll.Group) error {
		return g.AllReduce(context.Background(), bytesAt(p, n), coll.DType(dtype), coll.Op(op))
	})
}

//export shoal_coll_allgather
func shoal_coll_allgather(h C.int64_t, in unsafe.Pointer, n C.int64_t, out unsafe.Pointer) C.int {
	return call(h, func(g *coll.Group) error {
		return g.AllGather(context.Background(), bytesAt(in, n), bytesAt(out, n*C.int64_t(g.Size())))
	})
}

//export shoal_coll_reducescatter
func shoal_coll_reducescatter(h C.int64_t, in, out unsafe.Pointer, nout C.int64_t, dtype, op C.int) C.int {
	return call(h, func(g *coll.Group) error {
		return g.ReduceScatter(context.Background(), bytesAt(in, nout*C.int64_t(g.Size())), bytesAt(out, nout), coll.DType(dtype), coll.Op(op))
	})
}

//export shoal_coll_broadcast
func shoal_coll_broadcast(h C.int64_t, p unsafe.Pointer, n C.int64_t, root C.int) C.int {
	return call(h, func(g *coll.Group) error { return g.Broadcast(context.Background(), bytesAt(p, n), int(root)) })
}

//export shoal_coll_barrier
func shoal_coll_barrier(h C.int64_t) C.int {
	return call(h, func(g *coll.Group) error { return g.Barrier(context.Background()) })
}

//export shoal_coll_send
func shoal_coll_send(h C.int64_t, p unsafe.Pointer, n C.int64_t, dst C.int) C.int {
	return call(h, func(g *coll.Group) error { return g.Send(context.Background(), bytesAt(p, n), int(dst)) })
}

//export shoal_coll_recv
func shoal_coll_recv(h C.int64_t, p unsafe.Pointer, n C.int64_t, src C.int) C.int {
	return call(h, func(g *coll.Group) error { return g.Recv(context.Background(), bytesAt(p, n), int(src)) })
}

// shoal_coll_backends writes {"peer rank": "backend", ...} (JSON) for handle h into buf.
//
//export shoal_coll_backends
func shoal_coll_backends(h C.int64_t, buf *C.char, n C.int) C.int {
	g, err := group(int64(h))
	if err != nil {
		return setErr(int64(h), err)
	}
	b, _ := json.Marshal(g.Backends())
	if int(n) < len(b)+1 {
		return setErr(int64(h), fmt.Errorf("backends: buffer of %d bytes is too small for %d", n, len(b)+1))
	}
	out := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
	out[copy(out, b)] = 0
	return 0
}

//export shoal_coll_destroy
func shoal_coll_destroy(h C.int64_t) C.int {
	mu.Lock()
	g := groups[int64(h)]
	delete(groups, int64(h))
	delete(lastErr, int64(h))
	mu.Unlock()
	if g != nil {
		g.Close()
	}
	return 0
}

func main() {}
