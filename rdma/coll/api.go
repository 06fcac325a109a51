package coll

import (
	"context"
	"fmt"
)

func (g *Group) scratch(n int) []byte {
	if cap(g.scratchBuf) < n {
		g.scratchBuf = make([]byte, n)
	}
	return g.scratchBuf[:n]
}

func checkBuf(what string, b []byte, d DType) error {
	if err := d.valid(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(b)%d.Size() != 0 {
		return fmt.Errorf("%s: buffer of %d bytes is not a whole number of %s elements", what, len(b), d)
	}
	return nil
}

// AllReduce reduces buf (elements of d) over every rank with op, in place: afterwards every
// rank holds the same result. Every rank must pass a buffer of the same length.
func (g *Group) AllReduce(ctx context.Context, buf []byte, d DType, op Op) error {
	if err := checkBuf("allreduce", buf, d); err != nil {
		return err
	}
	if err := op.valid(); err != nil {
		return fmt.Errorf("allreduce: %w", err)
	}
	return g.run(ctx, "allreduce", len(buf), func(ctx context.Context) error {
		rop := op
		if op == Avg {
			rop = Sum
		}
		if err := g.allreduce(ctx, buf, d, rop); err != nil {
			return err
		}
		if op == Avg {
			scale(buf, d, g.size)
		}
		return nil
	})
}

func (g *Group) allreduce(ctx context.Context, buf []byte, d DType, op Op) error {
	if g.local == nil {
		return g.world.allreduce(ctx, buf, d, op)
	}
	// hierarchical: inside the node over shared memory, across nodes among one leader per
	// node, then back out from each leader
	if err := g.local.allreduce(ctx, buf, d, op); err != nil {
		return err
	}
	if g.inter != nil {
		if err := g.inter.allreduce(ctx, buf, d, op); err != nil {
			return err
		}
	}
	return g.local.bcast(ctx, buf, 0)
}

// AllGather concatenates every rank's in (all of one length) in rank order into out, which
// must be Size() times as long.
func (g *Group) AllGather(ctx context.Context, in, out []byte) error {
	if len(out) != len(in)*g.size {
		return fmt.Errorf("allgather: output of %d bytes, want %d (%d ranks x %d bytes)", len(out), len(in)*g.size, g.size, len(in))
	}
	return g.run(ctx, "allgather", len(out), func(ctx context.Context) error {
		copy(out[g.rank*len(in):], in)
		return g.world.allgatherBlocks(ctx, out, len(in))
	})
}

// ReduceScatter reduces in (Size() blocks of len(out) bytes) over every rank with op and
// leaves block Rank() of the result in out. in is not changed.
func (g *Group) ReduceScatter(ctx context.Context, in, out []byte, d DType, op Op) error {
	if err := checkBuf("reducescatter", out, d); err != nil {
		return err
	}
	if err := op.valid(); err != nil {
		return fmt.Errorf("reducescatter: %w", err)
	}
	if len(in) != len(out)*g.size {
		return fmt.Errorf("reducescatter: input of %d bytes, want %d (%d ranks x %d bytes)", len(in), len(out)*g.size, g.size, len(out))
	}
	return g.run(ctx, "reducescatter", len(in), func(ctx context.Context) error {
		rop := op
		if op == Avg {
			rop = Sum
		}
		if g.size == 1 {
			copy(out, in)
		} else {
			work := make([]byte, len(in))
			copy(work, in)
			if len(out)%d.Size() != 0 || len(in) <= g.opts.SmallMax {
				// small: allreduce the whole and keep this rank's block
				if err := g.allreduce(ctx, work, d, rop); err != nil {
					return err
				}
			} else {
				if err := g.world.reduceScatterBlocks(ctx, work, len(out), d, rop); err != nil {
					return err
				}
			}
			copy(out, work[g.rank*len(out):])
		}
		if op == Avg {
			scale(out, d, g.size)
		}
		return nil
	})
}

// Broadcast copies root's buf into every rank's buf (all of one length).
func (g *Group) Broadcast(ctx context.Context, buf []byte, root int) error {
	if root < 0 || root >= g.size {
		return fmt.Errorf("broadcast: root %d is not a rank of this group of %d", root, g.size)
	}
	return g.run(ctx, "broadcast", len(buf), func(ctx context.Context) error { return g.world.bcast(ctx, buf, root) })
}

// Barrier returns once every rank has called it.
func (g *Group) Barrier(ctx context.Context) error {
	return g.run(ctx, "barrier", 0, func(ctx context.Context) error { return g.world.barrier(ctx) })
}

// Send sends buf to rank dst, which must Recv a buffer of the same length.
func (g *Group) Send(ctx context.Context, buf []byte, dst int) error {
	if dst < 0 || dst >= g.size || dst == g.rank {
		return fmt.Errorf("send: destination %d is not another rank of this group of %d", dst, g.size)
	}
	return g.run(ctx, "send", len(buf), func(ctx context.Context) error { return g.world.send(ctx, dst, buf) })
}

// Recv fills buf with what rank src Sends.
func (g *Group) Recv(ctx context.Context, buf []byte, src int) error {
	if src < 0 || src >= g.size || src == g.rank {
		return fmt.Errorf("recv: source %d is not another rank of this group of %d", src, g.size)
	}
	return g.run(ctx, "recv", len(buf), func(ctx context.Context) error { return g.world.recv(ctx, src, buf) })
}
