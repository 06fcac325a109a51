package nodeagent

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
