package train

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

// History is a training run's record across attempts and allocations, in SQLite at
// DIR/history.db (the --state-dir of `shoal train`, on a file system every allocation of the
// job sees): each allocation (a Slurm job's start, again after each requeue), each attempt of
// the gang in it, each checkpoint rank 0 reported (path, step, metrics), and why each attempt
// and allocation ended. A new allocation resumes from Latest.
//
// One `shoal train` writes a history at a time (Slurm runs a job once at a time); readers
// (`shoal train history`) may read it meanwhile (WAL). Methods are safe for concurrent use.
type History struct {
	db    *sql.DB
	dir   string
	alloc int64
}

// End reasons of attempts and allocations, as History records them.
const (
	EndCompleted = "completed"
	EndFailed    = "failed"     // a rank failed (restarted, or no restarts left)
	EndPreempted = "preempted"  // Slurm preempted the job (it queues it again)
	EndRequeued  = "requeued"   // time-limit warning: checkpointed, and shoal train requeued the job
	EndTimeLimit = "time-limit" // time-limit warning without --requeue: checkpointed, the gang went on
	EndCancelled = "cancelled"  // scancel, a time limit reached, Ctrl-C
	EndLost      = "lost"       // the attempt never started, or shoal train itself ended
	EndGrown     = "grown"      // elastic: nodes joined; checkpointed, and restarted on more ranks
)

const historySchema = `
CREATE TABLE IF NOT EXISTS allocations (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL,
  restart_count INTEGER NOT NULL,
  nodes TEXT NOT NULL,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  end_reason TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY,
  allocation_id INTEGER NOT NULL REFERENCES allocations(id),
  attempt INTEGER NOT NULL,
  world_size INTEGER NOT NULL,
  layout TEXT NOT NULL,
  resumed_from TEXT NOT NULL,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  end_reason TEXT,
  exit_code INTEGER,
  detail TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
  id INTEGER PRIMARY KEY,
  attempt_id INTEGER NOT NULL REFERENCES attempts(id),
  path TEXT NOT NULL,
  step INTEGER,
  metrics TEXT NOT NULL,
  reported_at TEXT NOT NULL
);`

// OpenHistory opens (creating it and dir where missing) the history in dir.
func OpenHistory(dir string) (*History, error) {
	if dir == "" {
		return nil, errors.New("open the run's history: no --state-dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open the run's history: make --state-dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "history.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_foreign_keys=1")
	if err != nil {
		return nil, fmt.Errorf("open the run's history %s: %w", path, err)
	}
	if _, err := db.Exec(historySchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open the run's history %s: %w (is --state-dir on a file system with working locks?)", path, err)
	}
	return &History{db: db, dir: dir}, nil
}

// OpenHistoryReadOnly opens an existing history for reading.
func OpenHistoryReadOnly(dir string) (*History, error) {
	path := filepath.Join(dir, "history.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("read the run's history: %w; give the --state-dir that `shoal train` announced", err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("read the run's history %s: %w", path, err)
	}
	return &History{db: db, dir: dir}, nil
}

// Dir is the state directory.
func (h *History) Dir() string { return h.dir }

// Close closes the database.
func (h *History) Close() error { return h.db.Close() }

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// BeginAllocation records the start of an allocation (the job started, or started again after
// a requeue); later attempts belong to it.
func (h *History) BeginAllocation(jobID string, restartCount int, nodes string) error {
	r, err := h.db.Exec(`INSERT INTO allocations (job_id, restart_count, nodes, started_at) VALUES (?, ?, ?, ?)`,
		jobID, restartCount, nodes, now())
	if err != nil {
		return fmt.Errorf("record the allocation: %w", err)
	}
	h.alloc, err = r.LastInsertId()
	return err
}

// EndAllocation records why the current allocation ended.
func (h *History) EndAllocation(reason string) error {
	_, err := h.db.Exec(`UPDATE allocations SET ended_at = ?, end_reason = ? WHERE id = ?`, now(), reason, h.alloc)
	return err
}

// Attempts is the number of attempts recorded so far, in every allocation.
func (h *History) Attempts() (int, error) {
	var n int
	err := h.db.QueryRow(`SELECT COUNT(*) FROM attempts`).Scan(&n)
	return n, err
}

// BeginAttempt records the start of the gang's attempt n (counted over the whole run) and
// returns its id.
func (h *History) BeginAttempt(n, worldSize int, layout, resumedFrom string) (int64, error) {
	r, err := h.db.Exec(`INSERT INTO attempts (allocation_id, attempt, world_size, layout, resumed_from, started_at) VALUES (?, ?, ?, ?, ?, ?)`,
		h.alloc, n, worldSize, layout, resumedFrom, now())
	if err != nil {
		return 0, fmt.Errorf("record the attempt: %w", err)
	}
	return r.LastInsertId()
}

// EndAttempt records how attempt id ended.
func (h *History) EndAttempt(id int64, reason string, code int, detail string) error {
	_, err := h.db.Exec(`UPDATE attempts SET ended_at = ?, end_reason = ?, exit_code = ?, detail = ? WHERE id = ? AND ended_at IS NULL`,
		now(), reason, code, detail, id)
	return err
}

// Checkpoint records a checkpoint rank 0 reported in attempt id; its step is metrics["step"]
// when that is a whole number.
func (h *History) Checkpoint(attempt int64, path string, metrics map[string]any) error {
	var step any
	switch v := metrics["step"].(type) {
	case float64:
		if v == float64(int64(v)) {
			step = int64(v)
		}
	case int64:
		step = v
	case int:
		step = int64(v)
	}
	m, err := json.Marshal(metrics)
	if err != nil || metrics == nil {
		m = []byte("{}")
	}
	_, err = h.db.Exec(`INSERT INTO checkpoints (attempt_id, path, step, metrics, reported_at) VALUES (?, ?, ?, ?, ?)`,
		attempt, path, step, string(m), now())
	return err
}

// Latest is the newest checkpoint of the run ("" when there is none).
func (h *History) Latest() (string, error) {
	var p string
	err := h.db.QueryRow(`SELECT path FROM checkpoints ORDER BY id DESC LIMIT 1`).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return p, err
}

// Allocation is one allocation of the run, as Read returns it.
type Allocation struct {
	ID           int64     `json:"id"`
	JobID        string    `json:"job_id"`
	RestartCount int       `json:"restart_count"`
	Nodes        string    `json:"nodes"`
	StartedAt    string    `json:"started_at"`
	EndedAt      string    `json:"ended_at,omitempty"`
	EndReason    string    `json:"end_reason,omitempty"`
	Attempts     []Attempt `json:"attempts"`
}

// Attempt is one attempt of the gang.
type Attempt struct {
	ID          int64        `json:"id"`
	Attempt     int          `json:"attempt"`
	WorldSize   int          `json:"world_size"`
	Layout      string       `json:"layout"`
	ResumedFrom string       `json:"resumed_from,omitempty"`
	StartedAt   string       `json:"started_at"`
	EndedAt     string       `json:"ended_at,omitempty"`
	EndReason   string       `json:"end_reason,omitempty"`
	ExitCode    *int         `json:"exit_code,omitempty"`
	Detail      string       `json:"detail,omitempty"`
	Checkpoints []Checkpoint `json:"checkpoints"`
}

// Checkpoint is one checkpoint report.
type Checkpoint struct {
	Path       string          `json:"path"`
	Step       *int64          `json:"step,omitempty"`
	Metrics    json.RawMessage `json:"metrics"`
	ReportedAt string          `json:"reported_at"`
}

// Read returns the whole history, oldest first.
func (h *History) Read() ([]Allocation, error) {
	var out []Allocation
	rows, err := h.db.Query(`SELECT id, job_id, restart_count, nodes, started_at, COALESCE(ended_at, ''), COALESCE(end_reason, '') FROM allocations ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read the run's history: %w", err)
	}
	for rows.Next() {
		var a Allocation
		if err := rows.Scan(&a.ID, &a.JobID, &a.RestartCount, &a.Nodes, &a.StartedAt, &a.EndedAt, &a.EndReason); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, a)
	}
	rows.Close()
	for i := range out {
		rows, err := h.db.Query(`SELECT id, attempt, world_size, layout, resumed_from, started_at, COALESCE(ended_at, ''), COALESCE(end_reason, ''), exit_code, COALESCE(detail, '')
			FROM attempts WHERE allocation_id = ? ORDER BY id`, out[i].ID)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var a Attempt
			var code sql.NullInt64
			if err := rows.Scan(&a.ID, &a.Attempt, &a.WorldSize, &a.Layout, &a.ResumedFrom, &a.StartedAt, &a.EndedAt, &a.EndReason, &code, &a.Detail); err != nil {
				rows.Close()
				return nil, err
			}
			if code.Valid {
				c := int(code.Int64)
				a.ExitCode = &c
			}
			out[i].Attempts = append(out[i].Attempts, a)
		}
		rows.Close()
		for j := range out[i].Attempts {
			a := &out[i].Attempts[j]
			rows, err := h.db.Query(`SELECT path, step, metrics, reported_at FROM checkpoints WHERE attempt_id = ? ORDER BY id`, a.ID)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var c Checkpoint
				var step sql.NullInt64
				var m string
				if err := rows.Scan(&c.Path, &step, &m, &c.ReportedAt); err != nil {
					rows.Close()
					return nil, err
				}
				if step.Valid {
					s := step.Int64
					c.Step = &s
				}
				c.Metrics = json.RawMessage(m)
				a.Checkpoints = append(a.Checkpoints, c)
			}
			rows.Close()
		}
	}
	return out, nil
}
