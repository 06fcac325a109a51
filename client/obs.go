package client

import "github.com/shoal-hpc/shoal/wire"

// ReportCollectives sends the head node's agent the collective operations and bytes this
// process ran since its last report (COLL_STATS, no answer), for /metrics; rdma/coll calls it
// through coll.StatsReporter. It fails only when the connection is closed.
func (c *Client) ReportCollectives(s wire.CollStats) error {
	return c.conn.Send(wire.TCollStats, 0, &s)
}
