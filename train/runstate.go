package train

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The run's history for shoal.train.run (Python). Its driver is a Python process, so the
// writes go through one `shoal train run-state` process (cmd/shoal/train_py.go) that the
// run's controller actor starts and talks to in JSON lines on its stdin/stdout:
//
//	run-state ─> {"state_dir": ..., "first_attempt": n, "checkpoint": newest, ...}  (hello)
//	{"op": "attempt", "attempt": n, "world_size": w, "layout": ..., "resumed_from": ...} ─> {"id": id}
//	{"op": "checkpoint", "id": id, "path": ..., "metrics": {...}}                      ─> {}
//	{"op": "end_attempt", "id": id, "reason": ..., "code": c, "detail": ...}           ─> {}
//	{"op": "end", "reason": ...}                                                       ─> {} and exit
//
// Every write is History's, as for `shoal train`, so `shoal train history` reads both. A
// checkpoint is answered once it is in the database: rank 0's report() waits for that answer.
// EOF without "end" (the driver or the controller died) ends the open attempt and the
// allocation with the reason the caller gives (lost, or cancelled after a scancel's SIGTERM).

// StateRequest is one request line.
type StateRequest struct {
	Op          string         `json:"op"`
	Attempt     int            `json:"attempt"`
	WorldSize   int            `json:"world_size"`
	Layout      string         `json:"layout"`
	ResumedFrom string         `json:"resumed_from"`
	ID          int64          `json:"id"`
	Path        string         `json:"path"`
	Metrics     map[string]any `json:"metrics"`
	Reason      string         `json:"reason"`
	Code        int            `json:"code"`
	Detail      string         `json:"detail"`
}

// StateReply answers one request.
type StateReply struct {
	ID    int64  `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

// ErrStateRequest wraps a request the state server cannot read or refuses.
var ErrStateRequest = errors.New("invalid run-state request")

var endReasons = map[string]bool{EndCompleted: true, EndFailed: true, EndPreempted: true, EndRequeued: true,
	EndTimeLimit: true, EndCancelled: true, EndLost: true, EndGrown: true}

// StateServer applies requests to a History (nil: no state dir; every request is answered and
// nothing is kept).
type StateServer struct {
	mu    sync.Mutex
	h     *History
	open  int64 // the attempt begun and not ended
	ended bool
}

// NewStateServer serves h, whose allocation has begun.
func NewStateServer(h *History) *StateServer { return &StateServer{h: h} }

// Ended says whether an "end" request came.
func (s *StateServer) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// Handle applies one request line.
func (s *StateServer) Handle(line []byte) StateReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	var q StateRequest
	if err := json.Unmarshal(line, &q); err != nil {
		return StateReply{Error: fmt.Sprintf("%v: %v", ErrStateRequest, err)}
	}
	if err := s.apply(&q); err != nil {
		return StateReply{Error: err.Error()}
	}
	if q.Op == "attempt" {
		return StateReply{ID: s.open}
	}
	return StateReply{}
}

func (s *StateServer) apply(q *StateRequest) error {
	if s.ended {
		return fmt.Errorf("%w: %q after the allocation's end", ErrStateRequest, q.Op)
	}
	if q.Reason != "" && !endReasons[q.Reason] {
		return fmt.Errorf("%w: end reason %q", ErrStateRequest, q.Reason)
	}
	switch q.Op {
	case "attempt":
		if q.Attempt < 0 || q.WorldSize < 1 {
			return fmt.Errorf("%w: attempt %d of %d ranks", ErrStateRequest, q.Attempt, q.WorldSize)
		}
		if s.open != 0 {
			s.endOpen(EndLost, 1, "a new attempt began before this one's end was recorded")
		}
		if s.h == nil {
			s.open = int64(q.Attempt) + 1
			return nil
		}
		id, err := s.h.BeginAttempt(q.Attempt, q.WorldSize, q.Layout, q.ResumedFrom)
		if err != nil {
			return err
		}
		s.open = id
	case "checkpoint":
		if q.ID <= 0 || q.Path == "" {
			return fmt.Errorf("%w: a checkpoint needs the attempt's id and a path", ErrStateRequest)
		}
		if s.h != nil {
			return s.h.Checkpoint(q.ID, q.Path, q.Metrics)
		}
	case "end_attempt":
		if q.ID <= 0 || q.Reason == "" {
			return fmt.Errorf("%w: end_attempt needs the attempt's id and a reason", ErrStateRequest)
		}
		if q.ID == s.open {
			s.open = 0
		}
		if s.h != nil {
			return s.h.EndAttempt(q.ID, q.Reason, q.Code, q.Detail)
		}
	case "end":
		if q.Reason == "" {
			return fmt.Errorf("%w: end needs a reason", ErrStateRequest)
		}
		return s.close(q.Reason)
	default:
		return fmt.Errorf("%w: unknown op %q", ErrStateRequest, q.Op)
	}
	return nil
}

func (s *StateServer) endOpen(reason string, code int, detail string) {
	if s.open != 0 && s.h != nil {
		s.h.EndAttempt(s.open, reason, code, detail)
	}
	s.open = 0
}

// Close ends the open attempt (if any) and the allocation with reason, once.
func (s *StateServer) Close(reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.close(reason)
}

func (s *StateServer) close(reason string) error {
	if s.ended {
		return nil
	}
	s.ended = true
	s.endOpen(reason, 1, "the driver ended")
	if s.h == nil {
		return nil
	}
	return s.h.EndAllocation(reason)
}

// ServeState answers the requests of r on w, one line each, until "end" or EOF; at EOF it
// ends what is open with eofReason().
func (s *StateServer) ServeState(r io.Reader, w io.Writer, eofReason func() string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	enc := json.NewEncoder(w)
	for sc.Scan() {
		if err := enc.Encode(s.Handle(sc.Bytes())); err != nil {
			return err
		}
		if s.Ended() {
			return nil
		}
	}
	return s.Close(eofReason())
}
