package ucx

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// worker owns one UCX context and worker. UCX's worker runs in serialized mode: any thread
// may call it, one at a time, under mu. A goroutine that waits for its request drives the
// worker itself for a short while (spinFor), so a reply that comes quickly is seen without a
// thread switch; after that it sleeps on its channel, and the worker's own thread, which
// sleeps on UCX's event fd when nothing happens, completes the request.
type worker struct {
	ctx C.sx_context_h
	w   C.sx_worker_h
	efd C.int

	mu       sync.Mutex
	closed   bool         // under mu: the worker is gone
	stop     atomic.Bool  // Close asks the worker's thread to end
	sleeping atomic.Bool  // the worker's thread is (about to be) asleep on the event fd
	spinners atomic.Int32 // goroutines polling the worker in wait
	stopped  chan struct{}

	// under mu
	pending   []*op
	listeners map[*Listener]struct{}
	conns     map[*Conn]struct{}
}

// spinFor is how long a waiter, and the worker's thread after its last event, keep polling
// UCX before they sleep: a reply within it is seen at once, and an idle worker costs no CPU.
// SHOAL_UCX_SPIN_US overrides it (0 sleeps at once; more buys latency with CPU time).
var spinFor = spinSetting()

func spinSetting() time.Duration {
	if v, err := strconv.Atoi(getenv("SHOAL_UCX_SPIN_US")); err == nil && v >= 0 {
		return time.Duration(v) * time.Microsecond
	}
	return 30 * time.Microsecond
}

// bgSpin is how long the worker's thread polls after its last event before it sleeps on the
// event fd when no waiter is polling.
const bgSpin = 5 * time.Microsecond

// closeTimeout bounds how long closing an endpoint may wait for UCX.
const closeTimeout = 5 * time.Second

// op is one outstanding UCX request.
type op struct {
	req  unsafe.Pointer
	recv bool
	conn *Conn
	done chan error
	what string
}

func startWorker(config map[string]string, name string) (*worker, error) {
	w := &worker{
		stopped:   make(chan struct{}),
		listeners: map[*Listener]struct{}{},
		conns:     map[*Conn]struct{}{},
	}
	ready := make(chan error, 1)
	go w.loop(config, name, ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return w, nil
}

func (w *worker) loop(config map[string]string, name string, ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(w.stopped)

	keys := make([]*C.char, 0, len(config))
	vals := make([]*C.char, 0, len(config))
	for k, v := range config {
		keys = append(keys, C.CString(k))
		vals = append(vals, C.CString(v))
	}
	cname := C.CString(name)
	var ebuf [512]C.char
	var kp, vp **C.char
	if len(keys) > 0 {
		kp, vp = &keys[0], &vals[0]
	}
	st := C.shoal_ucx_init(kp, vp, C.int(len(keys)), cname, &w.ctx, &w.w, &w.efd, &ebuf[0], C.size_t(len(ebuf)))
	for i := range keys {
		C.free(unsafe.Pointer(keys[i]))
		C.free(unsafe.Pointer(vals[i]))
	}
	C.free(unsafe.Pointer(cname))
	if st != C.SX_OK {
		w.closed = true
		ready <- errors.New(C.GoString(&ebuf[0]))
		return
	}
	ready <- nil

	last := time.Now()
	for {
		w.mu.Lock()
		if w.stop.Load() {
			w.shutdown()
			w.closed = true
			w.mu.Unlock()
			return
		}
		if w.step() {
			w.mu.Unlock()
			last = time.Now()
			continue
		}
		if w.spinners.Load() > 0 {
			// a waiter drives the worker: stay out of its way until it stops (spin wakes
			// this thread then), or a millisecond passes
			w.sleeping.Store(true)
			w.mu.Unlock()
			C.shoal_ucx_sleep(w.efd, 1)
			w.sleeping.Store(false)
			last = time.Now()
			continue
		}
		if time.Since(last) < bgSpin {
			w.mu.Unlock()
			continue
		}
		// nothing happened for a while: arm the event fd and sleep on it until the network,
		// or a goroutine that starts a request (wake), signals it. The timeout bounds a
		// missed wake-up.
		w.sleeping.Store(true)
		armed := C.shoal_ucx_arm(w.w) == C.SX_OK
		w.mu.Unlock()
		if armed && !w.stop.Load() {
			C.shoal_ucx_sleep(w.efd, 5)
		}
		w.sleeping.Store(false)
		last = time.Now()
	}
}

// step progresses UCX once and hands out what happened: new connection requests, finished
// requests, lost endpoints. It reports whether anything did. Under mu.
func (w *worker) step() bool {
	did := C.shoal_ucx_progress(w.w) > 0
	for l := range w.listeners {
		for r := C.shoal_lst_pop(l.lst); r != nil; r = C.shoal_lst_pop(l.lst) {
			l.incoming(r)
			did = true
		}
	}
	if w.poll() {
		did = true
	}
	for c := range w.conns {
		if c.state.status != C.SX_OK && c.err == nil {
			c.fail(fmt.Errorf("ucx connection with %s lost (the peer process ended or its node is unreachable): %w",
				c.peer, statusErr("endpoint", c.state.status)))
			did = true
		}
	}
	return did
}

// call runs f under mu and wakes the worker's thread so that it drives whatever f started.
// It returns false when the worker has been closed.
func (w *worker) call(f func()) bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	func() {
		defer w.mu.Unlock() // a panic in f must not leave the worker locked
		f()
	}()
	w.wake()
	return true
}

// run is call; the name marks calls that start work rather than only read state.
func (w *worker) run(f func()) bool { return w.call(f) }

// wake interrupts the worker thread's sleep; ucp_worker_signal may be called from any thread.
func (w *worker) wake() {
	if w.sleeping.Load() {
		C.shoal_ucx_signal(w.w)
	}
}

// wait returns o's result. It drives the worker itself for spinFor (the worker's thread
// stays asleep meanwhile), then sleeps until the worker's thread completes o. ok is false
// when ctx ended first.
func (w *worker) wait(ctx context.Context, o *op) (err error, ok bool) {
	if err, ok := w.spin(o); ok {
		return err, true
	}
	select {
	case err := <-o.done:
		return err, true
	case <-w.stopped:
		select {
		case err := <-o.done:
			return err, true
		default:
			return errClosed, true
		}
	case <-ctx.Done():
		return nil, false
	}
}

// spin polls the worker for o's result for up to spinFor.
func (w *worker) spin(o *op) (error, bool) {
	w.spinners.Add(1)
	defer func() {
		if w.spinners.Add(-1) == 0 {
			w.wake() // the worker's thread takes over
		}
	}()
	start := time.Now()
	for {
		select {
		case err := <-o.done:
			return err, true
		default:
		}
		if time.Since(start) > spinFor {
			return nil, false
		}
		if w.mu.TryLock() {
			if !w.closed {
				w.step()
			}
			w.mu.Unlock()
		}
	}
}

// track records a started request: st is what the nbx call returned.
func (w *worker) track(o *op, st C.int, req unsafe.Pointer) {
	switch st {
	case C.SX_OK:
		o.done <- nil
	case C.SX_INPROGRESS:
		o.req = req
		w.pending = append(w.pending, o)
	default:
		o.done <- statusErr(o.what, st)
	}
}

// poll completes the requests that finished; it reports whether any did.
func (w *worker) poll() bool {
	any := false
	keep := w.pending[:0]
	for _, o := range w.pending {
		recv := C.int(0)
		if o.recv {
			recv = 1
		}
		st := C.shoal_ucx_test(o.req, recv)
		if st == C.SX_INPROGRESS {
			keep = append(keep, o)
			continue
		}
		any = true
		if st == C.SX_OK {
			o.done <- nil
		} else if o.conn != nil && o.conn.err != nil {
			o.done <- fmt.Errorf("%s: %w", o.what, o.conn.err)
		} else if err := statusErr(o.what, st); isPeerGone(err) {
			o.done <- fmt.Errorf("%w (connection lost: the peer process ended or its node is unreachable)", err)
		} else {
			o.done <- err
		}
	}
	for i := len(keep); i < len(w.pending); i++ {
		w.pending[i] = nil
	}
	w.pending = keep
	return any
}

// closeEP closes an endpoint and progresses until UCX has released it; force drops what was
// not delivered. It reports whether UCX released the endpoint in time. On the worker thread.
func (w *worker) closeEP(ep C.sx_ep_h, force bool) bool {
	f := C.int(0)
	if force {
		f = 1
	}
	var req unsafe.Pointer
	st := C.shoal_ucx_close(ep, f, &req)
	if st != C.SX_INPROGRESS {
		return true
	}
	deadline := time.Now().Add(closeTimeout)
	for i := 0; ; i++ {
		C.shoal_ucx_progress(w.w)
		if C.shoal_ucx_test(req, 0) != C.SX_INPROGRESS {
			return true
		}
		if i > 0 && i%1000 == 0 {
			if time.Now().After(deadline) {
				// UCX still holds the endpoint (a flush to a peer that does not answer);
				// leave it to ucp_worker_destroy rather than block every connection.
				return false
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// shutdown ends every connection and listener and frees UCX; on the worker thread.
func (w *worker) shutdown() {
	for c := range w.conns {
		c.fail(errClosed)
	}
	for l := range w.listeners {
		l.destroy()
	}
	deadline := time.Now().Add(closeTimeout)
	for len(w.pending) > 0 && time.Now().Before(deadline) {
		C.shoal_ucx_progress(w.w)
		w.poll()
	}
	C.shoal_ucx_fini(w.ctx, w.w)
}
