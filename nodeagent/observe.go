package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/wire"
)

// What the observability package (nodeagent/obs) sees of the agent. The core reports task
// state changes through observe, one call at each change (marked "obs:" where it is made):
//
//	submit ──> Submitted   exec ──> Running   done ──> Finished/Failed
//	fail ──> Failed        workerLost (retries left) ──> Retrying
//
// and obs reads the rest (nodes, actors, groups, workers, stores) through Snapshot, which
// takes the agent's lock only to copy.

// observe reports a change of t's state to the recorder; without one (observability off) it
// costs a nil check.
func (a *Agent) observe(t *task, s obs.State, reason string) {
	r := a.cfg.Observer
	if r == nil || t.spec.Kind == wire.KindLease { // a member's lease (local.go) is not the user's task
		return
	}
	e := obs.Event{Task: t.spec.Task, Name: t.spec.Name, Kind: obs.Kind(t.spec.Kind), State: s,
		Actor: t.spec.Actor, Attempt: t.spec.Attempt, Reason: reason}
	if t.job != nil {
		e.Job = t.job.id
	}
	if w := t.worker; w != nil {
		e.Worker = w.id
		if w.node != nil {
			e.Node = w.node.id
		}
	}
	if s == obs.Running {
		e.CPU, e.GPU = t.res["CPU"], t.res["GPU"]
	}
	r.TaskEvent(e)
}

var _ obs.Source = (*Agent)(nil)

// Snapshot copies the cluster's state for the dashboard, /metrics and the report.
func (a *Agent) Snapshot() obs.Snapshot {
	load := readLoad1("/proc/loadavg")
	a.mu.Lock()
	defer a.mu.Unlock()
	s := obs.Snapshot{Cluster: a.cfg.ClusterID, Time: time.Now(), Jobs: len(a.jobs)}
	beats := a.cfg.Observer.Heartbeats()
	for _, n := range a.nodes {
		on := obs.Node{ID: n.id, Addr: n.addr, Alive: n.alive, Head: n.member == nil, Joined: n.joined,
			Total: map[string]float64(n.total.Clone()), Available: map[string]float64{}, GPUs: append([]int(nil), n.gpus...)}
		if n.alive {
			for k, v := range a.core.Avail(n.cid) {
				on.Available[k] = max(v, 0)
			}
			free := map[int]bool{}
			for _, g := range a.core.FreeGPUs(n.cid) {
				free[g] = true
			}
			for _, g := range n.gpus {
				if !free[g] {
					on.GPUsUsed = append(on.GPUsUsed, g)
				}
			}
		}
		sort.Ints(on.GPUsUsed)
		if len(n.gpus) > 0 && on.Total["GPU"] == 0 {
			on.Total["GPU"] = float64(len(n.gpus))
			on.Available["GPU"] = float64(len(n.gpus) - len(on.GPUsUsed))
		}
		if n == a.local {
			st := a.cfg.Observer.LogStats()
			on.LogLines, on.LogBytes, on.LogDropped = st.Lines, st.Bytes, st.Dropped
			on.Load1 = load
			on.Store = storeOf(a.store.Stats())
			if a.xfer != nil {
				on.SentBytes, on.ReceivedBytes = a.xfer.sent.Load(), a.xfer.received.Load()
			}
		} else if b, ok := beats[n.id]; ok {
			on.Load1 = b.Stats.Load1
			on.Store = storeOf(b.Stats.Store)
			on.SentBytes, on.ReceivedBytes = b.Stats.Sent, b.Stats.Received
			on.Heartbeats, on.LastHeartbeat = b.Count, b.Last
			on.LogLines, on.LogBytes, on.LogDropped = b.Stats.LogLines, b.Stats.LogBytes, b.Stats.LogDropped
		}
		s.Nodes = append(s.Nodes, on)
	}
	for _, ac := range a.actors {
		oa := obs.Actor{ID: ac.id.String(), Name: ac.name, State: actorStateNames[ac.state], Restarts: ac.restarts}
		if ac.create != nil {
			oa.Class = ac.create.spec.Name
		}
		if ac.job != nil {
			oa.Job = ac.job.id
		}
		if w := ac.worker; w != nil {
			oa.Worker = w.id
			if w.node != nil {
				oa.Node = w.node.id
			}
		}
		s.Actors = append(s.Actors, oa)
	}
	sort.Slice(s.Actors, func(i, j int) bool { return s.Actors[i].ID < s.Actors[j].ID })
	for _, pg := range a.pgs {
		g := obs.Group{ID: pg.id.String(), Name: pg.name, Strategy: string(pg.strategy), State: [...]string{"PENDING", "CREATED", "REMOVED"}[pg.state]}
		for _, n := range pg.nodes {
			if n != nil {
				g.Nodes = append(g.Nodes, n.id)
			}
		}
		s.Groups = append(s.Groups, g)
	}
	sort.Slice(s.Groups, func(i, j int) bool { return s.Groups[i].ID < s.Groups[j].ID })
	for _, w := range a.workers {
		if w.dead {
			continue
		}
		ow := obs.Worker{ID: w.id, GPUs: append([]int(nil), w.gpus...)}
		if w.node != nil {
			ow.Node = w.node.id
		}
		if w.job != nil {
			ow.Job = w.job.id
		}
		if w.client != nil {
			ow.PID = w.client.pid
		}
		if w.task != nil {
			ow.Task = w.task.spec.Name
		}
		if w.actor != nil {
			ow.Actor = w.actor.id.String()
		}
		s.Workers = append(s.Workers, ow)
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].ID < s.Workers[j].ID })
	return s
}

func storeOf(st wire.StoreStats) obs.Store {
	return obs.Store{Objects: st.Objects, Bytes: st.Bytes, Capacity: st.Capacity, Spilled: st.Spilled, SpilledBytes: st.SpilledBytes}
}

// readLoad1 reads the 1-minute load average from a /proc/loadavg file (0 when unreadable).
func readLoad1(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// ErrObservabilityOff answers an OBSERVE to an agent that records nothing.
var ErrObservabilityOff = errors.New("observability is off in this cluster (it was started with --observability=off or SHOAL_OBSERVABILITY=off)")

// handleObserve answers OBSERVE and takes a member's LOG lines and a rank's COLL_STATS.
func (a *Agent) handleObserve(c *client, f wire.Frame) error {
	switch f.Type {
	case wire.TCollStats:
		var m wire.CollStats
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.cfg.Observer.Collectives(m)
		return nil
	case wire.TLog:
		var m wire.LogLines
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		n := c.member
		a.mu.Unlock()
		if n == nil {
			return errors.New("LOG from a connection that is not a member agent")
		}
		for _, l := range m.Lines {
			line := obs.Line{Time: time.Unix(0, l.TimeNS), Node: n.id, Job: l.Job, Worker: l.Worker, PID: l.PID,
				Stream: l.Stream, Task: l.Task, Actor: l.Actor, Name: l.Name, Text: l.Text}
			if a.cfg.Observer == nil {
				a.echo(line)
			} else {
				a.cfg.Observer.AddMemberLog(line) // the member keeps it (nodelogs.go)
			}
		}
		return nil
	case wire.TLogPage:
		return a.logPage(c, f)
	case wire.TObserve:
		var m wire.Observe
		if err := f.Decode(&m); err != nil {
			return err
		}
		r := a.cfg.Observer
		if r == nil {
			return c.conn.SendError(f.Seq, "observability_off", ErrObservabilityOff.Error())
		}
		var data []byte
		var err error
		switch m.What {
		case wire.ObserveDashboard:
			url, token := r.Dashboard()
			if url == "" {
				return c.conn.SendError(f.Seq, "no_dashboard", "this cluster's head serves no dashboard (it could not listen; see its log)")
			}
			data, _ = json.Marshal(map[string]string{"url": url, "token": token})
		case wire.ObserveTimeline:
			data = r.TimelineJSON()
		case wire.ObserveReport:
			data, _ = json.Marshal(r.Report())
		case wire.ObserveLogs:
			if data, err = a.observeLogs(&m); err != nil {
				return c.conn.SendError(f.Seq, "bad_request", err.Error())
			}
		case wire.ObserveDriverLogs:
			lines, next := r.DriverLogs(m.Job, m.Since, m.Max)
			data, _ = json.Marshal(map[string]any{"lines": lines, "next": next})
		case wire.ObserveDriver:
			a.mu.Lock()
			j := c.job
			a.mu.Unlock()
			if c.role != "driver" || j == nil {
				return errors.New("OBSERVE driver: only a driver's own connection registers its job")
			}
			r.RegisterDriver(j.id, m.LogToDriver)
			a.logDriversChanged() // members send the head this job's lines only if it prints them
			data, _ = json.Marshal(map[string]string{"job": j.id})
		default:
			return fmt.Errorf("OBSERVE %q: ask for %s, %s, %s, %s, %s or %s", m.What, wire.ObserveDashboard, wire.ObserveTimeline,
				wire.ObserveReport, wire.ObserveLogs, wire.ObserveDriverLogs, wire.ObserveDriver)
		}
		return c.conn.Send(wire.TOK, f.Seq, &wire.ObserveReply{Data: data})
	}
	return fmt.Errorf("%w: unknown message type %d", wire.ErrCorruptFrame, f.Type)
}

// workerOutput is where a worker's stdout and stderr go: line by line into the recorder
// (shoal logs, the page, drivers with log_to_driver), or, with observability off, the agent's
// own stdout and stderr as before.
func (a *Agent) workerOutput(job, worker string) (io.Writer, io.Writer) {
	r := a.cfg.Observer
	if r == nil {
		return a.cfg.Stdout, a.cfg.Stderr
	}
	return obs.NewLineWriter(a.cfg.NodeID, job, worker, "stdout", r.AddLog),
		obs.NewLineWriter(a.cfg.NodeID, job, worker, "stderr", r.AddLog)
}

// workerOutput of a member: lines go to its own ring, and to the head node's agent in LOG
// frames for a job whose driver prints them (nodelogs.go).
func (m *Member) workerOutput(worker string) (io.Writer, io.Writer) {
	job := obs.JobOfWorker(worker)
	return obs.NewLineWriter(m.node, job, worker, "stdout", m.memberLine), obs.NewLineWriter(m.node, job, worker, "stderr", m.memberLine)
}

// echo is where a member's lines go on a head that records nothing.
func (a *Agent) echo(l obs.Line) { obs.EchoTo(a.cfg.Stdout, a.cfg.Stderr)(l) }

// observeLogs answers OBSERVE logs from every node's ring; an actor is named by id (prefix) or
// by name.
func (a *Agent) observeLogs(m *wire.Observe) ([]byte, error) {
	f := obs.LogFilter{Job: m.Job, Task: m.Task, Actor: m.Actor, Node: m.Node, Worker: m.Worker}
	if m.Actor != "" {
		a.mu.Lock()
		for _, ac := range a.actors {
			if ac.name == m.Actor {
				f.Actor = ac.id.String()
			}
		}
		a.mu.Unlock()
	}
	res, err := a.ClusterLogs(f, m.Cursor, m.Max)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(res)
	return b, nil
}
