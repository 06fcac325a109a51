package nodeagent

import "github.com/shoal-hpc/shoal/wire"

// boundQueue gives c's connection the agent's send-queue bounds (Config.SendQueue, or
// wire.DefaultLimits): a client that stops reading its answers and pushes is disconnected,
// with a Warn line naming it and the bound, instead of growing the agent's heap without end.
// The disconnection then runs the ordinary path of a closed connection (disconnect).
// Called with a.mu held, once c.id is set.
func (a *Agent) boundQueue(c *client) {
	id, role, pid := c.id, c.role, c.pid
	log := a.log
	c.conn.SetLimits(a.cfg.SendQueue, func(err error) {
		log.Warn("disconnecting a client that does not read its messages", "client", id, "role", role, "pid", pid, "error", err)
	})
}

// Pipelined actor calls are pushed to the actor's worker as soon as their arguments are ready,
// and a worker busy in a long method reads none of them; without a window, a driver that
// queues many calls with large inline arguments would fill the worker's send queue and get
// the actor's connection cut. Past a quarter of the queue's bounds (at most these figures) of
// unsent bytes or frames, further calls wait in the actor's queue (the agent's task table)
// until a call in flight finishes.
const (
	execWindowBytes  = 64 << 20
	execWindowFrames = 4096
)

// execWindowFull reports whether w's connection has as much unsent as the window allows. Only
// asked while w has calls in flight, whose DONEs will open the window again.
func (a *Agent) execWindowFull(w *worker) bool {
	if w == nil || w.client == nil {
		return false
	}
	lim := a.cfg.SendQueue
	if lim.Bytes <= 0 {
		lim.Bytes = wire.DefaultLimits.Bytes
	}
	if lim.Frames <= 0 {
		lim.Frames = wire.DefaultLimits.Frames
	}
	f, b := w.client.conn.Queued()
	return f >= min(execWindowFrames, lim.Frames/4) || b >= min(execWindowBytes, lim.Bytes/4)
}
