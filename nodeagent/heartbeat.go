package nodeagent

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// Liveness between the head node's agent and its members. A member's TCP connection that
// closes is a lost node at once (memberLost); heartbeats find the nodes whose connection does
// not close: a cut link or a stopped process sends no FIN, and TCP would hold such a
// connection open for many minutes.
//
//	member ──HEARTBEAT (every Period)──> head agent   head: no HEARTBEAT for Timeout ──> node lost
//	member <──HEARTBEAT (answer)──────── head agent   member: no answer for Timeout ──> exits,
//	                                                   its workers killed (ErrHeadLost)
//
// The head decides both figures and sends them in NODE_JOIN's answer, so the two sides never
// disagree. The timing logic (liveness) is pure: the caller passes the time, and the tests
// drive it with a made-up clock.

// Heartbeat configures liveness checks.
type Heartbeat struct {
	// Timeout is how long a peer may stay silent before it is declared lost. Zero:
	// DefaultHeartbeatTimeout; negative: no heartbeats (a node is lost only when its
	// connection closes).
	Timeout time.Duration
	// Period is how often a member sends HEARTBEAT. Zero: Timeout/5, at least 50 ms.
	Period time.Duration
}

// DefaultHeartbeatTimeout is how long a silent node has before it is lost: five periods of a
// second, so that four heartbeats in a row may be late (a member's GC or a busy head agent, a
// retransmitted segment) before a live node is given up, and a dead one is found within a few
// seconds, well inside the time a retried task takes anyway.
const DefaultHeartbeatTimeout = 5 * time.Second

// MinHeartbeatTimeout is the shortest timeout accepted: below it, scheduling hiccups of a
// loaded machine would pass for lost nodes.
const MinHeartbeatTimeout = 500 * time.Millisecond

// withDefaults fills zero fields.
func (h Heartbeat) withDefaults() Heartbeat {
	if h.Timeout == 0 {
		h.Timeout = DefaultHeartbeatTimeout
	}
	if h.Timeout < 0 {
		return Heartbeat{}
	}
	if h.Period <= 0 {
		h.Period = max(h.Timeout/5, 50*time.Millisecond)
	}
	return h
}

// Validate says what is wrong with a heartbeat setting, naming the flag that sets it.
func (h Heartbeat) Validate() error {
	if h.Timeout > 0 && h.Timeout < MinHeartbeatTimeout {
		return fmt.Errorf("--heartbeat-timeout %s is too short: give at least %s (or a negative value to turn heartbeats off)", h.Timeout, MinHeartbeatTimeout)
	}
	if h.Timeout > 0 && h.Period >= h.Timeout {
		return fmt.Errorf("heartbeat period %s must be shorter than the timeout %s", h.Period, h.Timeout)
	}
	return nil
}

// liveness records when each peer was last heard from and finds the silent ones. It does no
// I/O and reads no clock; it is safe for concurrent use.
type liveness[K comparable] struct {
	timeout time.Duration
	mu      sync.Mutex
	last    map[K]time.Time
}

func newLiveness[K comparable](timeout time.Duration) *liveness[K] {
	return &liveness[K]{timeout: timeout, last: map[K]time.Time{}}
}

// heard records a sign of life from k at now. A time earlier than the one recorded is kept
// out (signs may be handled out of order).
func (l *liveness[K]) heard(k K, now time.Time) {
	l.mu.Lock()
	if t, ok := l.last[k]; !ok || now.After(t) {
		l.last[k] = now
	}
	l.mu.Unlock()
}

// track starts watching k from now unless it is watched already: a peer that never sends a
// heartbeat is lost one timeout after it was first tracked.
func (l *liveness[K]) track(k K, now time.Time) {
	l.mu.Lock()
	if _, ok := l.last[k]; !ok {
		l.last[k] = now
	}
	l.mu.Unlock()
}

// forget stops watching k.
func (l *liveness[K]) forget(k K) {
	l.mu.Lock()
	delete(l.last, k)
	l.mu.Unlock()
}

// silent returns the peers not heard from for longer than the timeout at now, with how long
// each has been silent, and stops watching them.
func (l *liveness[K]) silent(now time.Time) map[K]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out map[K]time.Duration
	for k, t := range l.last {
		if d := now.Sub(t); d > l.timeout {
			if out == nil {
				out = map[K]time.Duration{}
			}
			out[k] = d
			delete(l.last, k)
		}
	}
	return out
}

// ---- the head node's side

// joinReply is the answer to a member's NODE_JOIN: the heartbeat figures it must keep.
func (a *Agent) joinReply() *wire.NodeJoinReply {
	h := a.cfg.Heartbeat.withDefaults()
	return &wire.NodeJoinReply{HeartbeatMS: h.Period.Milliseconds(), TimeoutMS: h.Timeout.Milliseconds(), LocalTasks: !a.cfg.NoLocalTasks}
}

// heartbeat handles HEARTBEAT from a member: it is alive, its figures go to the recorder, and
// it gets its answer (none for seq 0: a member that checks no liveness). No agent lock: a head
// agent busy elsewhere still answers, and a member's sign of life is recorded as it arrives.
func (a *Agent) heartbeat(c *client, f wire.Frame) error {
	if c.role != "member" {
		return fmt.Errorf("HEARTBEAT from a %s connection; only member agents send it", c.role)
	}
	n := c.member
	if n != nil && a.live != nil {
		a.live.heard(n, time.Now())
	}
	if len(f.Body) > 0 && n != nil {
		var s wire.NodeStats
		if err := f.Decode(&s); err != nil {
			return err
		}
		a.cfg.Observer.Heartbeat(n.id, s) // obs: the dashboard's and /metrics' node figures
	}
	if f.Seq == 0 {
		return nil
	}
	if n == nil {
		return c.conn.Send(wire.THeartbeat, f.Seq, nil)
	}
	return c.conn.Send(wire.THeartbeat, f.Seq, &wire.HeartbeatReply{FreeElsewhere: a.freeElsewhere(n)})
}

// headLiveness is the head agent's record of its members' heartbeats.
type headLiveness struct {
	*liveness[*node]
	quit  chan struct{}
	since func(time.Time) time.Duration // time.Since; tests replace it
}

// startLiveness starts the head's check of its members, every period until stopLiveness.
// Called before the agent accepts connections.
func (a *Agent) startLiveness() {
	h := a.cfg.Heartbeat.withDefaults()
	if h.Timeout <= 0 {
		return
	}
	a.live = &headLiveness{liveness: newLiveness[*node](h.Timeout), quit: make(chan struct{}), since: time.Since}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(h.Period)
		defer t.Stop()
		for {
			select {
			case <-a.live.quit:
				return
			case now := <-t.C:
				a.checkLiveness(now)
			}
		}
	}()
}

// stopLiveness ends the check (Close).
func (a *Agent) stopLiveness() {
	if a.live != nil {
		close(a.live.quit)
	}
}

// checkLiveness declares lost every member not heard from for longer than the timeout at now,
// as if its connection had closed (memberLost: its tasks retried, its actors restarted), and
// closes its connection and its workers' (their FIN will not come either). It returns the
// nodes it gave up.
func (a *Agent) checkLiveness(now time.Time) []string {
	if a.live == nil {
		return nil
	}
	a.mu.Lock()
	if a.closed || a.stopping { // members stopped by STOP go quiet while they kill their workers
		a.mu.Unlock()
		return nil
	}
	// A head agent that was stalled under its lock for more than a period judges no one this
	// round: the members' readers may have been waiting on the same lock with heartbeats
	// behind them. (For a made-up now, in tests, the wait is negative.)
	if a.live.since(now) > a.cfg.Heartbeat.withDefaults().Period {
		a.mu.Unlock()
		return nil
	}
	for _, n := range a.nodes {
		if n.member != nil && n.alive {
			a.live.track(n, now)
		} else {
			a.live.forget(n)
		}
	}
	silent := a.live.silent(now)
	var lost []string
	var conns []*wire.Conn
	nodes := make([]*node, 0, len(silent))
	for n := range silent {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].id < nodes[j].id })
	for _, n := range nodes {
		if !n.alive || n.member == nil {
			continue
		}
		a.log.Error("node lost: no heartbeat from its agent", "node", n.id, "silent_for", silent[n].Round(time.Millisecond).String(),
			"timeout", a.live.timeout.String())
		lost = append(lost, n.id)
		conns = append(conns, n.member.conn)
		for _, w := range a.workers {
			if w.node == n && w.client != nil {
				conns = append(conns, w.client.conn)
			}
		}
		n.lostWhy = fmt.Sprintf("no heartbeat from its agent for %s", silent[n].Round(time.Millisecond))
		a.memberLost(n)
	}
	a.mu.Unlock()
	for _, c := range conns {
		// abruptly: a graceful close would wait on a peer that does not read
		c.Net().Close()
	}
	return lost
}

// ---- the member's side

// beat sends HEARTBEAT, with the node's figures, every period (at most wire.HeartbeatMS: the
// head's dashboard reads them) and, where the head checks liveness, gives the head up after
// the timeout without an answer (beatOnce). It returns when stop closes or the head is lost.
func (m *Member) beat(h Heartbeat, stop <-chan struct{}) {
	period := wire.HeartbeatMS * time.Millisecond
	if m.beats != nil {
		m.beats.track("head", time.Now())
		period = min(period, h.Period)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if !m.beatOnce(now) {
				return
			}
		}
	}
}

// beatOnce is one period of beat at now: when the head has been silent for longer than the
// timeout it is given up (loseHead closes the connection, and Run returns the error) and
// beatOnce returns false; otherwise it sends the next HEARTBEAT.
func (m *Member) beatOnce(now time.Time) bool {
	if m.beats == nil { // the head checks no liveness: the figures only
		m.conn.Send(wire.THeartbeat, 0, m.nodeStats())
		return true
	}
	if m.handling.Load() {
		// Run is busy with a frame (a SPAWN's fork and exec, say), not reading: answers may be
		// waiting unread, so the head's silence is not counted while it is
		m.beats.heard("head", now)
	}
	if d, lost := m.beats.silent(now)["head"]; lost {
		m.loseHead(fmt.Errorf("%w: no answer from the head node's agent at %s for %s (timeout %s); the link or the head is down",
			ErrHeadLost, m.cfg.HeadAddr, d.Round(time.Millisecond), m.hb.Timeout))
		return false
	}
	m.hbSeq++
	m.conn.Send(wire.THeartbeat, m.hbSeq, m.nodeStats())
	return true
}

// loseHead records why the head is gone and closes the connection so that Run stops.
func (m *Member) loseHead(err error) {
	m.mu.Lock()
	if m.headErr == nil {
		m.headErr = err
	}
	m.mu.Unlock()
	m.log.Error("lost the head node; stopping this node's workers", "error", err)
	m.conn.Net().Close()
}

// headLost returns the error Run ends with when its read fails: the heartbeat's, if it gave
// the head up, or else one wrapping ErrHeadLost and the read's error.
func (m *Member) headLost(readErr error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.headErr != nil {
		return m.headErr
	}
	return fmt.Errorf("%w: %v", ErrHeadLost, readErr)
}
