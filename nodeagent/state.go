package nodeagent

import (
	"context"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// stateWait bounds how long a STATE request waits for the head's queued writes and its read.
const stateWait = 10 * time.Second

// headState answers STATE with the head's tables. It reads the database through the head's
// read pool on the connection's own goroutine and takes no agent lock.
func (a *Agent) headState(c *client, seq uint64) error {
	if a.head == nil {
		return c.conn.SendError(seq, "no_head", "this agent keeps no head state (it is a member); ask the head node's agent, whose address is the cluster's SHOAL_ADDRESS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateWait)
	defer cancel()
	st, err := a.head.State(ctx)
	if err != nil {
		return c.conn.SendError(seq, "state", err.Error())
	}
	return c.conn.Send(wire.TOK, seq, &st)
}
