package nodeagent

import (
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// statsBeat sends the head node's agent this node's figures (NODE_STATS) every wire.HeartbeatMS
// until the returned stop is called: the head's dashboard, /metrics and report read them.
func (m *Member) statsBeat() (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(wire.HeartbeatMS * time.Millisecond)
		defer t.Stop()
		for {
			m.conn.Send(wire.TNodeStats, 0, m.nodeStats())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done) }
}

func (m *Member) nodeStats() *wire.NodeStats {
	s := &wire.NodeStats{Load1: readLoad1("/proc/loadavg")}
	if m.store != nil {
		s.Store = m.store.stats()
		if x := m.store.xfer; x != nil {
			s.Sent, s.Received = x.sent.Load(), x.received.Load()
		}
	}
	return s
}
