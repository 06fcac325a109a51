package coll

import (
	"context"
	"fmt"

	"github.com/shoal-hpc/shoal/rdma"
)

// comm is an ordered subset of the group's ranks (all of them, one node's, or one per node).
type comm struct {
	g     *Group
	ranks []int // global ranks, in this comm's order
	me    int   // this rank's index in ranks
}

func newComm(g *Group, ranks []int) *comm {
	c := &comm{g: g, ranks: ranks, me: -1}
	for i, r := range ranks {
		if r == g.rank {
			c.me = i
		}
	}
	return c
}

func (c *comm) n() int { return len(c.ranks) }

func (c *comm) conn(ctx context.Context, i int) (rdma.Conn, error) {
	return c.g.conn(ctx, c.ranks[i])
}

func (c *comm) send(ctx context.Context, to int, b []byte) error {
	cn, err := c.conn(ctx, to)
	if err != nil {
		return err
	}
	return c.sendOn(ctx, cn, to, b)
}

func (c *comm) sendOn(ctx context.Context, cn rdma.Conn, to int, b []byte) error {
	if err := cn.Send(ctx, b); err != nil {
		return fmt.Errorf("send to rank %d: %w", c.ranks[to], err)
	}
	return nil
}

func (c *comm) recv(ctx context.Context, from int, b []byte) error {
	cn, err := c.conn(ctx, from)
	if err != nil {
		return err
	}
	return c.recvOn(ctx, cn, from, b)
}

func (c *comm) recvOn(ctx context.Context, cn rdma.Conn, from int, b []byte) error {
	if err := cn.Recv(ctx, b); err != nil {
		return fmt.Errorf("receive from rank %d: %w", c.ranks[from], err)
	}
	return nil
}

// recvReduce receives len(dst) bytes from rank from and reduces them into dst, straight out
// of the transport's buffers where it can.
func (c *comm) recvReduce(ctx context.Context, from int, dst []byte, d DType, op Op) error {
	cn, err := c.conn(ctx, from)
	if err != nil {
		return err
	}
	return c.recvReduceOn(ctx, cn, from, dst, d, op)
}

func (c *comm) recvReduceOn(ctx context.Context, cn rdma.Conn, from int, dst []byte, d DType, op Op) error {
	if s, ok := cn.(rdma.Streamer); ok {
		es := d.Size()
		var carry [8]byte
		cn := 0
		err := s.RecvStream(ctx, len(dst), func(off int, p []byte) {
			if cn > 0 { // finish an element split between two pieces
				k := min(es-cn, len(p))
				copy(carry[cn:], p[:k])
				cn += k
				p, off = p[k:], off+k
				if cn < es {
					return
				}
				Reduce(dst[off-es:off], carry[:es], d, op)
				cn = 0
			}
			whole := len(p) / es * es
			Reduce(dst[off:off+whole], p[:whole], d, op)
			cn = copy(carry[:], p[whole:])
		})
		if err != nil {
			return fmt.Errorf("receive from rank %d: %w", c.ranks[from], err)
		}
		return nil
	}
	tmp := c.g.scratch(len(dst))
	if err := c.recvOn(ctx, cn, from, tmp); err != nil {
		return err
	}
	Reduce(dst, tmp, d, op)
	return nil
}

// both runs send and recv at once (a Conn takes one sender and one receiver together), so
// that two ranks sending to each other never wait on each other's reads. Messages of at most
// seqMax bytes go one after the other instead: every transport buffers that much without a
// reader (a socket's buffer, a shm ring), and a goroutine would cost more than the transfer.
func both(send, recv func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- send() }()
	rerr := recv()
	serr := <-ch
	if rerr != nil {
		return rerr
	}
	return serr
}

const seqMax = 4096

func (c *comm) exchange(ctx context.Context, to int, sb []byte, from int, rb []byte) error {
	return c.exchangeReduce(ctx, to, sb, from, rb, Int32, Sum, false)
}

// linkChunk is the piece size in which a message of n bytes crosses conn: a quarter of what
// the transport buffers (a shm ring, a one-stream TCP socket's send buffer), else the whole
// message. It depends on the link only,
// so that both of its ends cut a message the same way.
func linkChunk(conn rdma.Conn, n, es int) int {
	if b, ok := conn.(rdma.Buffered); ok && b.Buffered() > 0 {
		return max(b.Buffered()/4/es*es, es)
	}
	return max(n, 1)
}

func buffers(conn rdma.Conn) bool {
	b, ok := conn.(rdma.Buffered)
	return ok && b.Buffered() > 0
}

// exchangeReduce sends sb to rank to while receiving rb from rank from (reduced into rb with
// op, or copied when reduce is false). Messages cross each link in linkChunk pieces. When both
// links buffer and no send waits for its receiver (single copy), it goes piece by piece from
// this goroutine, as MPI does: at most a few pieces are ever unread, well within a ring, so no
// send can wait for a receiver that waits for it. Otherwise the sends and the receives run in
// two goroutines.
func (c *comm) exchangeReduce(ctx context.Context, to int, sb []byte, from int, rb []byte, d DType, op Op, reduce bool) error {
	sc, err := c.conn(ctx, to)
	if err != nil {
		return err
	}
	rc, err := c.conn(ctx, from)
	if err != nil {
		return err
	}
	es := d.Size()
	sch, rch := linkChunk(sc, len(sb), es), linkChunk(rc, len(rb), es)
	ns, nr := max((len(sb)+sch-1)/sch, 1), max((len(rb)+rch-1)/rch, 1)
	sbuf, rbuf := buffers(sc), buffers(rc)
	if rz, ok := sc.(rdma.Rendezvous); ok && rz.Rendezvous(min(sch, len(sb))) {
		sbuf = false // a single-copy send waits for its receiver
	}
	if !(sbuf && rbuf || len(sb) <= seqMax) {
		return c.exchangeBoth(ctx, to, sb, sch, ns, from, rb, rch, nr, d, op, reduce)
	}
	// no closures here: this is every small operation's path
	for k := range max(ns, nr) {
		if k < ns {
			if err := c.sendOn(ctx, sc, to, sb[k*sch:min((k+1)*sch, len(sb))]); err != nil {
				return err
			}
		}
		if k < nr {
			p := rb[k*rch : min((k+1)*rch, len(rb))]
			if reduce {
				err = c.recvReduceOn(ctx, rc, from, p, d, op)
			} else {
				err = c.recvOn(ctx, rc, from, p)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// exchangeBoth is exchangeReduce's sends and receives in two goroutines.
func (c *comm) exchangeBoth(ctx context.Context, to int, sb []byte, sch, ns, from int, rb []byte, rch, nr int, d DType, op Op, reduce bool) error {
	return both(func() error {
		for k := range ns {
			if err := c.send(ctx, to, sb[k*sch:min((k+1)*sch, len(sb))]); err != nil {
				return err
			}
		}
		return nil
	}, func() error {
		for k := range nr {
			p := rb[k*rch : min((k+1)*rch, len(rb))]
			var err error
			if reduce {
				err = c.recvReduce(ctx, from, p, d, op)
			} else {
				err = c.recv(ctx, from, p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// allreduce reduces buf over c in place (op is never Avg here).
func (c *comm) allreduce(ctx context.Context, buf []byte, d DType, op Op) error {
	n := c.n()
	if n == 1 {
		return nil
	}
	count := len(buf) / d.Size()
	if len(buf) <= c.g.opts.SmallMax || count < n {
		return c.allreduceRD(ctx, buf, d, op)
	}
	return c.allreduceRing(ctx, buf, d, op)
}

// allreduceRD is recursive doubling: log2(p) exchanges of the whole buffer, where p is the
// largest power of two <= n; the first 2*(n-p) ranks pair up first (even ones hand their data
// to the odd ones and wait for the result), so any n works. Each exchange combines the two
// halves commutatively, so every rank ends with the same bits.
func (c *comm) allreduceRD(ctx context.Context, buf []byte, d DType, op Op) error {
	n, me := c.n(), c.me
	p := 1
	for p*2 <= n {
		p *= 2
	}
	rem := n - p
	tmp := c.g.scratch(len(buf))
	newRank := me - rem
	if me < 2*rem {
		if me%2 == 0 {
			if err := c.send(ctx, me+1, buf); err != nil {
				return err
			}
			return c.recv(ctx, me+1, buf)
		}
		if err := c.recvReduce(ctx, me-1, buf, d, op); err != nil {
			return err
		}
		newRank = me / 2
	}
	for mask := 1; mask < p; mask <<= 1 {
		pn := newRank ^ mask
		peer := pn + rem
		if pn < rem {
			peer = pn*2 + 1
		}
		if err := c.exchange(ctx, peer, buf, peer, tmp); err != nil {
			return err
		}
		Reduce(buf, tmp, d, op)
	}
	if me < 2*rem {
		return c.send(ctx, me-1, buf)
	}
	return nil
}

// seg returns the byte range of segment i of count elements cut into n near-equal parts.
func seg(i, n, count, es int) (int, int) {
	return i * count / n * es, (i + 1) * count / n * es
}

func mod(a, n int) int { return ((a % n) + n) % n }

// allreduceRing is reduce-scatter then allgather around the ring: each rank sends and
// receives 2(n-1)/n of the buffer, the least any algorithm can.
func (c *comm) allreduceRing(ctx context.Context, buf []byte, d DType, op Op) error {
	if err := c.reduceScatterRing(ctx, buf, d, op, 0); err != nil {
		return err
	}
	return c.allgatherRing(ctx, buf, d.Size(), 1)
}

// reduceScatterRing leaves segment (me+shift) mod n of buf fully reduced on each rank.
func (c *comm) reduceScatterRing(ctx context.Context, buf []byte, d DType, op Op, shift int) error {
	n, me, es := c.n(), c.me, d.Size()
	count := len(buf) / es
	right, left := mod(me+1, n), mod(me-1, n)
	for s := 0; s < n-1; s++ {
		sa, sb := seg(mod(me-s+shift, n), n, count, es)
		ra, rb := seg(mod(me-s-1+shift, n), n, count, es)
		if err := c.exchangeReduce(ctx, right, buf[sa:sb], left, buf[ra:rb], d, op, true); err != nil {
			return err
		}
	}
	return nil
}

// allgatherRing starts with segment (me+shift) mod n of buf and ends with all of them.
func (c *comm) allgatherRing(ctx context.Context, buf []byte, es, shift int) error {
	n, me := c.n(), c.me
	count := len(buf) / es
	right, left := mod(me+1, n), mod(me-1, n)
	for s := 0; s < n-1; s++ {
		sa, sb := seg(mod(me-s+shift, n), n, count, es)
		ra, rb := seg(mod(me-s-1+shift, n), n, count, es)
		if err := c.exchangeReduce(ctx, right, buf[sa:sb], left, buf[ra:rb], Int32, Sum, false); err != nil {
			return err
		}
	}
	return nil
}

// allgatherBlocks: out holds n blocks of bs bytes, block me filled; afterwards all are. Small
// totals with a power-of-two n use recursive doubling (log2 n steps); the rest the ring.
func (c *comm) allgatherBlocks(ctx context.Context, out []byte, bs int) error {
	n, me := c.n(), c.me
	if n == 1 {
		return nil
	}
	if n&(n-1) == 0 && len(out) <= c.g.opts.SmallMax {
		// after the step with distance mask, each rank holds the aligned run of 2*mask blocks
		for mask := 1; mask < n; mask <<= 1 {
			peer := me ^ mask
			mine := me &^ (mask - 1)
			theirs := peer &^ (mask - 1)
			if err := c.exchange(ctx, peer, out[mine*bs:(mine+mask)*bs], peer, out[theirs*bs:(theirs+mask)*bs]); err != nil {
				return err
			}
		}
		return nil
	}
	right, left := mod(me+1, n), mod(me-1, n)
	for s := 0; s < n-1; s++ {
		sb := mod(me-s, n)
		rb := mod(me-s-1, n)
		if err := c.exchangeReduce(ctx, right, out[sb*bs:(sb+1)*bs], left, out[rb*bs:(rb+1)*bs], Int32, Sum, false); err != nil {
			return err
		}
	}
	return nil
}

// bcast sends root's buf to every rank: a binomial tree for small messages (log2 n steps), a
// pipelined chain in 1 MiB pieces for large ones (each byte crosses each link once).
func (c *comm) bcast(ctx context.Context, buf []byte, root int) error {
	n := c.n()
	if n == 1 {
		return nil
	}
	v := mod(c.me-root, n) // position relative to the root
	abs := func(x int) int { return mod(x+root, n) }
	if len(buf) <= c.g.opts.SmallMax {
		mask := 1
		for mask < n {
			if v&mask != 0 {
				if err := c.recv(ctx, abs(v-mask), buf); err != nil {
					return err
				}
				break
			}
			mask <<= 1
		}
		for mask >>= 1; mask > 0; mask >>= 1 {
			if v+mask < n {
				if err := c.send(ctx, abs(v+mask), buf); err != nil {
					return err
				}
			}
		}
		return nil
	}
	const piece = 1 << 20
	for off := 0; off < len(buf); off += piece {
		p := buf[off:min(off+piece, len(buf))]
		if v > 0 {
			if err := c.recv(ctx, abs(v-1), p); err != nil {
				return err
			}
		}
		if v < n-1 {
			if err := c.send(ctx, abs(v+1), p); err != nil {
				return err
			}
		}
	}
	return nil
}

// barrier is the dissemination barrier: ceil(log2 n) rounds.
func (c *comm) barrier(ctx context.Context) error {
	n, me := c.n(), c.me
	var s, r [1]byte
	for k := 1; k < n; k <<= 1 {
		if err := c.exchange(ctx, mod(me+k, n), s[:], mod(me-k, n), r[:]); err != nil {
			return err
		}
	}
	return nil
}

// reduceScatterBlocks: buf is n blocks of bs bytes; afterwards block me is reduced over all.
func (c *comm) reduceScatterBlocks(ctx context.Context, buf []byte, bs int, d DType, op Op) error {
	n, me := c.n(), c.me
	right, left := mod(me+1, n), mod(me-1, n)
	for s := 0; s < n-1; s++ {
		sb := mod(me-s-1, n)
		rb := mod(me-s-2, n)
		if err := c.exchangeReduce(ctx, right, buf[sb*bs:(sb+1)*bs], left, buf[rb*bs:(rb+1)*bs], d, op, true); err != nil {
			return err
		}
	}
	return nil
}
