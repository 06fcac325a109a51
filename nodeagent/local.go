package nodeagent

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Member-local scheduling, the head node's side (docs/architecture.md "Member-local
// scheduling"). A member runs the plain tasks its own workers submit on workers this agent
// leased to it; this agent stays the only one that hands out a node's resources and the one
// that keeps every object's references:
//
//	member ──LEASE_REQUEST{job, n}──> head: n lease tasks (one CPU each, hard affinity to the
//	  member's node) through the core ──Run──> EXEC{kind lease} to a worker there, which then
//	  asks its member for tasks (LEASE_NEXT) until the member ends the lease; its DONE frees it
//	submitter ──EXPECT{ids, node}──> head: the return values are expected, owned by the submitter
//	member ──LOCAL_DONE{rets}──> head: they are sealed (inline here, or in the member's store)
//
// EXPECT and LOCAL_DONE travel on different connections, so a value can arrive before it is
// expected: it waits in early until its EXPECT comes, or its submitter or node goes.

type expected struct {
	node  *node
	owner uint64 // the client that sent the EXPECT
	// cancel is a CANCEL of the task that came while its member was handing it back
	// (LOCAL_SPILL on its way): it is cancelled when it arrives
	cancel *wire.Cancel
}

type earlyRet struct {
	ret  wire.LocalRet
	node *node
}

// earlySpill is a task handed back (LOCAL_SPILL) before its submitter's EXPECT came (the two
// travel on different connections): it runs when the EXPECT comes.
type earlySpill struct {
	spec  wire.Task
	owner string // the worker that submitted it
}

// localState is the head's side of member-local tasks (a.mu held for all of it).
type localState struct {
	wait   map[wire.ID]expected // expected return values: the node that will send each, and who expects it
	asked  map[*node][]*task    // lease tasks not yet given a worker, by node
	early  map[wire.ID]earlyRet
	spills map[wire.ID]earlySpill // by return value id
	leases uint32                 // lease task ids issued
	prefix []byte
	tasks  uint64 // tasks members ran locally (their LOCAL_DONE counts)
}

func (a *Agent) localInit() {
	if a.local2.wait == nil {
		a.local2.wait = map[wire.ID]expected{}
		a.local2.asked = map[*node][]*task{}
		a.local2.early = map[wire.ID]earlyRet{}
		a.local2.spills = map[wire.ID]earlySpill{}
		a.local2.prefix = newPrefix()
	}
}

// handleLocal serves EXPECT and BLOCK (from a worker), LEASE_REQUEST, LOCAL_DONE and
// LOCAL_SPILL (from a member).
func (a *Agent) handleLocal(c *client, f wire.Frame) error {
	switch f.Type {
	case wire.TExpect:
		var m wire.Expect
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if c.job == nil || c.worker == nil {
			return fmt.Errorf("EXPECT from a connection that is not a worker")
		}
		a.localInit()
		nd := a.nodeByName(m.Node)
		for _, id := range m.IDs {
			a.store.Expect(id, c.id)
			if e, ok := a.local2.early[id]; ok {
				delete(a.local2.early, id)
				a.localFill(e.ret, e.node)
				continue
			}
			if sp, ok := a.local2.spills[id]; ok { // handed back before this EXPECT came
				delete(a.local2.spills, id)
				a.runSpilled(c, &sp.spec, nd)
				continue
			}
			if nd == nil || !nd.alive {
				a.localLost(id, fmt.Sprintf("node %s, which was to run the task, is not in the cluster (lost)", m.Node))
				continue
			}
			a.local2.wait[id] = expected{node: nd, owner: c.id}
		}
		return nil
	case wire.TBlock:
		var m wire.Block
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		w := c.worker
		if w == nil {
			return fmt.Errorf("BLOCK from a connection that is not a worker")
		}
		if m.On {
			if a.blockWorker(w) {
				w.localBlock = true
			}
		} else if w.localBlock {
			w.localBlock = false
			if w.blockW == nil {
				a.unblockWorker(w)
			}
		}
		return nil
	case wire.TLeaseRequest:
		var m wire.LeaseRequest
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if c.member == nil {
			return fmt.Errorf("LEASE_REQUEST from a connection that is not a member agent")
		}
		if m.N < 0 || m.N > 1024 || m.Drop < 0 {
			return fmt.Errorf("LEASE_REQUEST for %d workers (drop %d): at most 1024 at a time, none negative", m.N, m.Drop)
		}
		j := a.jobs[m.Job]
		if j == nil || j.ended {
			return nil // the job ended meanwhile: its member-local work goes with it
		}
		a.localInit()
		for i := 0; i < m.N; i++ {
			a.submitLease(c.member, j)
		}
		if m.N > 0 { // the member's queue grows: a fresh view for its next choices
			c.conn.Send(wire.THeartbeat, 0, &wire.HeartbeatReply{FreeElsewhere: a.freeElsewhere(c.member)})
		}
		if m.Drop > 0 {
			a.dropLeases(c.member, j, m.Drop)
		}
		return nil
	case wire.TLocalDone:
		var m wire.LocalDone
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if c.member == nil {
			return fmt.Errorf("LOCAL_DONE from a connection that is not a member agent")
		}
		a.localInit()
		a.local2.tasks += uint64(len(m.Tasks))
		a.observeLocal(c.member, m.Tasks)
		for _, r := range m.Rets {
			if e, ok := a.local2.wait[r.ID]; ok && e.node == c.member {
				delete(a.local2.wait, r.ID)
				a.localFill(r, c.member)
				continue
			}
			a.local2.early[r.ID] = earlyRet{ret: r, node: c.member}
		}
		return nil
	case wire.TLocalSpill:
		var m wire.LocalSpill
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if c.member == nil {
			return fmt.Errorf("LOCAL_SPILL from a connection that is not a member agent")
		}
		a.localInit()
		if len(m.Owners) != len(m.Tasks) {
			return fmt.Errorf("LOCAL_SPILL of %d tasks names %d owners", len(m.Tasks), len(m.Owners))
		}
		for i := range m.Tasks {
			a.localSpilled(c.member, &m.Tasks[i], m.Owners[i])
		}
		return nil
	}
	return fmt.Errorf("%w: unknown message type %d", wire.ErrCorruptFrame, f.Type)
}

// localSpilled takes task s, which member nd had queued and hands back (owner submitted it):
// it runs as if its submitter had sent SUBMIT, which holds its value's reference already
// (EXPECT). Before that EXPECT it waits for it; a task that is not one nd was to run (its
// submitter left, or nd was lost meanwhile) is dropped.
func (a *Agent) localSpilled(nd *node, s *wire.Task, owner string) {
	rid := s.Task.WithIndex(1)
	if s.Nret != 1 || s.Kind != wire.KindTask {
		return
	}
	e, ok := a.local2.wait[rid]
	if !ok {
		if a.workers[owner] != nil { // its EXPECT is on the way (dropped if the worker exits first)
			a.local2.spills[rid] = earlySpill{spec: *s, owner: owner}
		}
		return
	}
	if e.node != nd {
		return
	}
	delete(a.local2.wait, rid)
	c := a.conns[e.owner]
	if c == nil {
		return
	}
	if e.cancel != nil {
		a.localCancelled(rid, s.Name)
		return
	}
	a.runSpilled(c, s, nd)
}

// runSpilled submits task s, handed back by member nd, as client c's (its EXPECT holds the
// reference).
func (a *Agent) runSpilled(c *client, s *wire.Task, nd *node) {
	if c.job == nil || c.job.ended || c.worker == nil {
		return
	}
	s.Attempt = 0
	if err := a.submitTask(c, s, false); err != nil {
		a.log.Warn("a task handed back by its member", "task", s.Name, "node", nd.id, "error", err)
		if o := a.store.SetError(s.Task.WithIndex(1), errorData("infeasible", err.Error())); o != nil {
			a.sealed(o)
		}
	}
}

// localCancelled seals expected value id as its task's cancellation.
func (a *Agent) localCancelled(id wire.ID, name string) {
	if o := a.store.SetError(id, errorData("cancelled", name+" was cancelled before it ran")); o != nil {
		a.sealed(o)
	}
}

// localCancel notes CANCEL m of a task whose value is expected from a member: the member did
// not know it (the SDK asks it first), so it is on its way back here (LOCAL_SPILL) or done.
func (a *Agent) localCancel(c *client, m *wire.Cancel) {
	rid := m.Object.WithIndex(1)
	if e, ok := a.local2.wait[rid]; ok {
		if o := a.conns[e.owner]; o != nil && o.job != nil && o.job == c.job {
			e.cancel = m
			a.local2.wait[rid] = e
		}
	}
}

// observeLocal records tasks that member nd ran, as if this agent had run them.
func (a *Agent) observeLocal(nd *node, ts []wire.LocalTask) {
	r := a.cfg.Observer
	if r == nil {
		return
	}
	for _, t := range ts {
		e := obs.Event{Task: t.Task, Name: t.Name, Kind: obs.Kind(wire.KindTask), Job: t.Job, Attempt: t.Attempt}
		e.State = obs.Submitted
		r.TaskEvent(e)
		if t.Attempt > 0 { // its member ran it again after its worker died
			e.State = obs.Retrying
			r.TaskEvent(e)
		}
		e.State, e.Node, e.Worker, e.CPU = obs.Running, nd.id, t.Worker, 1
		r.TaskEvent(e)
		e.CPU = 0
		if t.Failed != "" {
			e.State, e.Reason = obs.Failed, t.Failed
		} else {
			e.State = obs.Finished
		}
		r.TaskEvent(e)
	}
}

// localClientGone forgets the values client c expected (their member drops the tasks of a
// submitter that left; the references went with c).
func (a *Agent) localClientGone(c *client) {
	for id, e := range a.local2.wait {
		if e.owner == c.id {
			delete(a.local2.wait, id)
		}
	}
}

// localWorkerGone drops what arrived for worker id's EXPECT, which will not come now.
func (a *Agent) localWorkerGone(id string) {
	for rid, sp := range a.local2.spills {
		if sp.owner == id {
			delete(a.local2.spills, rid)
		}
	}
	for oid, e := range a.local2.early {
		if e.ret.Owner == id {
			delete(a.local2.early, oid)
			if e.ret.Stored {
				a.freeAt(e.node.loc, oid)
			}
		}
	}
}

// localFill seals a member-local task's return value r, sent by node nd.
func (a *Agent) localFill(r wire.LocalRet, nd *node) {
	if r.Refs == nil {
		r.Refs = []wire.ID{}
	}
	// r may hold references to values whose EXPECT, sent on their submitter's connection, has
	// not arrived yet: they get an entry now, which r's pin keeps and the EXPECT then owns
	for _, ref := range r.Refs {
		if a.store.Lookup(ref) == nil {
			a.store.Expect(ref, 0)
			if e, ok := a.local2.early[ref]; ok {
				delete(a.local2.early, ref)
				a.localFill(e.ret, e.node)
			}
		}
	}
	if !r.Stored {
		if err := a.storeBytes(r.ID, r.Fmt, r.Data, r.Refs, 0); err != nil {
			a.log.Warn("store a member-local task's return value", "object", r.ID.String(), "node", nd.id, "error", err)
		}
		return
	}
	o := a.store.PutRemote(r.ID, r.Fmt, r.Size, r.Refs, 0, nd.loc)
	if o == nil {
		a.freeAt(nd.loc, r.ID) // nobody wants it any more
		return
	}
	a.addHolder(r.ID, nd.loc)
	a.sealed(o)
}

// localLost seals an expected member-local return value as lost.
func (a *Agent) localLost(id wire.ID, why string) {
	if o := a.store.SetError(id, errorData("worker_died", "the task of object "+id.String()+" ran on another node's agent: "+why)); o != nil {
		a.sealed(o)
	}
}

// localNodeLost fails what node n was to send, and drops what it sent early (memberLost).
func (a *Agent) localNodeLost(n *node) {
	delete(a.local2.asked, n)
	for id, e := range a.local2.wait {
		if e.node == n {
			delete(a.local2.wait, id)
			a.localLost(id, "node "+n.id+" was lost before the task's value reached the head node")
		}
	}
	for id, e := range a.local2.early {
		if e.node == n {
			delete(a.local2.early, id)
		}
	}
}

// submitLease makes a lease task of job j on member node nd and hands it to the core.
func (a *Agent) submitLease(nd *node, j *job) {
	a.local2.leases++
	var id wire.ID
	copy(id[:8], a.local2.prefix)
	binary.BigEndian.PutUint32(id[8:12], a.local2.leases)
	res := sched.Resources{"CPU": 1}
	t := &task{spec: &wire.Task{Task: id, Kind: wire.KindLease, Name: "shoal::lease", Lang: j.lang,
		Res: map[string]float64{"CPU": 1}}, owner: nd.member, job: j, res: res}
	a.tasks[id] = t
	a.nextTask++
	t.cid = sched.TaskID(a.nextTask)
	a.coreTasks[t.cid] = t
	a.local2.asked[nd] = append(a.local2.asked[nd], t)
	a.feed(sched.Submitted{Task: t.cid, Job: j.cid, Name: t.spec.Name, Res: res, Bundle: -1, Origin: nd.cid,
		Policy: &sched.Policy{Affinity: true, Node: nd.cid, NodeName: nd.id}})
}

// leaseRan notes that lease task t got its worker (core.go, Run).
func (a *Agent) leaseRan(t *task) {
	nd := t.owner.member
	q := a.local2.asked[nd]
	for i, x := range q {
		if x == t {
			a.local2.asked[nd] = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(a.local2.asked[nd]) == 0 {
		delete(a.local2.asked, nd)
	}
}

// leaseFailed tells lease task t's member that it failed before it got a worker (it will
// not come: the member's queue must not wait for it). A lease that ran (its worker died: the
// member saw that) or that the member dropped is not told of.
func (a *Agent) leaseFailed(t *task, kind, msg string) {
	nd := t.owner.member
	q, found := a.local2.asked[nd], false
	for i, x := range q {
		if x == t {
			a.local2.asked[nd], found = append(q[:i], q[i+1:]...), true
			break
		}
	}
	if len(a.local2.asked[nd]) == 0 {
		delete(a.local2.asked, nd)
	}
	if !found || t.cancelled || nd.member == nil {
		return
	}
	nd.member.conn.Send(wire.TLeaseFailed, 0, &wire.LeaseFailed{Job: t.job.id, Kind: kind, Msg: msg})
}

// dropLeases cancels up to n of job j's lease tasks for node nd that have no worker yet, the
// newest first: the member's queue emptied before they came.
func (a *Agent) dropLeases(nd *node, j *job, n int) {
	q := a.local2.asked[nd]
	for i := len(q) - 1; i >= 0 && n > 0; i-- {
		t := q[i]
		if t.job != j || t.worker != nil {
			continue
		}
		n--
		q = append(q[:i], q[i+1:]...)
		t.cancelled = true // not a failure to tell the member of (leaseFailed)
		a.feed(sched.Cancel{Task: t.cid})
	}
	a.local2.asked[nd] = q
	if len(q) == 0 {
		delete(a.local2.asked, nd)
	}
}

// lookFree records every node's free CPUs and their sum, for the members' choice between
// running a task and spilling it (heartbeat answers; a.mu held).
func (a *Agent) lookFree() {
	total := 0.0
	for _, n := range a.nodes {
		f := 0.0
		if n.alive {
			f = max(a.core.Avail(n.cid)["CPU"], 0)
		}
		n.freeCPU.Store(math.Float64bits(f))
		total += f
	}
	a.freeCPU.Store(math.Float64bits(total))
	// a member told at its last heartbeat that no other node had a free CPU may hold a queue
	// of up to spillAlways: it hears at once that one has, so that it hands the queue's tail
	// back (LOCAL_SPILL) without waiting for its next heartbeat's answer
	for _, n := range a.nodes {
		if n.member == nil || !n.alive || a.cfg.NoLocalTasks {
			continue
		}
		fe := a.freeElsewhere(n)
		if fe >= 1 && n.freeWas < 1 {
			n.member.conn.Send(wire.THeartbeat, 0, &wire.HeartbeatReply{FreeElsewhere: fe})
		}
		n.freeWas = fe
	}
}

// freeElsewhere is the free CPUs on nodes other than n at the last look (no lock).
func (a *Agent) freeElsewhere(n *node) float64 {
	return max(math.Float64frombits(a.freeCPU.Load())-math.Float64frombits(n.freeCPU.Load()), 0)
}

// nodeByName is the node named name, nil if none.
func (a *Agent) nodeByName(name string) *node {
	for _, n := range a.nodes {
		if n.id == name {
			return n
		}
	}
	return nil
}
