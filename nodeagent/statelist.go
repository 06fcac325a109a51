package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// The state API (STATE_LIST; docs/ray-introspection.md): one table at a time, rows keyed by
// Ray's field names (ray.util.state.common.*State), built from the core's snapshots
// (sched/state.go) and what the shell adds (names, pids, jobs, the actors' and objects' own
// tables); ended tasks come from the observability recorder, which keeps them. Filters and the
// limit are applied here, so the SDK and `shoal list` see the same rows.

// stateColumns are each table's columns that list shows and filters accept (Ray's "below
// columns can be used for the --filter option"); the rows carry more (detail=True).
var stateColumns = map[string][]string{
	wire.StateActors: {"actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace",
		"placement_group_id", "repr_name"},
	wire.StateTasks: {"task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type", "func_or_class_name",
		"parent_task_id", "node_id", "worker_id", "worker_pid", "error_type", "language", "placement_group_id"},
	wire.StateNodes: {"node_id", "node_ip", "is_head_node", "state", "state_message", "node_name", "resources_total",
		"labels"},
	wire.StateObjects: {"object_id", "object_size", "task_status", "attempt_number", "reference_type", "call_site", "type",
		"pid", "ip", "node_id"},
	wire.StatePlacementGroups: {"placement_group_id", "name", "creator_job_id", "state", "is_detached"},
	wire.StateWorkers:         {"worker_id", "is_alive", "worker_type", "exit_type", "node_id", "ip", "pid"},
	wire.StateJobs:            {"job_id", "status", "driver_pid", "driver_node_id"},
}

type stateRow = map[string]any

// stateList answers STATE_LIST.
func (a *Agent) stateList(c *client, seq uint64, m *wire.StateList) error {
	if a.head == nil {
		return c.conn.SendError(seq, "no_head", "this agent keeps no cluster state (it is a member); ask the head node's agent, whose address is the cluster's SHOAL_ADDRESS")
	}
	cols, ok := stateColumns[m.Kind]
	if !ok {
		kinds := make([]string, 0, len(stateColumns))
		for k := range stateColumns {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		return fmt.Errorf("state list of %q: no such table; pick one of %s", m.Kind, strings.Join(kinds, ", "))
	}
	if err := checkFilters(m.Kind, m.Filters, cols); err != nil {
		return err
	}
	var past []head.PlacementGroup
	if m.Kind == wire.StatePlacementGroups { // outside the agent's lock: the head has its own
		ctx, cancel := context.WithTimeout(context.Background(), stateWait)
		st, err := a.head.State(ctx)
		cancel()
		if err != nil {
			return c.conn.SendError(seq, "state", err.Error())
		}
		past = st.PlacementGroups
	}
	var rows []stateRow
	if m.Kind == wire.StateTasks {
		rows = a.listTasks() // takes the lock itself, twice
	}
	a.mu.Lock()
	switch m.Kind {
	case wire.StateActors:
		rows = a.actorRows()
	case wire.StateNodes:
		rows = a.nodeRows()
	case wire.StateObjects:
		rows = a.objectRows()
	case wire.StatePlacementGroups:
		rows = a.groupRows(past)
	case wire.StateWorkers:
		rows = a.workerRows()
	case wire.StateJobs:
		rows = a.jobRows()
	}
	a.mu.Unlock()
	out := rows[:0]
	for _, r := range rows {
		if matches(r, m.Filters) {
			out = append(out, r)
		}
	}
	total := len(out)
	if m.Limit > 0 && len(out) > m.Limit {
		out = out[:m.Limit]
	}
	if out == nil {
		out = []stateRow{}
	}
	data, err := json.Marshal(map[string]any{"rows": out, "total": total, "columns": cols})
	if err != nil {
		return fmt.Errorf("[internal error] encode the %s table: %w", m.Kind, err)
	}
	return c.conn.Send(wire.TOK, seq, &wire.StateListReply{Data: data})
}

func checkFilters(kind string, fs [][]string, cols []string) error {
	for _, f := range fs {
		if len(f) != 3 {
			return fmt.Errorf("state list of %s: a filter is (column, predicate, value), got %q", kind, f)
		}
		if f[1] != "=" && f[1] != "!=" {
			return fmt.Errorf("state list of %s: unsupported predicate %q in filter %q; use = or !=", kind, f[1], f)
		}
		known := false
		for _, c := range cols {
			known = known || c == f[0]
		}
		if !known {
			return fmt.Errorf("state list of %s: given filter column %q is not supported; available columns: %s", kind, f[0], strings.Join(cols, ", "))
		}
	}
	return nil
}

// matches says whether r passes every filter: values compare as strings, case-insensitively
// (true and True are one), as Ray's state API compares them; a missing value is "".
func matches(r stateRow, fs [][]string) bool {
	for _, f := range fs {
		eq := strings.EqualFold(valueString(r[f[0]]), f[2])
		if eq != (f[1] == "=") {
			return false
		}
	}
	return true
}

func valueString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// nullable is nil for "", so that JSON says null where Ray says None.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func idOrNil(id wire.ID) any {
	if id.IsZero() {
		return nil
	}
	return id.String()
}

func (a *Agent) nodeName(id sched.NodeID) any {
	if nd := a.nodeByCID(id); nd != nil {
		return nd.id
	}
	return nil
}

var actorStates = [...]string{"PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"}

func (a *Agent) actorRows() []stateRow {
	ids := make([]wire.ID, 0, len(a.actors))
	for id := range a.actors {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	rows := make([]stateRow, 0, len(ids))
	for _, id := range ids {
		ac := a.actors[id]
		r := stateRow{"actor_id": id.String(), "class_name": ac.create.spec.Name, "state": actorStates[ac.state],
			"name": ac.name, "ray_namespace": ac.ns, "node_id": nil, "pid": nil, "num_restarts": ac.restarts,
			"death_cause": nil, "is_detached": false, "repr_name": "", "placement_group_id": idOrNil(ac.create.spec.PG),
			"required_resources": map[string]float64(ac.create.res), "job_id": nil}
		if ac.job != nil {
			r["job_id"] = ac.job.id
		}
		if ac.death != "" {
			r["death_cause"] = map[string]any{"message": ac.death}
		}
		if ac.create.cid != 0 {
			if v, ok := a.core.Task(ac.create.cid); ok && v.Node != sched.NoNode {
				r["node_id"] = a.nodeName(v.Node)
			}
		}
		if w := ac.worker; w != nil && ac.state != actorDead {
			if r["node_id"] == nil && w.node != nil {
				r["node_id"] = w.node.id
			}
			if w.client != nil {
				r["pid"] = w.client.pid
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// taskName is a task's name as Ray's state API gives it: an actor's creation is
// "Class.__init__", "name:Class.__init__" for a named actor.
func taskName(kind int, name, actorName string) string {
	if kind != wire.KindActorCreate {
		return name
	}
	if actorName != "" {
		return actorName + ":" + name + ".__init__"
	}
	return name + ".__init__"
}

var taskTypes = [...]string{"NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK"}

func taskType(kind int) string {
	if kind >= 0 && kind < len(taskTypes) {
		return taskTypes[kind]
	}
	return "NORMAL_TASK"
}

// msOf is a recorder time (0 submitted, 1 started, 2 ended) in Unix ms, or nil.
func msOf(r *obs.Record, which int) any {
	if r == nil {
		return nil
	}
	t := [...]time.Time{r.Submit, r.Start, r.End}[which]
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// listTasks lists the live tasks (the shell's table, each normal task and actor creation as the
// core sees it), then the ended ones the recorder keeps. The live ones are read first, under the
// agent's lock, and the recorder after it, outside the lock (it may hold 100,000 records): the
// agent records a task's end before it forgets the task, so a task that ends in between is in
// the recorder's copy, and one in both is listed once, as live.
func (a *Agent) listTasks() []stateRow {
	a.mu.Lock()
	rows, ids := a.liveTaskRows()
	a.mu.Unlock()
	records, _ := a.cfg.Observer.Records()
	byID := make(map[wire.ID]*obs.Record, len(records))
	for i := range records {
		byID[records[i].Task] = &records[i]
	}
	seen := make(map[wire.ID]bool, len(ids))
	for i, id := range ids {
		seen[id] = true
		rec := byID[id]
		rows[i]["creation_time_ms"], rows[i]["start_time_ms"], rows[i]["end_time_ms"] = msOf(rec, 0), msOf(rec, 1), nil
	}
	a.mu.Lock()
	rows = append(rows, a.endedTaskRows(records, seen)...)
	a.mu.Unlock()
	return rows
}

// liveTaskRows returns the live tasks' rows and ids, in submission order per submitter (ids
// count up). The caller holds a.mu.
func (a *Agent) liveTaskRows() ([]stateRow, []wire.ID) {
	live := make([]*task, 0, len(a.tasks))
	for _, t := range a.tasks {
		if t.spec.Kind != wire.KindLease { // a member's lease (local.go) is not the user's task
			live = append(live, t)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].spec.Task.String() < live[j].spec.Task.String() })
	rows := make([]stateRow, 0, len(live))
	ids := make([]wire.ID, 0, len(live))
	for _, t := range live {
		ids = append(ids, t.spec.Task)
		s := t.spec
		r := stateRow{"task_id": s.Task.String(), "attempt_number": s.Attempt, "name": taskName(s.Kind, s.Name, s.AName),
			"job_id": nil, "actor_id": idOrNil(s.Actor), "type": taskType(s.Kind), "func_or_class_name": taskName(s.Kind, s.Name, ""),
			"parent_task_id": nil, "node_id": nil, "worker_id": nil, "worker_pid": nil, "error_type": nil,
			"language": strings.ToUpper(s.Lang), "placement_group_id": idOrNil(s.PG),
			"required_resources": map[string]float64(t.res)}
		if s.Kind == wire.KindActorMethod {
			r["actor_id"] = s.Actor.String()
		}
		if t.job != nil {
			r["job_id"] = t.job.id
		}
		state := sched.StatePendingArgs
		if t.pendingDeps == 0 {
			state = sched.StatePendingNode
		}
		var w *worker
		if t.cid != 0 {
			if v, ok := a.core.Task(t.cid); ok {
				state = v.State
				r["attempt_number"] = int(v.Attempt)
				r["node_id"] = a.nodeName(v.Node)
				if p := a.coreTasks[v.Parent]; p != nil {
					r["parent_task_id"] = p.spec.Task.String()
				}
				if s.Kind == wire.KindActorCreate && t.actor != nil && t.actor.state == actorAlive {
					state = sched.StateFinished // the constructor ran; the actor lives on
				}
			}
			w = t.worker
		} else if s.Kind == wire.KindActorMethod && t.actor != nil {
			for _, x := range t.actor.inflight {
				if x == t {
					state, w = sched.StateRunning, t.worker
				}
			}
			if state != sched.StateRunning && t.pendingDeps == 0 {
				state = "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
			}
		}
		if w != nil {
			r["worker_id"] = w.id
			if w.node != nil {
				r["node_id"] = w.node.id
			}
			if w.client != nil {
				r["worker_pid"] = w.client.pid
			}
		}
		r["state"] = state
		rows = append(rows, r)
	}
	return rows, ids
}

// endedTaskRows returns the rows of the recorder's ended tasks not in seen. The caller holds
// a.mu (for the actors' names and the workers' pids).
func (a *Agent) endedTaskRows(records []obs.Record, seen map[wire.ID]bool) []stateRow {
	var rows []stateRow
	for i := range records {
		rec := &records[i]
		if seen[rec.Task] || rec.End.IsZero() {
			continue
		}
		aname := ""
		if ac := a.actors[rec.Actor]; ac != nil {
			aname = ac.name
		}
		r := stateRow{"task_id": rec.Task.String(), "attempt_number": rec.Attempt, "name": taskName(int(rec.Kind), rec.Name, aname),
			"job_id": nullable(rec.Job), "actor_id": idOrNil(rec.Actor), "type": taskType(int(rec.Kind)),
			"func_or_class_name": taskName(int(rec.Kind), rec.Name, ""),
			"parent_task_id":     nil, "node_id": nullable(rec.Node), "worker_id": nullable(rec.Worker), "worker_pid": nil,
			"error_type": nil, "language": "PYTHON", "placement_group_id": nil, "required_resources": nil,
			"creation_time_ms": msOf(rec, 0), "start_time_ms": msOf(rec, 1), "end_time_ms": msOf(rec, 2)}
		if w := a.workers[rec.Worker]; w != nil && w.client != nil {
			r["worker_pid"] = w.client.pid
		}
		switch rec.State {
		case obs.Finished:
			r["state"] = sched.StateFinished
		default:
			r["state"] = sched.StateFailed
			r["error_type"] = errorType(rec.Reason)
			r["error_message"] = nullable(rec.Reason)
		}
		rows = append(rows, r)
	}
	return rows
}

// errorType names a failure as Ray's TaskState.error_type does, from the recorder's reason.
func errorType(reason string) string {
	switch {
	case strings.Contains(reason, "cancel"):
		return "TASK_CANCELLED"
	case strings.Contains(reason, "worker"):
		return "WORKER_DIED"
	case strings.Contains(reason, "actor"):
		return "ACTOR_DIED"
	case strings.Contains(reason, "infeasible"):
		return "TASK_UNSCHEDULABLE_ERROR"
	}
	return "TASK_EXECUTION_EXCEPTION"
}

// hostOf is the IP (or host) of a "tcp:HOST:PORT" address; "" for none.
func hostOf(addr string) string {
	addr = strings.TrimPrefix(addr, "tcp:")
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return ""
}

func (a *Agent) nodeIP(nd *node) string {
	if nd == nil {
		return ""
	}
	for _, addr := range []string{nd.addr, nd.loc} { // a member's own listener, else its transfer address
		if h := hostOf(addr); h != "" {
			return h
		}
	}
	if nd == a.local {
		return "127.0.0.1" // a cluster without TCP is this machine alone
	}
	return ""
}

func (a *Agent) nodeRows() []stateRow {
	views := a.core.Nodes()
	rows := make([]stateRow, 0, len(views))
	for _, v := range views {
		nd := a.nodeByCID(v.ID)
		if nd == nil {
			continue
		}
		state, msg := "ALIVE", any(nil)
		if !v.Alive {
			state = "DEAD"
			msg = nullable(nd.lostWhy)
		}
		r := stateRow{"node_id": nd.id, "node_ip": a.nodeIP(nd), "is_head_node": nd == a.local, "state": state,
			"state_message": msg, "node_name": nd.id, "resources_total": map[string]float64(v.Total),
			"resources_available": map[string]float64(v.Available), "labels": map[string]string{},
			"start_time_ms": nd.joined.UnixMilli(), "end_time_ms": nil}
		rows = append(rows, r)
	}
	return rows
}

// objectRows lists the head node's store: objects whose bytes are here, and those whose bytes
// live on another node (loc); each row names who holds a reference.
func (a *Agent) objectRows() []stateRow {
	byLoc := map[string]*node{}
	for _, nd := range a.nodes {
		if nd.loc != "" {
			byLoc[nd.loc] = nd
		}
	}
	list := a.store.List()
	rows := make([]stateRow, 0, len(list))
	for _, o := range list {
		status := "FINISHED"
		switch o.State {
		case objstore.Pending:
			status = "PENDING"
		case objstore.Created:
			status = "CREATING"
		}
		// Ray's reference types: held by a process's ObjectRef, pinned by a task that waits for
		// it (or an object holding it), or mapped by a reader (its memory pinned)
		ref := "UNKNOWN"
		switch {
		case len(o.Holders) > 0:
			ref = "LOCAL_REFERENCE"
		case o.Pins > 0:
			ref = "USED_BY_PENDING_TASK"
		case o.Uses > 0:
			ref = "PINNED_IN_MEMORY"
		}
		nd := a.local
		if o.Loc != "" {
			nd = byLoc[o.Loc]
		}
		r := stateRow{"object_id": o.ID.String(), "object_size": o.Size, "task_status": status, "reference_type": ref,
			"type": nil, "pid": nil, "ip": nil, "node_id": nil, "spilled": o.Spilled, "call_site": "disabled",
			"attempt_number": nil}
		if nd != nil {
			r["node_id"], r["ip"] = nd.id, a.nodeIP(nd)
		}
		if len(o.Holders) > 0 {
			if c := a.conns[o.Holders[0]]; c != nil {
				r["pid"] = c.pid
				r["type"] = strings.ToUpper(c.role)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// groupRows: the live groups (the shell's and the core's tables), then the removed ones, which
// only the head's table keeps.
func (a *Agent) groupRows(past []head.PlacementGroup) []stateRow {
	ids := make([]wire.ID, 0, len(a.pgs))
	for id := range a.pgs {
		ids = append(ids, id)
	}
	views := map[sched.GroupID]sched.GroupView{}
	for _, v := range a.core.Groups() {
		views[v.ID] = v
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	rows := make([]stateRow, 0, len(ids))
	for _, id := range ids {
		pg := a.pgs[id]
		state := "REMOVED"
		bundles := make([]map[string]any, len(pg.bundles))
		for i, b := range pg.bundles {
			bundles[i] = map[string]any{"bundle_id": fmt.Sprintf("%s_%d", id, i), "node_id": nil, "unit_resources": map[string]float64(b)}
		}
		if v, ok := views[pg.cid]; ok {
			state = v.State // the core spells them as Ray does
			for i, n := range v.Nodes {
				if i < len(bundles) && n != sched.NoNode {
					bundles[i]["node_id"] = a.nodeName(n)
				}
			}
		} else if pg.state == pgPending {
			state = "PENDING"
		}
		r := stateRow{"placement_group_id": id.String(), "name": pg.name, "creator_job_id": nil, "state": state,
			"is_detached": false, "strategy": string(pg.strategy), "bundles": bundles}
		if pg.job != nil {
			r["creator_job_id"] = pg.job.id
		}
		rows = append(rows, r)
	}
	live := map[string]bool{}
	for _, id := range ids {
		live[id.String()] = true
	}
	for _, g := range past {
		if live[g.ID] {
			continue
		}
		state := g.State
		if state == "INFEASIBLE" {
			state = "REMOVED" // Ray's states have no INFEASIBLE: the group never will be placed
		}
		bundles := make([]map[string]any, len(g.Bundles))
		for i, b := range g.Bundles {
			bundles[i] = map[string]any{"bundle_id": fmt.Sprintf("%s_%d", g.ID, i), "node_id": nil, "unit_resources": b}
		}
		rows = append(rows, stateRow{"placement_group_id": g.ID, "name": g.Name, "creator_job_id": nullable(g.Job),
			"state": state, "is_detached": false, "strategy": g.Strategy, "bundles": bundles})
	}
	return rows
}

// workerRows: the drivers (one per job), then the worker processes the core counts.
func (a *Agent) workerRows() []stateRow {
	var rows []stateRow
	for _, j := range a.sortedJobs() {
		if j.driver == nil {
			continue
		}
		rows = append(rows, stateRow{"worker_id": driverID(j), "is_alive": !j.ended, "worker_type": "DRIVER",
			"exit_type": nil, "node_id": a.local.id, "ip": a.nodeIP(a.local), "pid": j.driver.pid, "job_id": j.id,
			"state": nil})
		if j.ended {
			rows[len(rows)-1]["exit_type"] = "INTENDED_USER_EXIT"
		}
	}
	byCID := map[sched.WorkerID]*worker{}
	for _, w := range a.workers {
		byCID[w.cid] = w
	}
	for _, v := range a.core.Workers() {
		w := byCID[v.ID]
		if w == nil {
			continue
		}
		r := stateRow{"worker_id": w.id, "is_alive": v.State != "DEAD", "worker_type": "WORKER", "exit_type": nil,
			"node_id": a.nodeName(v.Node), "ip": a.nodeIP(a.nodeByCID(v.Node)), "pid": nil, "job_id": nil, "state": v.State}
		if w.job != nil {
			r["job_id"] = w.job.id
		}
		if w.client != nil {
			r["pid"] = w.client.pid
		}
		rows = append(rows, r)
	}
	return rows
}

// driverID is a driver's worker id as get_runtime_context().get_worker_id() gives it in the
// driver: "driver-" and its job id.
func driverID(j *job) string { return "driver-" + j.id }

func (a *Agent) sortedJobs() []*job {
	js := make([]*job, 0, len(a.jobs))
	for _, j := range a.jobs {
		js = append(js, j)
	}
	sort.Slice(js, func(i, k int) bool { return js[i].cid < js[k].cid })
	return js
}

func (a *Agent) jobRows() []stateRow {
	var rows []stateRow
	for _, j := range a.sortedJobs() {
		r := stateRow{"job_id": j.id, "status": "RUNNING", "driver_pid": nil, "driver_node_id": a.local.id, "entrypoint": j.exe}
		if j.ended {
			r["status"] = "SUCCEEDED"
		}
		if j.driver != nil {
			r["driver_pid"] = j.driver.pid
		}
		rows = append(rows, r)
	}
	return rows
}

// connContext answers CONTEXT: who c is (get_runtime_context in a driver).
func (a *Agent) connContext(c *client, seq uint64) error {
	a.mu.Lock()
	r := wire.ContextReply{Node: a.cfg.NodeID}
	if c.job != nil {
		r.Job = c.job.id
	}
	if w := c.worker; w != nil {
		r.Worker = w.id
		if w.node != nil {
			r.Node = w.node.id
		}
	} else if c.role == "driver" && c.job != nil {
		r.Worker = driverID(c.job)
	}
	a.mu.Unlock()
	return c.conn.Send(wire.TOK, seq, &r)
}
