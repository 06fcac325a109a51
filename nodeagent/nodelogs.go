package nodeagent

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/wire"
)

// Worker output kept on its node (docs/observability.md "Worker output"):
//
//	member:  worker line ──> memberLogs.ring (bounded) ──(job's driver prints lines, or did
//	         not register)──> LOG to the head
//	head:    OBSERVE logs ──> its own ring + LOG_QUERY to each member ──> LOG_PAGE ──> Merge
//	         OBSERVE driver ──> LOG_CONFIG {jobs} to every member (and to each as it joins)

// logQueryTimeout is how long the head waits for a member's LOG_PAGE before it reports the
// member as not answering.
const logQueryTimeout = 5 * time.Second

// memberLogs is a member agent's ring of its workers' lines and which jobs' lines the head
// wants in LOG frames. The ring is made at the head's first LOG_CONFIG: a head that records
// nothing (--observability=off) sends none, and its members keep nothing.
type memberLogs struct {
	mu   sync.Mutex
	ring *obs.Ring
	jobs map[string]bool // job -> the head wants its lines (its driver prints them)
}

func newMemberLogs() *memberLogs { return &memberLogs{jobs: map[string]bool{}} }

// route returns the ring (nil: none yet) and whether the head wants job's lines: yes unless
// its driver registered without log_to_driver (a job not named: its driver registered
// nothing, and the head echoes them).
func (g *memberLogs) route(job string) (*obs.Ring, bool) {
	if g == nil { // a Member made without Join (tests) keeps nothing
		return nil, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	want, named := g.jobs[job]
	return g.ring, want || !named
}

func (g *memberLogs) stats() obs.RingStats {
	r, _ := g.route("")
	if r == nil {
		return obs.RingStats{}
	}
	return r.Stats()
}

// memberLine keeps a line of this member's worker and sends it to the head where wanted.
func (m *Member) memberLine(l obs.Line) {
	ring, push := m.logs.route(l.Job)
	if ring != nil {
		l = ring.Add(l)
	}
	if push {
		m.conn.Send(wire.TLog, 0, &wire.LogLines{Lines: []wire.LogLine{lineToWire(l)}})
	}
}

func lineToWire(l obs.Line) wire.LogLine {
	return wire.LogLine{Seq: l.Seq, TimeNS: l.Time.UnixNano(), Job: l.Job, Worker: l.Worker, PID: l.PID,
		Stream: l.Stream, Task: l.Task, Actor: l.Actor, Name: l.Name, Text: l.Text}
}

func lineFromWire(node string, l wire.LogLine) obs.Line {
	return obs.Line{Seq: l.Seq, Time: time.Unix(0, l.TimeNS), Node: node, Job: l.Job, Worker: l.Worker, PID: l.PID,
		Stream: l.Stream, Task: l.Task, Actor: l.Actor, Name: l.Name, Text: l.Text}
}

// handleLogs answers the head's LOG_QUERY and takes its LOG_CONFIG (on Run's goroutine: a
// page is a copy out of the ring, bounded by the query).
func (m *Member) handleLogs(f wire.Frame) error {
	if m.logs == nil {
		return nil
	}
	switch f.Type {
	case wire.TLogConfig:
		var c wire.LogConfig
		if err := f.Decode(&c); err != nil {
			return err
		}
		m.logs.mu.Lock()
		if m.logs.ring == nil {
			m.logs.ring = obs.NewRing(c.MaxLines, c.MaxBytes)
		} else {
			m.logs.ring.SetBound(c.MaxLines, c.MaxBytes)
		}
		m.logs.jobs = c.Jobs
		if m.logs.jobs == nil {
			m.logs.jobs = map[string]bool{}
		}
		m.logs.mu.Unlock()
		return nil
	case wire.TLogQuery:
		var q wire.LogQuery
		if err := f.Decode(&q); err != nil {
			return err
		}
		ring, _ := m.logs.route("")
		if ring == nil {
			ring = obs.NewRing(1, 1) // no LOG_CONFIG yet: nothing kept
		}
		out := answerLogQuery(ring, &q)
		return m.conn.Send(wire.TLogPage, f.Seq, &out)
	}
	return nil
}

// answerLogQuery is a member's page for q: at most obs.PageLines lines and about
// obs.PageBytes, whatever q asks.
func answerLogQuery(g *obs.Ring, q *wire.LogQuery) wire.LogPage {
	maxLines, maxBytes := q.Max, q.MaxBytes
	if maxLines <= 0 || maxLines > obs.PageLines {
		maxLines = obs.PageLines
	}
	if maxBytes <= 0 || maxBytes > obs.PageBytes {
		maxBytes = obs.PageBytes
	}
	p := g.Page(obs.LogFilter{Job: q.Job, Task: q.Task, Actor: q.Actor, Worker: q.Worker}, q.Since, maxLines, maxBytes)
	out := wire.LogPage{Lines: make([]wire.LogLine, 0, len(p.Lines)), Next: p.Next, More: p.More, Dropped: p.Dropped}
	for _, l := range p.Lines {
		out.Lines = append(out.Lines, lineToWire(l))
	}
	return out
}

// logStats fills a member's heartbeat with its ring's figures.
func (m *Member) logStats(s *wire.NodeStats) {
	if m.logs == nil {
		return
	}
	st := m.logs.stats()
	s.LogLines, s.LogBytes, s.LogDropped = st.Lines, st.Bytes, st.Dropped
}

// logQueries are the head's LOG_QUERYs waiting for their LOG_PAGE, by seq (Agent.logq).
type logQueries struct {
	seq     atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan wire.LogPage
}

// logPage takes a member's LOG_PAGE to the query that waits for it (none: it came too late).
func (a *Agent) logPage(c *client, f wire.Frame) error {
	var p wire.LogPage
	if err := f.Decode(&p); err != nil {
		return err
	}
	if c.member == nil {
		return errors.New("LOG_PAGE from a connection that is not a member agent")
	}
	q := &a.logq
	q.mu.Lock()
	ch := q.waiting[f.Seq]
	delete(q.waiting, f.Seq)
	q.mu.Unlock()
	if ch != nil {
		ch <- p // buffered
	}
	return nil
}

// logConfig is what the head tells members about their rings and its drivers.
func (a *Agent) logConfig() *wire.LogConfig {
	lines, bytes := a.cfg.Observer.LogBound()
	return &wire.LogConfig{MaxLines: lines, MaxBytes: bytes, Jobs: a.cfg.Observer.Drivers()}
}

// logJoined tells a member that joined its ring's bound and which jobs' lines to send (a.mu
// held: no SPAWN can go before it).
func (a *Agent) logJoined(c *client) {
	if a.cfg.Observer == nil || c == nil || c.member == nil {
		return
	}
	c.conn.Send(wire.TLogConfig, 0, a.logConfig())
}

// logDriversChanged tells every member which jobs' lines to send, after a driver registered
// (on the driver's goroutine, before it submits: its tasks' SPAWNs go after this on each
// member's connection).
func (a *Agent) logDriversChanged() {
	cfg := a.logConfig()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.nodes {
		if n.member != nil && n.alive {
			n.member.conn.Send(wire.TLogConfig, 0, cfg)
		}
	}
}

// ClusterLogs answers a log query from every node (or the one f.Node names): this node's ring
// and each member's, asked in parallel, merged by time. A member gone (or not answering) is
// named in the answer's Gone.
func (a *Agent) ClusterLogs(f obs.LogFilter, cur obs.Cursor, maxLines int) (obs.Merged, error) {
	r := a.cfg.Observer
	if maxLines <= 0 || maxLines > obs.PageLines {
		maxLines = obs.PageLines
	}
	type target struct {
		id     string
		member *client
		alive  bool
	}
	var targets []target
	a.mu.Lock()
	local := a.cfg.NodeID
	for _, n := range a.nodes {
		if f.Node == "" || n.id == f.Node {
			targets = append(targets, target{n.id, n.member, n.alive})
		}
	}
	a.mu.Unlock()
	if f.Node != "" && len(targets) == 0 {
		return obs.Merged{}, fmt.Errorf("no node %q in this cluster (`shoal status` lists its nodes)", f.Node)
	}
	pages := make([]obs.NodePage, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		since := cur[t.id]
		pages[i].Node = t.id
		switch {
		case t.id == local || t.member == nil:
			pages[i].LogPage = r.LogPage(f, since, maxLines, obs.PageBytes)
		case !t.alive:
			pages[i].Gone, pages[i].Err = true, "its agent is gone, and the lines it kept with it"
		default:
			wg.Add(1)
			go func(p *obs.NodePage, c *client) {
				defer wg.Done()
				got, err := a.queryMember(c, wire.LogQuery{Job: f.Job, Task: f.Task, Actor: f.Actor, Worker: f.Worker,
					Since: since, Max: maxLines, MaxBytes: obs.PageBytes})
				if err != nil {
					p.Gone, p.Err = true, err.Error()
					return
				}
				p.LogPage = obs.LogPage{Lines: make([]obs.Line, 0, len(got.Lines)), Next: got.Next, More: got.More, Dropped: got.Dropped}
				for _, l := range got.Lines {
					p.Lines = append(p.Lines, lineFromWire(p.Node, l))
				}
			}(&pages[i], t.member)
		}
	}
	wg.Wait()
	sort.Slice(pages, func(i, j int) bool { return pages[i].Node < pages[j].Node })
	return obs.Merge(cur, pages), nil
}

// queryMember sends a LOG_QUERY to a member and waits for its LOG_PAGE.
func (a *Agent) queryMember(c *client, q wire.LogQuery) (wire.LogPage, error) {
	lq := &a.logq
	seq := lq.seq.Add(1)
	ch := make(chan wire.LogPage, 1)
	lq.mu.Lock()
	if lq.waiting == nil {
		lq.waiting = map[uint64]chan wire.LogPage{}
	}
	lq.waiting[seq] = ch
	lq.mu.Unlock()
	defer func() {
		lq.mu.Lock()
		delete(lq.waiting, seq)
		lq.mu.Unlock()
	}()
	if err := c.conn.Send(wire.TLogQuery, seq, &q); err != nil {
		return wire.LogPage{}, fmt.Errorf("its agent is gone (%v), and the lines it kept with it", err)
	}
	timeout := time.NewTimer(logQueryTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case p := <-ch:
			return p, nil
		case <-tick.C: // a member lost while we wait answers no more
			if !a.memberAlive(c) {
				return wire.LogPage{}, errors.New("its agent is gone, and the lines it kept with it")
			}
		case <-timeout.C:
			return wire.LogPage{}, fmt.Errorf("its agent did not answer in %v; its lines are not shown", logQueryTimeout)
		}
	}
}

// memberAlive says whether c is the connection of a member node still in the cluster.
func (a *Agent) memberAlive(c *client) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.nodes {
		if n.member == c {
			return n.alive
		}
	}
	return false
}

var _ obs.LogSource = (*Agent)(nil)
