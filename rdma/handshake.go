package rdma

import (
	"net"
	"sync"
)

// handshakes bounds the connections of one listener that are in their handshake. When a new
// connection comes and the bound is reached, the oldest one still in its handshake is closed:
// a flood of connections that never authenticate costs at most max goroutines and sockets,
// and cannot starve a peer that authenticates within a few round trips (it is evicted only
// after max newer connections came while it was still in its handshake).
type handshakes struct {
	mu    sync.Mutex
	max   int
	seq   uint64
	conns map[net.Conn]uint64
}

func newHandshakes(max int) *handshakes {
	return &handshakes{max: max, conns: make(map[net.Conn]uint64, max)}
}

// start counts nc as in its handshake, closing the oldest one when there are too many.
func (h *handshakes) start(nc net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) >= h.max {
		var old net.Conn
		var oldSeq uint64
		for c, s := range h.conns {
			if old == nil || s < oldSeq {
				old, oldSeq = c, s
			}
		}
		delete(h.conns, old)
		old.Close()
	}
	h.seq++
	h.conns[nc] = h.seq
}

// end counts nc out (its handshake succeeded or failed); false: it was evicted meanwhile
// (and closed).
func (h *handshakes) end(nc net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.conns[nc]
	delete(h.conns, nc)
	return ok
}

// closeAll closes every connection still in its handshake (the listener closes).
func (h *handshakes) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		c.Close()
		delete(h.conns, c)
	}
}
