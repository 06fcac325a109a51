package rdma

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpStream is one TCP connection of a tcpConn. Its reads and writes are non-blocking system
// calls made by the calling goroutine on the socket itself (syscall.RawConn): a message that is
// already there, or comes within a short spin, costs one system call and no hand-off through
// Go's network poller (a poller wake-up is several microseconds, more than a small message's
// whole trip over loopback). Only when the bytes do not come does the caller arm the deadline
// and block in the poller.
type tcpStream struct {
	nc   net.Conn
	raw  syscall.RawConn // nil: not a socket (plain blocking Read and Write)
	buf  []byte          // read-ahead: small reads take what the kernel has, up to len(buf)
	r, w int             // unread bytes of buf
	spin atomic.Int64    // spin budget of a read, in ns (adaptive, like the shm waits)
	tu   *tlsUnder       // under a TLS stream (nc is the TLS session): its socket; else nil
	// noYield: after the spin, park at once (under TLS, the peer needs the CPU to encrypt)
	noYield bool
}

const (
	tcpReadAhead = 64 << 10
	tcpSpinFor   = 50 * time.Microsecond
	tcpSpinMin   = time.Microsecond
	tcpYieldFor  = time.Millisecond // after the spin, yield the CPU until then, then park
)

func newTCPStream(nc net.Conn) *tcpStream { return newTCPStreamBuf(nc, tcpReadAhead) }

// newTCPStreamBuf is newTCPStream with a read-ahead buffer of n bytes (0: none, reads go
// straight into the caller's buffer).
func newTCPStreamBuf(nc net.Conn, n int) *tcpStream {
	s := &tcpStream{nc: nc}
	if n > 0 {
		s.buf = make([]byte, n)
	}
	if tc, ok := nc.(*tls.Conn); ok {
		s.tu, _ = tc.NetConn().(*tlsUnder)
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	s.spin.Store(int64(tcpSpinFor))
	return s
}

// A read that finds nothing spins on the socket for an adaptive budget (up to tcpSpinFor:
// halved when spinning did not pay, doubled when it did), then yields the CPU (sched_yield)
// until tcpYieldFor, and only then returns so that the caller parks in the poller.
//
// read fills p, starting from the read-ahead buffer, and returns how many bytes of p it
// filled. With block false it stops once nothing more has come within the spin budget; the
// caller then arms its deadline and calls again for the rest with block true, which waits in
// the poller as long as the deadline allows.
func (s *tcpStream) read(p []byte, block bool) (int, error) {
	done := 0
	for done < len(p) {
		if s.r < s.w {
			k := copy(p[done:], s.buf[s.r:s.w])
			s.r += k
			done += k
			continue
		}
		if s.raw == nil {
			if s.tu != nil {
				// a TLS stream spins where a clear one would (block false: the caller
				// has armed its deadline anyway, crypto/tls's reads may block)
				s.tu.spin.Store(!block)
			}
			k, err := io.ReadFull(s.nc, p[done:])
			return done + k, err
		}
		rest := p[done:]
		if len(rest) >= len(s.buf) {
			got, err := s.fill(rest, len(rest), block)
			done += got
			if err != nil || got < len(rest) {
				return done, err
			}
			continue
		}
		s.r = 0
		w, err := s.fill(s.buf, len(rest), block)
		s.w = w
		if err != nil || w < len(rest) {
			k := copy(rest, s.buf[:w])
			s.r = k
			return done + k, err
		}
	}
	return done, nil
}

// fill reads into dst until at least need bytes came (or, with block false, nothing more comes
// within the spin budget) and returns how many did.
func (s *tcpStream) fill(dst []byte, need int, block bool) (n int, err error) {
	var start time.Time
	budget := time.Duration(s.spin.Load())
	spun, gaveUp := false, false
	rerr := s.raw.Read(func(fd uintptr) bool {
		for n < need {
			m, e := syscall.Read(int(fd), dst[n:])
			switch {
			case m > 0:
				n += m
			case e == syscall.EINTR:
			case e == syscall.EAGAIN:
				if block {
					return false // wait in the poller (under the armed deadline)
				}
				if start.IsZero() {
					start = time.Now()
					break
				}
				spent := time.Since(start)
				if spent < budget {
					spun = true
					break
				}
				gaveUp = true
				if spent > tcpYieldFor || s.noYield {
					return true
				}
				// more ranks than free cores: hand this core to the rank that will answer
				// (its process, or another goroutine of this one) without sleeping; a sleep
				// and a wake-up through the poller cost several times more
				runtime.Gosched()
				syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			case e != nil:
				err = e
				return true
			default:
				err = io.EOF
				if n > 0 {
					err = io.ErrUnexpectedEOF
				}
				return true
			}
		}
		return true
	})
	if !block {
		switch {
		case gaveUp:
			s.spin.Store(int64(max(budget/2, tcpSpinMin)))
		case spun:
			s.spin.Store(int64(min(budget*2, tcpSpinFor)))
		}
	}
	if err == nil && rerr != nil {
		err = rerr
	}
	return n, err
}

// write writes h then p (one writev while both have bytes left, so that a large message's
// header does not travel, and wake the receiver, alone) and returns how many bytes of the two
// it wrote. With block false it returns early when the socket's buffer is full; the caller then
// arms its deadline and calls again with the rest and block true.
func (s *tcpStream) write(h, p []byte, block bool) (n int, err error) {
	total := len(h) + len(p)
	if s.raw == nil {
		k, err := s.nc.Write(h)
		if err != nil {
			return k, err
		}
		m, err := s.nc.Write(p)
		return k + m, err
	}
	rerr := s.raw.Write(func(fd uintptr) bool {
		for n < total {
			var m int
			var e error
			if n < len(h) {
				iov := [2][]byte{h[n:], p}
				m, e = unix.Writev(int(fd), iov[:])
			} else {
				m, e = syscall.Write(int(fd), p[n-len(h):])
			}
			switch {
			case m > 0:
				n += m
			case e == syscall.EINTR:
			case e == syscall.EAGAIN:
				return !block
			case e != nil:
				err = e
				return true
			default:
				err = io.ErrShortWrite
				return true
			}
		}
		return true
	})
	if err == nil && rerr != nil {
		err = rerr
	}
	return n, err
}

// tlsUnder is the socket under a TLS stream. Its reads are tcpStream's non-blocking system
// calls with the same adaptive spin, then a park in the poller (no yield phase: the peer needs
// the CPU to encrypt), so a small message does not pay a park and a wake-up in Go's poller on
// each side (loopback, 2 ranks, 4-byte allreduce: 7 us instead of 38 us through crypto/tls's
// blocking reads; docs/benchmarks.md). Writes go straight to the socket.
type tlsUnder struct {
	*net.TCPConn
	st *tcpStream
	// spin: the current read may spin first (set around the reads where a clear stream spins;
	// not for the parts of a striped message, where spinning readers would take the CPU the
	// senders need to encrypt)
	spin atomic.Bool
}

func (u *tlsUnder) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := 0, error(nil)
	if u.spin.Load() {
		n, err = u.st.fill(p, 1, false)
	}
	if n == 0 && err == nil {
		n, err = u.st.fill(p, 1, true)
	}
	return n, err
}

// tlsSocket is what a TLS session runs on: nc, read through tcpStream's data path.
func tlsSocket(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	// no read-ahead: fill reads straight into crypto/tls's buffer (and a connection that never
	// authenticates costs no 64 KiB buffer: a flood of them made the agent's heap churn)
	st := newTCPStreamBuf(tc, 0)
	if st.raw == nil {
		return nc
	}
	st.noYield = true
	return &tlsUnder{TCPConn: tc, st: st}
}
