package head

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// lookupWait bounds how long LookupActor waits for the writes queued before it.
const lookupWait = 10 * time.Second

// State is everything the head's tables hold about one cluster: what `shoal status` shows and
// `shoal history` lists. It travels as the reply of the agent's STATE message.
type State struct {
	Cluster         Cluster          `msgpack:"cluster" json:"cluster"`
	Nodes           []Node           `msgpack:"nodes" json:"nodes"`
	Jobs            []Job            `msgpack:"jobs" json:"jobs"`
	Actors          []Actor          `msgpack:"actors" json:"actors"`
	PlacementGroups []PlacementGroup `msgpack:"placement_groups" json:"placement_groups"`
	// Path is the database file (empty over the wire).
	Path string `msgpack:"-" json:"path,omitempty"`
}

// State reads the tables, after the writes queued before the call are committed.
func (h *Head) State(ctx context.Context) (State, error) {
	if err := h.Flush(ctx); err != nil {
		return State{}, err
	}
	s, err := readState(ctx, h.r)
	if err != nil {
		return s, fmt.Errorf("read the head's tables in %s: %w", h.path, err)
	}
	// the counts of a running head are in memory until Close writes them
	s.Cluster.Dropped, s.Cluster.Failed = h.dropped.Load(), h.failed.Load()
	return s, nil
}

// LookupActor finds a live named actor in the actor table, after the writes queued before the
// call are committed (so an actor created just before is found). It waits for the disk, so
// call it outside any lock that other work needs.
func (h *Head) LookupActor(ns, name string) (Actor, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupWait)
	defer cancel()
	var a Actor
	if err := h.Flush(ctx); err != nil {
		return a, err
	}
	var nm sql.NullString
	var ended sql.NullInt64
	err := h.r.QueryRowContext(ctx, `SELECT id, job, name, ns, class, state, node, restarts, meta, death, created_at, ended_at
		FROM actors WHERE ns=? AND name=? AND state != 'DEAD'`, ns, name).
		Scan(&a.ID, &a.Job, &nm, &a.NS, &a.Class, &a.State, &a.Node, &a.Restarts, &a.Meta, &a.Death, &a.CreatedMS, &ended)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("%w: no live actor named %q in namespace %q", ErrNotFound, name, ns)
	}
	if err != nil {
		return a, fmt.Errorf("look up actor %q in namespace %q in %s: %w", name, ns, h.path, err)
	}
	a.Name, a.EndedMS = nm.String, ended.Int64
	return a, nil
}

// ReadFile reads a head database read-only: the history of an ended cluster, or a snapshot
// of a running one on this host.
func ReadFile(ctx context.Context, path string) (State, error) {
	if _, err := os.Stat(path); err != nil {
		return State{}, fmt.Errorf("read head database: %w", err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", "5000")
	db, err := sql.Open("sqlite3", dsn(path, q))
	if err != nil {
		return State{}, fmt.Errorf("open head database %s: %w", path, err)
	}
	defer db.Close()
	var ver int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&ver); err != nil {
		return State{}, fmt.Errorf("read head database %s: %w", path, err)
	}
	if ver != schemaVersion {
		return State{}, fmt.Errorf("%w: %s has version %d, this shoal reads %d", ErrSchema, path, ver, schemaVersion)
	}
	s, err := readState(ctx, db)
	if err != nil {
		return s, fmt.Errorf("read head database %s: %w", path, err)
	}
	s.Path = path
	return s, nil
}

// FileName is the database of cluster id in a state directory: one file per cluster, so that
// clusters sharing a state directory never write to the same file.
func FileName(stateDir, id string) string {
	return filepath.Join(stateDir, "shoal-"+id+".db")
}

// History reads every cluster's database in a state directory, oldest first. Files that
// cannot be read are reported in the error, beside the states that could.
func History(ctx context.Context, stateDir string) ([]State, error) {
	ents, err := os.ReadDir(stateDir)
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	var out []State
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, "shoal-") || !strings.HasSuffix(n, ".db") {
			continue
		}
		s, err := ReadFile(ctx, filepath.Join(stateDir, n))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Cluster.StartedMS < out[j].Cluster.StartedMS })
	return out, errors.Join(errs...)
}

// querier is what the readers need of a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readState reads all tables in one read transaction: one consistent snapshot.
func readState(ctx context.Context, pool *sql.DB) (State, error) {
	var s State
	tx, err := pool.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s, fmt.Errorf("begin a read: %w", err)
	}
	defer tx.Rollback()
	var db querier = tx
	var ended, code sql.NullInt64
	err = db.QueryRowContext(ctx, `SELECT id, kind, node, command, slurm_job, started_at, ended_at, exit_code, dropped, failed FROM cluster`).
		Scan(&s.Cluster.ID, &s.Cluster.Kind, &s.Cluster.Node, &s.Cluster.Command, &s.Cluster.SlurmJob,
			&s.Cluster.StartedMS, &ended, &code, &s.Cluster.Dropped, &s.Cluster.Failed)
	if err != nil {
		return s, fmt.Errorf("read the cluster row: %w", err)
	}
	s.Cluster.EndedMS, s.Cluster.ExitCode = ended.Int64, intp(code)
	if s.Nodes, err = readNodes(ctx, db); err != nil {
		return s, err
	}
	if s.Jobs, err = readJobs(ctx, db); err != nil {
		return s, err
	}
	if s.Actors, err = readActors(ctx, db); err != nil {
		return s, err
	}
	s.PlacementGroups, err = readPGs(ctx, db)
	return s, err
}

func intp(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	i := int(v.Int64)
	return &i
}

func readNodes(ctx context.Context, db querier) ([]Node, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, addr, resources, alive, joined_at, left_at FROM nodes ORDER BY joined_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var n Node
		var res string
		var left sql.NullInt64
		if err := rows.Scan(&n.ID, &n.Addr, &res, &n.Alive, &n.JoinedMS, &left); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		if err := json.Unmarshal([]byte(res), &n.Resources); err != nil {
			return nil, fmt.Errorf("node %s: resources %q: %w", n.ID, res, err)
		}
		n.LeftMS = left.Int64
		out = append(out, n)
	}
	return out, rows.Err()
}

func readJobs(ctx context.Context, db querier) ([]Job, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, driver_pid, entry, status, started_at, ended_at, exit_code FROM jobs ORDER BY started_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var j Job
		var ended, code sql.NullInt64
		if err := rows.Scan(&j.ID, &j.PID, &j.Entry, &j.Status, &j.StartedMS, &ended, &code); err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		j.EndedMS, j.ExitCode = ended.Int64, intp(code)
		out = append(out, j)
	}
	return out, rows.Err()
}

func readActors(ctx context.Context, db querier) ([]Actor, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, job, name, ns, class, state, node, restarts, death, created_at, ended_at
		FROM actors ORDER BY created_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("list actors: %w", err)
	}
	defer rows.Close()
	var out []Actor
	for rows.Next() {
		var a Actor
		var nm sql.NullString
		var ended sql.NullInt64
		if err := rows.Scan(&a.ID, &a.Job, &nm, &a.NS, &a.Class, &a.State, &a.Node, &a.Restarts, &a.Death, &a.CreatedMS, &ended); err != nil {
			return nil, fmt.Errorf("list actors: %w", err)
		}
		a.Name, a.EndedMS = nm.String, ended.Int64
		out = append(out, a)
	}
	return out, rows.Err()
}

func readPGs(ctx context.Context, db querier) ([]PlacementGroup, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, job, name, strategy, bundles, state, created_at, removed_at
		FROM placement_groups ORDER BY created_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("list placement groups: %w", err)
	}
	defer rows.Close()
	var out []PlacementGroup
	for rows.Next() {
		var p PlacementGroup
		var b string
		var removed sql.NullInt64
		if err := rows.Scan(&p.ID, &p.Job, &p.Name, &p.Strategy, &b, &p.State, &p.CreatedMS, &removed); err != nil {
			return nil, fmt.Errorf("list placement groups: %w", err)
		}
		if err := json.Unmarshal([]byte(b), &p.Bundles); err != nil {
			return nil, fmt.Errorf("placement group %s: bundles %q: %w", p.ID, b, err)
		}
		p.RemovedMS = removed.Int64
		out = append(out, p)
	}
	return out, rows.Err()
}
