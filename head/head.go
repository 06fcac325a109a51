// Package head keeps a cluster's durable state: node membership and resources, the job table,
// the actor table (with names) and placement groups, in SQLite (WAL, one writer connection and
// a separate read pool). The hot path of task execution never touches it; it records what an
// operator or a restarted component must be able to read back.
//
// A Head is safe for concurrent use.
package head

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

// ErrNotFound is returned by lookups of a name or id the head does not have.
var ErrNotFound = errors.New("not found")

// ErrNameTaken is returned when a named actor already exists in the namespace.
var ErrNameTaken = errors.New("actor name taken")

// Head is a cluster's state store.
type Head struct {
	w *sql.DB // the single writer
	r *sql.DB // readers
}

const schema = `
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, addr TEXT NOT NULL, resources TEXT NOT NULL,
  alive INTEGER NOT NULL, joined_at INTEGER NOT NULL, left_at INTEGER);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, driver_pid INTEGER, entry TEXT, started_at INTEGER NOT NULL,
  ended_at INTEGER, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actors (
  id TEXT PRIMARY KEY, job TEXT NOT NULL, name TEXT, ns TEXT NOT NULL, class TEXT,
  state TEXT NOT NULL, node TEXT, restarts INTEGER NOT NULL DEFAULT 0, meta BLOB,
  death TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS actors_name ON actors(ns, name) WHERE name IS NOT NULL AND state != 'DEAD';
CREATE TABLE IF NOT EXISTS placement_groups (
  id TEXT PRIMARY KEY, job TEXT NOT NULL, name TEXT, strategy TEXT NOT NULL, bundles TEXT NOT NULL,
  state TEXT NOT NULL);
`

// Open opens (creating) the database at path.
func Open(path string) (*Head, error) {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "1")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open head database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	if _, err := w.Exec(schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("create head schema in %s: %w", path, err)
	}
	q.Set("mode", "ro")
	r, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open head database %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	return &Head{w: w, r: r}, nil
}

// Close closes the database.
func (h *Head) Close() error {
	h.r.Close()
	return h.w.Close()
}

func now() int64 { return time.Now().UnixMilli() }

// Node is a row of the node table.
type Node struct {
	ID        string
	Addr      string
	Resources map[string]float64
	Alive     bool
}

// JoinNode records a node joining (or rejoining).
func (h *Head) JoinNode(n Node) error {
	res, _ := json.Marshal(n.Resources)
	_, err := h.w.Exec(`INSERT INTO nodes(id, addr, resources, alive, joined_at) VALUES(?,?,?,1,?)
		ON CONFLICT(id) DO UPDATE SET addr=excluded.addr, resources=excluded.resources, alive=1, left_at=NULL`,
		n.ID, n.Addr, string(res), now())
	if err != nil {
		return fmt.Errorf("record node %s: %w", n.ID, err)
	}
	return nil
}

// LeaveNode marks a node dead.
func (h *Head) LeaveNode(id string) error {
	_, err := h.w.Exec(`UPDATE nodes SET alive=0, left_at=? WHERE id=?`, now(), id)
	return err
}

// Nodes lists the node table.
func (h *Head) Nodes() ([]Node, error) {
	rows, err := h.r.Query(`SELECT id, addr, resources, alive FROM nodes ORDER BY joined_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var n Node
		var res string
		if err := rows.Scan(&n.ID, &n.Addr, &res, &n.Alive); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(res), &n.Resources)
		out = append(out, n)
	}
	return out, rows.Err()
}

// StartJob records a driver's job.
func (h *Head) StartJob(id string, pid int, entry string) error {
	_, err := h.w.Exec(`INSERT INTO jobs(id, driver_pid, entry, started_at, status) VALUES(?,?,?,?, 'RUNNING')`, id, pid, entry, now())
	if err != nil {
		return fmt.Errorf("record job %s: %w", id, err)
	}
	return nil
}

// EndJob records the end of a job.
func (h *Head) EndJob(id, status string) error {
	_, err := h.w.Exec(`UPDATE jobs SET ended_at=?, status=? WHERE id=?`, now(), status, id)
	return err
}

// Job is a row of the job table.
type Job struct {
	ID     string
	PID    int
	Entry  string
	Status string
}

// Jobs lists the job table.
func (h *Head) Jobs() ([]Job, error) {
	rows, err := h.r.Query(`SELECT id, driver_pid, entry, status FROM jobs ORDER BY started_at`)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var j Job
		if err := rows.Scan(&j.ID, &j.PID, &j.Entry, &j.Status); err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// Actor is a row of the actor table.
type Actor struct {
	ID       string
	Job      string
	Name     string
	NS       string
	Class    string
	State    string // PENDING, ALIVE, RESTARTING, DEAD
	Node     string
	Restarts int
	Meta     []byte
	Death    string
}

// AddActor records a new actor. A name already used by a live actor in the namespace is
// ErrNameTaken.
func (h *Head) AddActor(a Actor) error {
	var name any
	if a.Name != "" {
		name = a.Name
	}
	_, err := h.w.Exec(`INSERT INTO actors(id, job, name, ns, class, state, node, meta) VALUES(?,?,?,?,?,?,?,?)`,
		a.ID, a.Job, name, a.NS, a.Class, a.State, a.Node, a.Meta)
	if err != nil {
		if a.Name != "" && isUnique(err) {
			return fmt.Errorf("%w: an actor named %q already exists in namespace %q; pick another name or use get_actor", ErrNameTaken, a.Name, a.NS)
		}
		return fmt.Errorf("record actor %s: %w", a.ID, err)
	}
	return nil
}

func isUnique(err error) bool {
	return err != nil && (contains(err.Error(), "UNIQUE constraint failed"))
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// SetActorState updates an actor's state, restart count and death reason.
func (h *Head) SetActorState(id, state string, restarts int, death string) error {
	_, err := h.w.Exec(`UPDATE actors SET state=?, restarts=?, death=? WHERE id=?`, state, restarts, death, id)
	if err != nil {
		return fmt.Errorf("update actor %s: %w", id, err)
	}
	return nil
}

// LookupActor finds a live named actor.
func (h *Head) LookupActor(ns, name string) (Actor, error) {
	var a Actor
	var nm sql.NullString
	var death sql.NullString
	err := h.w.QueryRow(`SELECT id, job, name, ns, class, state, node, restarts, meta, death FROM actors
		WHERE ns=? AND name=? AND state != 'DEAD'`, ns, name).
		Scan(&a.ID, &a.Job, &nm, &a.NS, &a.Class, &a.State, &a.Node, &a.Restarts, &a.Meta, &death)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("%w: no live actor named %q in namespace %q", ErrNotFound, name, ns)
	}
	a.Name, a.Death = nm.String, death.String
	return a, err
}

// Actors lists the actor table.
func (h *Head) Actors() ([]Actor, error) {
	rows, err := h.r.Query(`SELECT id, job, name, ns, class, state, node, restarts, death FROM actors`)
	if err != nil {
		return nil, fmt.Errorf("list actors: %w", err)
	}
	defer rows.Close()
	var out []Actor
	for rows.Next() {
		var a Actor
		var nm, death sql.NullString
		if err := rows.Scan(&a.ID, &a.Job, &nm, &a.NS, &a.Class, &a.State, &a.Node, &a.Restarts, &death); err != nil {
			return nil, err
		}
		a.Name, a.Death = nm.String, death.String
		out = append(out, a)
	}
	return out, rows.Err()
}

// PlacementGroup is a row of the placement-group table.
type PlacementGroup struct {
	ID       string
	Job      string
	Name     string
	Strategy string
	Bundles  []map[string]float64
	State    string // PENDING, CREATED, REMOVED, INFEASIBLE
}

// AddPlacementGroup records a placement group.
func (h *Head) AddPlacementGroup(pg PlacementGroup) error {
	b, _ := json.Marshal(pg.Bundles)
	_, err := h.w.Exec(`INSERT INTO placement_groups(id, job, name, strategy, bundles, state) VALUES(?,?,?,?,?,?)`,
		pg.ID, pg.Job, pg.Name, pg.Strategy, string(b), pg.State)
	if err != nil {
		return fmt.Errorf("record placement group %s: %w", pg.ID, err)
	}
	return nil
}

// SetPlacementGroupState updates a placement group's state.
func (h *Head) SetPlacementGroupState(id, state string) error {
	_, err := h.w.Exec(`UPDATE placement_groups SET state=? WHERE id=?`, state, id)
	return err
}

// PlacementGroups lists the placement-group table.
func (h *Head) PlacementGroups() ([]PlacementGroup, error) {
	rows, err := h.r.Query(`SELECT id, job, name, strategy, bundles, state FROM placement_groups`)
	if err != nil {
		return nil, fmt.Errorf("list placement groups: %w", err)
	}
	defer rows.Close()
	var out []PlacementGroup
	for rows.Next() {
		var p PlacementGroup
		var b string
		var name sql.NullString
		if err := rows.Scan(&p.ID, &p.Job, &name, &p.Strategy, &b, &p.State); err != nil {
			return nil, err
		}
		p.Name = name.String
		json.Unmarshal([]byte(b), &p.Bundles)
		out = append(out, p)
	}
	return out, rows.Err()
}
