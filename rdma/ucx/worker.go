package ucx

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// worker owns one UCX context and worker and the OS thread that drives them. UCX's worker runs
// in single-thread mode, so every call into UCX happens on that thread: other goroutines hand
// it closures through run and wake it with ucp_worker_signal.
type worker struct {
	ctx C.sx_context_h
	w   C.sx_worker_h
	efd C.int

	cmds    chan func()
	stop    chan struct{}
	stopped chan struct{}

	// owned by the worker thread
	pending   []*op
	listeners map[*Listener]struct{}
	conns     map[*Conn]struct{}
}

// spinFor is how long the worker keeps polling after its last event before it sleeps on the
// event fd: a reply that comes within it is seen at once, and an idle worker costs no CPU.
var spinFor = 20 * time.Microsecond

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
		cmds:      make(chan func(), 256),
		stop:      make(chan struct{}),
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
		ready <- errors.New(C.GoString(&ebuf[0]))
		return
	}
	ready <- nil

	lastWork := time.Now()
	for {
		did := false
	drain:
		for {
			select {
			case f := <-w.cmds:
				f()
				did = true
			default:
				break drain
			}
		}
		select {
		case <-w.stop:
			w.shutdown()
			return
		default:
		}
		if C.shoal_ucx_progress(w.w) > 0 {
			did = true
		}
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
		if did {
			lastWork = time.Now()
			continue
		}
		if time.Since(lastWork) < spinFor {
			continue
		}
		// nothing happened for a while: sleep on the worker's event fd (or a short timer)
		// until the network or run wakes it; the timeout bounds a missed wake-up.
		C.shoal_ucx_wait(w.w, w.efd, 5)
	}
}

// run executes f on the worker thread. It returns false when the worker has stopped.
func (w *worker) run(f func()) bool {
	select {
	case <-w.stopped:
		return false
	case w.cmds <- f:
	}
	C.shoal_ucx_signal(w.w)
	return true
}

// call runs f on the worker thread and waits for it.
func (w *worker) call(f func()) bool {
	done := make(chan struct{})
	if !w.run(func() { f(); close(done) }) {
		return false
	}
	select {
	case <-done:
		return true
	case <-w.stopped:
		// f ran (it had been queued before shutdown drained nothing) or never will
		select {
		case <-done:
			return true
		default:
			return false
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
			C.shoal_ucx_wait(w.w, w.efd, 1)
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
