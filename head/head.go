// Package head keeps a cluster's durable state in SQLite: the cluster itself, node membership,
// the job table, the actor table (with names, final states and death causes) and placement
// groups. Its tables are what `shoal status` shows, what named-actor lookups read, and, kept
// in a state directory (`--state-dir`), the job history that `shoal history` lists after the
// cluster has ended.
//
// Writes never happen on the caller's goroutine. The agent reports events (node joined or lost,
// job started or ended, actor created or changed, placement group created or changed); each is
// put on a bounded queue without blocking, and one writer goroutine commits them in batches
// through one writer connection (WAL, synchronous=NORMAL). Reads go through a separate pool of
// read-only connections, after waiting for the writes queued before them (read your writes).
// The one decision that must be made at once, whether an actor's name is free, is made against
// an in-memory index of the live names, which the actor table backs with a unique index.
//
//	event ─> enqueue (never blocks; full queue: dropped, counted, logged) ─> writer goroutine
//	      ─> one transaction per batch ─> tables <─ read pool <─ State, LookupActor, ReadFile
//
// A Head is safe for concurrent use. One file holds one cluster; Close records the end of
// everything still open and leaves the file self-contained (rollback journal, no -wal/-shm),
// so that any host can read it later.
package head

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-sqlite3"
)

// ErrNotFound is returned by lookups of a name or id the head does not have.
var ErrNotFound = errors.New("not found")

// ErrNameTaken is returned when a named actor already exists in the namespace.
var ErrNameTaken = errors.New("actor name taken")

// ErrClosed is returned by reads of a head that has been closed.
var ErrClosed = errors.New("head state store closed")

// ErrSchema is wrapped by errors about a file this build cannot read.
var ErrSchema = errors.New("unknown head database schema")

// schemaVersion is PRAGMA user_version of the files this build writes.
const schemaVersion = 1

// DefaultQueue is the number of events the write queue holds by default.
const DefaultQueue = 1 << 16

// maxBatch bounds the events committed in one transaction.
const maxBatch = 512

const schema = `
CREATE TABLE IF NOT EXISTS cluster (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, node TEXT NOT NULL, command TEXT NOT NULL,
  slurm_job TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER, exit_code INTEGER,
  dropped INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, addr TEXT NOT NULL, resources TEXT NOT NULL,
  alive INTEGER NOT NULL, joined_at INTEGER NOT NULL, left_at INTEGER);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, driver_pid INTEGER NOT NULL, entry TEXT NOT NULL, started_at INTEGER NOT NULL,
  ended_at INTEGER, status TEXT NOT NULL, exit_code INTEGER);
CREATE TABLE IF NOT EXISTS actors (
  id TEXT PRIMARY KEY, job TEXT NOT NULL, name TEXT, ns TEXT NOT NULL, class TEXT NOT NULL,
  state TEXT NOT NULL, node TEXT NOT NULL, restarts INTEGER NOT NULL DEFAULT 0, meta BLOB,
  death TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, ended_at INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS actors_name ON actors(ns, name) WHERE name IS NOT NULL AND state != 'DEAD';
CREATE TABLE IF NOT EXISTS placement_groups (
  id TEXT PRIMARY KEY, job TEXT NOT NULL, name TEXT NOT NULL, strategy TEXT NOT NULL,
  bundles TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL, removed_at INTEGER);
`

// op is one queued write: fn runs inside the batch's transaction; done, when set, is closed
// once everything queued before it is committed (a barrier; fn is nil then).
type op struct {
	what string
	fn   func(tx *sql.Tx) error
	done chan struct{}
}

type nsName struct{ ns, name string }

// Head is a cluster's state store.
type Head struct {
	log  hclog.Logger
	path string
	w    *sql.DB // the single writer connection, used only by the writer goroutine
	r    *sql.DB // read-only pool

	qmu    sync.RWMutex // senders hold it shared; Close holds it to close q
	q      chan op
	closed bool
	done   chan struct{} // closed when the writer goroutine has exited

	nmu   sync.Mutex
	names map[nsName]string // live named actors -> id
	named map[string]nsName // their ids -> name

	dropped  atomic.Int64
	failed   atomic.Int64
	lastDrop atomic.Int64 // unix ms of the last drop logged
}

// Option configures Open.
type Option func(*Head)

// WithQueue sets how many events the write queue holds (default DefaultQueue).
func WithQueue(n int) Option {
	return func(h *Head) {
		if n > 0 {
			h.q = make(chan op, n)
		}
	}
}

// Cluster is the cluster's own row: what it was, where, and how it ended.
type Cluster struct {
	ID        string `msgpack:"id" json:"id"`
	Kind      string `msgpack:"kind" json:"kind"` // run, up, launch, yarn
	Node      string `msgpack:"node" json:"node"` // the head's node
	Command   string `msgpack:"command" json:"command"`
	SlurmJob  string `msgpack:"slurm_job" json:"slurm_job,omitempty"`
	StartedMS int64  `msgpack:"started_ms" json:"started_ms"`
	EndedMS   int64  `msgpack:"ended_ms" json:"ended_ms,omitempty"` // 0: not ended (running, or killed)
	ExitCode  *int   `msgpack:"exit_code" json:"exit_code,omitempty"`
	// Dropped counts events lost to a full write queue, Failed writes SQLite refused; either
	// means the tables miss something.
	Dropped int64 `msgpack:"dropped" json:"dropped,omitempty"`
	Failed  int64 `msgpack:"failed" json:"failed,omitempty"`
}

func dsn(path string, q url.Values) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Open opens (creating, mode 0600) the database at path for cluster c, and starts its writer.
// The file may hold an earlier run of the same cluster id; its live actor names are loaded.
func Open(log hclog.Logger, path string, c Cluster, opts ...Option) (*Head, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if c.StartedMS == 0 {
		c.StartedMS = now()
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600) // SQLite's -wal/-shm copy its mode
	if err != nil {
		return nil, fmt.Errorf("create head database %s: %w", path, err)
	}
	f.Close()
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite3", dsn(path, q))
	if err != nil {
		return nil, fmt.Errorf("open head database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if _, err := w.Exec(schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("create head schema in %s: %w", path, err)
	}
	var ver int
	if err := w.QueryRow(`PRAGMA user_version`).Scan(&ver); err != nil || ver > schemaVersion {
		w.Close()
		return nil, fmt.Errorf("%w: %s has version %d (this shoal writes %d): give this cluster another state directory", ErrSchema, path, ver, schemaVersion)
	}
	if _, err := w.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)); err != nil {
		w.Close()
		return nil, fmt.Errorf("set head schema version in %s: %w", path, err)
	}
	if _, err := w.Exec(`INSERT INTO cluster(id, kind, node, command, slurm_job, started_at) VALUES(?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET ended_at=NULL, exit_code=NULL`,
		c.ID, c.Kind, c.Node, c.Command, c.SlurmJob, c.StartedMS); err != nil {
		w.Close()
		return nil, fmt.Errorf("record cluster %s in %s: %w", c.ID, path, err)
	}
	rq := url.Values{}
	rq.Set("mode", "ro")
	rq.Set("_busy_timeout", "5000")
	r, err := sql.Open("sqlite3", dsn(path, rq))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open head database %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	h := &Head{log: log, path: path, w: w, r: r, done: make(chan struct{}),
		names: map[nsName]string{}, named: map[string]nsName{}}
	for _, o := range opts {
		o(h)
	}
	if h.q == nil {
		h.q = make(chan op, DefaultQueue)
	}
	if err := h.loadNames(); err != nil {
		h.r.Close()
		h.w.Close()
		return nil, err
	}
	go h.writer()
	return h, nil
}

func (h *Head) loadNames() error {
	rows, err := h.w.Query(`SELECT id, ns, name FROM actors WHERE name IS NOT NULL AND state != 'DEAD'`)
	if err != nil {
		return fmt.Errorf("load actor names from %s: %w", h.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var k nsName
		if err := rows.Scan(&id, &k.ns, &k.name); err != nil {
			return fmt.Errorf("load actor names from %s: %w", h.path, err)
		}
		h.names[k], h.named[id] = id, k
	}
	return rows.Err()
}

// Path is the database file.
func (h *Head) Path() string { return h.path }

func now() int64 { return time.Now().UnixMilli() }

// enqueue queues a write without blocking; a full queue drops it (counted, and logged at most
// every 10 s): the agent must never wait for the disk.
func (h *Head) enqueue(what string, fn func(tx *sql.Tx) error) {
	h.qmu.RLock()
	defer h.qmu.RUnlock()
	if h.closed {
		h.log.Debug("event after close, not recorded", "event", what)
		return
	}
	select {
	case h.q <- op{what: what, fn: fn}:
	default:
		n := h.dropped.Add(1)
		t := now()
		if last := h.lastDrop.Load(); t-last > 10_000 && h.lastDrop.CompareAndSwap(last, t) {
			h.log.Error("head state: write queue full, events dropped (is the state directory's disk stalled?)",
				"dropped", n, "queue", cap(h.q), "event", what, "path", h.path)
		}
	}
}

// Flush waits until every event queued before the call is committed, or ctx ends.
func (h *Head) Flush(ctx context.Context) error {
	done := make(chan struct{})
	h.qmu.RLock()
	if h.closed {
		h.qmu.RUnlock()
		return ErrClosed
	}
	select {
	case h.q <- op{what: "flush", done: done}:
		h.qmu.RUnlock()
	case <-ctx.Done():
		h.qmu.RUnlock()
		return fmt.Errorf("wait for the head's writes: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the head's writes (%d queued; is the disk of %s stalled?): %w", len(h.q), h.path, ctx.Err())
	}
}

// writer commits the queue in batches, one transaction each.
func (h *Head) writer() {
	defer close(h.done)
	batch := make([]op, 0, maxBatch)
	for o := range h.q {
		batch = append(batch[:0], o)
	more:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-h.q:
				if !ok {
					break more
				}
				batch = append(batch, o)
			default:
				break more
			}
		}
		h.commit(batch)
	}
}

func (h *Head) commit(batch []op) {
	writes := 0
	for _, o := range batch {
		if o.fn != nil {
			writes++
		}
	}
	if writes > 0 {
		tx, err := h.w.Begin()
		if err != nil {
			h.failed.Add(int64(writes))
			h.log.Error("head state: begin a transaction", "path", h.path, "events", writes, "error", err)
		} else {
			for _, o := range batch {
				if o.fn == nil {
					continue
				}
				// a failed statement is rolled back alone; the rest of the batch stands
				if err := o.fn(tx); err != nil {
					h.failed.Add(1)
					if isUnique(err) {
						h.log.Error("[internal error] head state: a unique constraint refused a write the name index allowed", "event", o.what, "error", err)
					} else {
						h.log.Error("head state: write", "event", o.what, "error", err)
					}
				}
			}
			if err := tx.Commit(); err != nil {
				h.failed.Add(int64(writes))
				h.log.Error("head state: commit", "path", h.path, "events", writes, "error", err)
			}
		}
	}
	for _, o := range batch {
		if o.done != nil {
			close(o.done)
		}
	}
}

// isUnique says whether err is SQLite refusing a row for a UNIQUE constraint.
func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

// Close records the end of the cluster (jobs still running are STOPPED, live actors DEAD,
// placement groups REMOVED, nodes gone), commits what is queued, and leaves the file in
// rollback-journal mode so that it is one self-contained file. Events after Close are ignored.
func (h *Head) Close() error {
	h.qmu.Lock()
	if h.closed {
		h.qmu.Unlock()
		return nil
	}
	t := now()
	h.q <- op{what: "cluster ended", fn: func(tx *sql.Tx) error { return h.sweep(tx, t) }}
	h.closed = true
	close(h.q)
	h.qmu.Unlock()
	<-h.done
	var errs []error
	errs = append(errs, h.r.Close())
	if _, err := h.w.Exec(`UPDATE cluster SET dropped=?, failed=?`, h.dropped.Load(), h.failed.Load()); err != nil {
		errs = append(errs, fmt.Errorf("record the head's write counts in %s: %w", h.path, err))
	}
	if _, err := h.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		errs = append(errs, fmt.Errorf("checkpoint %s: %w", h.path, err))
	}
	if _, err := h.w.Exec(`PRAGMA journal_mode=DELETE`); err != nil {
		errs = append(errs, fmt.Errorf("leave WAL mode in %s: %w", h.path, err))
	}
	errs = append(errs, h.w.Close())
	return errors.Join(errs...)
}

// sweep ends what the cluster's end ends.
func (h *Head) sweep(tx *sql.Tx, t int64) error {
	for _, s := range []string{
		`UPDATE jobs SET status='STOPPED', ended_at=? WHERE ended_at IS NULL`,
		`UPDATE actors SET state='DEAD', death=CASE WHEN death='' THEN 'the cluster ended' ELSE death END, ended_at=? WHERE state != 'DEAD'`,
		`UPDATE placement_groups SET state=CASE WHEN state='INFEASIBLE' THEN state ELSE 'REMOVED' END, removed_at=? WHERE removed_at IS NULL`,
		`UPDATE nodes SET alive=0, left_at=? WHERE alive=1`,
		`UPDATE cluster SET ended_at=?`,
	} {
		if _, err := tx.Exec(s, t); err != nil {
			return err
		}
	}
	return nil
}
