package nodeagent

import (
	"github.com/shoal-hpc/shoal/wire"
)

// nodeStats are this node's figures, which every HEARTBEAT carries to the head node's agent
// (heartbeat.go): the head's dashboard, /metrics and report read them.
func (m *Member) nodeStats() *wire.NodeStats {
	s := &wire.NodeStats{Load1: readLoad1("/proc/loadavg")}
	m.logStats(s) // obs: nodelogs.go
	if m.store != nil {
		s.Store = m.store.stats()
		if x := m.store.xfer; x != nil {
			s.Sent, s.Received = x.sent.Load(), x.received.Load()
		}
	}
	return s
}
