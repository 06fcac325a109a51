package head

import (
	"database/sql"
	"encoding/json"
	"fmt"
)

// The events the agent reports. Each takes the time of the call, queues its write and returns
// at once (see enqueue); none touches the disk on the caller's goroutine. Only ActorCreated
// returns an error, for a name already taken, decided against the in-memory name index.

// Node is a row of the node table.
type Node struct {
	ID        string             `msgpack:"id" json:"id"`
	Addr      string             `msgpack:"addr" json:"addr"`
	Resources map[string]float64 `msgpack:"resources" json:"resources"`
	Alive     bool               `msgpack:"alive" json:"alive"`
	JoinedMS  int64              `msgpack:"joined_ms" json:"joined_ms"`
	LeftMS    int64              `msgpack:"left_ms" json:"left_ms,omitempty"`
}

// NodeJoined records a node joining (or rejoining).
func (h *Head) NodeJoined(n Node) {
	res, _ := json.Marshal(n.Resources)
	t := now()
	h.enqueue("node joined", func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO nodes(id, addr, resources, alive, joined_at) VALUES(?,?,?,1,?)
			ON CONFLICT(id) DO UPDATE SET addr=excluded.addr, resources=excluded.resources, alive=1, joined_at=excluded.joined_at, left_at=NULL`,
			n.ID, n.Addr, string(res), t)
		return wrap(err, "record node %s joining", n.ID)
	})
}

// NodeLost records a node leaving or lost.
func (h *Head) NodeLost(id string) {
	t := now()
	h.enqueue("node lost", func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE nodes SET alive=0, left_at=? WHERE id=?`, t, id)
		return wrap(err, "record node %s lost", id)
	})
}

// Job is a row of the job table: one driver connection.
type Job struct {
	ID        string `msgpack:"id" json:"id"`
	PID       int    `msgpack:"pid" json:"pid"`
	Entry     string `msgpack:"entry" json:"entry"`
	Status    string `msgpack:"status" json:"status"` // RUNNING, FINISHED, SUCCEEDED, FAILED, STOPPED
	StartedMS int64  `msgpack:"started_ms" json:"started_ms"`
	EndedMS   int64  `msgpack:"ended_ms" json:"ended_ms,omitempty"`
	ExitCode  *int   `msgpack:"exit_code" json:"exit_code,omitempty"`
}

// JobStarted records a driver's job.
func (h *Head) JobStarted(id string, pid int, entry string) {
	t := now()
	h.enqueue("job started", func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO jobs(id, driver_pid, entry, started_at, status) VALUES(?,?,?,?,'RUNNING')`, id, pid, entry, t)
		return wrap(err, "record job %s", id)
	})
}

// JobEnded records the end of a job (its driver disconnected). status is kept unless
// CommandExited has already given the job its outcome.
func (h *Head) JobEnded(id, status string) {
	t := now()
	h.enqueue("job ended", func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE jobs SET ended_at=COALESCE(ended_at, ?), status=CASE WHEN status='RUNNING' THEN ? ELSE status END WHERE id=?`, t, status, id)
		return wrap(err, "record job %s ended", id)
	})
}

// CommandExited records the exit code of the cluster's command (the `shoal run` or `shoal
// launch` CMD, whose process id is pid): the cluster's exit code, and the outcome, SUCCEEDED or
// FAILED, of the jobs whose driver is that process.
func (h *Head) CommandExited(pid, code int) {
	t := now()
	h.enqueue("command exited", func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE cluster SET exit_code=?`, code); err != nil {
			return wrap(err, "record the command's exit code %d", code)
		}
		_, err := tx.Exec(`UPDATE jobs SET exit_code=?, status=CASE WHEN ?=0 THEN 'SUCCEEDED' ELSE 'FAILED' END,
			ended_at=COALESCE(ended_at, ?) WHERE driver_pid=?`, code, code, t, pid)
		return wrap(err, "record the exit code of the job of pid %d", pid)
	})
}

// Actor is a row of the actor table.
type Actor struct {
	ID        string `msgpack:"id" json:"id"`
	Job       string `msgpack:"job" json:"job"`
	Name      string `msgpack:"name" json:"name,omitempty"`
	NS        string `msgpack:"ns" json:"namespace"`
	Class     string `msgpack:"class" json:"class"`
	State     string `msgpack:"state" json:"state"` // PENDING, ALIVE, RESTARTING, DEAD
	Node      string `msgpack:"node" json:"node"`
	Restarts  int    `msgpack:"restarts" json:"restarts"`
	Meta      []byte `msgpack:"-" json:"-"` // the SDK's class description, for lookups
	Death     string `msgpack:"death" json:"death,omitempty"`
	CreatedMS int64  `msgpack:"created_ms" json:"created_ms"`
	EndedMS   int64  `msgpack:"ended_ms" json:"ended_ms,omitempty"`
}

// ActorCreated records a new actor. A name that a live actor of the namespace holds is
// ErrNameTaken; the check and the reservation are in memory, the row is written later.
func (h *Head) ActorCreated(a Actor) error {
	if a.Name != "" {
		k := nsName{a.NS, a.Name}
		h.nmu.Lock()
		if _, taken := h.names[k]; taken {
			h.nmu.Unlock()
			return fmt.Errorf("%w: an actor named %q already exists in namespace %q; pick another name or use get_actor", ErrNameTaken, a.Name, a.NS)
		}
		h.names[k], h.named[a.ID] = a.ID, k
		h.nmu.Unlock()
	}
	var name any
	if a.Name != "" {
		name = a.Name
	}
	t := now()
	h.enqueue("actor created", func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO actors(id, job, name, ns, class, state, node, meta, created_at) VALUES(?,?,?,?,?,?,?,?,?)`,
			a.ID, a.Job, name, a.NS, a.Class, a.State, a.Node, a.Meta, t)
		return wrap(err, "record actor %s", a.ID)
	})
	return nil
}

// ActorState records an actor's new state, restart count and death cause; DEAD frees its name.
func (h *Head) ActorState(id, state string, restarts int, death string) {
	if state == "DEAD" {
		h.nmu.Lock()
		if k, ok := h.named[id]; ok {
			delete(h.named, id)
			if h.names[k] == id {
				delete(h.names, k)
			}
		}
		h.nmu.Unlock()
	}
	t := now()
	h.enqueue("actor state", func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE actors SET state=?, restarts=?, death=?,
			ended_at=CASE WHEN ?='DEAD' THEN COALESCE(ended_at, ?) ELSE NULL END WHERE id=?`,
			state, restarts, death, state, t, id)
		return wrap(err, "record actor %s %s", id, state)
	})
}

// ActorPlaced records the node an actor's process runs on (it is created, or restarted, there).
func (h *Head) ActorPlaced(id, node string) {
	h.enqueue("actor placed", func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE actors SET node=? WHERE id=?`, node, id)
		return wrap(err, "record actor %s's node %s", id, node)
	})
}

// PlacementGroup is a row of the placement-group table.
type PlacementGroup struct {
	ID        string               `msgpack:"id" json:"id"`
	Job       string               `msgpack:"job" json:"job"`
	Name      string               `msgpack:"name" json:"name,omitempty"`
	Strategy  string               `msgpack:"strategy" json:"strategy"`
	Bundles   []map[string]float64 `msgpack:"bundles" json:"bundles"`
	State     string               `msgpack:"state" json:"state"` // PENDING, CREATED, REMOVED, INFEASIBLE
	CreatedMS int64                `msgpack:"created_ms" json:"created_ms"`
	RemovedMS int64                `msgpack:"removed_ms" json:"removed_ms,omitempty"`
}

// PlacementGroupCreated records a placement group.
func (h *Head) PlacementGroupCreated(pg PlacementGroup) {
	b, _ := json.Marshal(pg.Bundles)
	t := now()
	h.enqueue("placement group created", func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO placement_groups(id, job, name, strategy, bundles, state, created_at) VALUES(?,?,?,?,?,?,?)`,
			pg.ID, pg.Job, pg.Name, pg.Strategy, string(b), pg.State, t)
		return wrap(err, "record placement group %s", pg.ID)
	})
}

// PlacementGroupState records a placement group's new state; REMOVED is its end.
func (h *Head) PlacementGroupState(id, state string) {
	t := now()
	h.enqueue("placement group state", func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE placement_groups SET state=?, removed_at=CASE WHEN ?='REMOVED' THEN ? ELSE removed_at END WHERE id=?`,
			state, state, t, id)
		return wrap(err, "record placement group %s %s", id, state)
	})
}

func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
