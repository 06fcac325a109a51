package train

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// The JSON-line server shoal.train.run's controller talks to: what it writes is History's,
// read back as `shoal train history` reads it.
func TestStateServerWritesTheHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	h, err := OpenHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.BeginAllocation("7", 0, "node[1-3]"); err != nil {
		t.Fatal(err)
	}
	in := strings.Join([]string{
		`{"op": "attempt", "attempt": 0, "world_size": 3, "layout": "node1: rank 0, node2: rank 1", "resumed_from": ""}`,
		`{"op": "checkpoint", "id": 1, "path": "/ck/5", "metrics": {"step": 5, "reason": "preemption"}}`,
		`{"op": "checkpoint", "id": 0, "path": "/ck/6"}`,
		`{"op": "end_attempt", "id": 1, "reason": "gone"}`,
		`not json`,
		`{"op": "end_attempt", "id": 1, "reason": "preempted", "code": 143}`,
		`{"op": "attempt", "attempt": 1, "world_size": 2, "layout": "node1: rank 0", "resumed_from": "/ck/5"}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	s := NewStateServer(h)
	if err := s.ServeState(strings.NewReader(in), &out, func() string { return EndCancelled }); err != nil {
		t.Fatal(err)
	}
	var replies []StateReply
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r StateReply
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("reply %q: %v", l, err)
		}
		replies = append(replies, r)
	}
	if len(replies) != 7 || replies[0].ID != 1 || replies[1].Error != "" || replies[2].Error == "" ||
		!strings.Contains(replies[3].Error, `end reason "gone"`) || replies[4].Error == "" || replies[5].Error != "" || replies[6].ID != 2 {
		t.Fatalf("replies: %+v", replies)
	}
	h.Close()
	r, err := OpenHistoryReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	allocs, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(allocs) != 1 || allocs[0].EndReason != EndCancelled || len(allocs[0].Attempts) != 2 {
		t.Fatalf("history: %+v", allocs)
	}
	a, b := allocs[0].Attempts[0], allocs[0].Attempts[1]
	if a.EndReason != EndPreempted || *a.ExitCode != 143 || len(a.Checkpoints) != 1 || *a.Checkpoints[0].Step != 5 ||
		a.Checkpoints[0].Path != "/ck/5" {
		t.Fatalf("attempt 0: %+v", a)
	}
	// EOF with attempt 1 open: it ends with the EOF's reason
	if b.EndReason != EndCancelled || b.ResumedFrom != "/ck/5" || b.WorldSize != 2 {
		t.Fatalf("attempt 1: %+v", b)
	}
	if p, _ := r.Latest(); p != "/ck/5" {
		t.Fatalf("Latest = %q", p)
	}
}

func TestStateServerEndsOnce(t *testing.T) {
	s := NewStateServer(nil) // no state dir: answered, nothing kept
	var out bytes.Buffer
	in := `{"op": "attempt", "attempt": 0, "world_size": 1}` + "\n" + `{"op": "end", "reason": "requeued"}` + "\n" + `{"op": "end", "reason": "lost"}` + "\n"
	if err := s.ServeState(strings.NewReader(in), &out, func() string { return EndLost }); err != nil {
		t.Fatal(err)
	}
	if !s.Ended() || strings.Count(out.String(), "\n") != 2 || strings.Contains(out.String(), "error") {
		t.Fatalf("out %q", out.String())
	}
	if r := s.Handle([]byte(`{"op": "attempt", "attempt": 1, "world_size": 1}`)); !strings.Contains(r.Error, "after the allocation's end") {
		t.Fatalf("after end: %+v", r)
	}
}

func FuzzStateRequest(f *testing.F) {
	for _, s := range []string{
		`{"op": "attempt", "attempt": 0, "world_size": 3, "layout": "node1: rank 0"}`,
		`{"op": "checkpoint", "id": 1, "path": "/ck", "metrics": {"step": 1e300}}`,
		`{"op": "end_attempt", "id": 1, "reason": "failed", "code": -1, "detail": "x"}`,
		`{"op": "end", "reason": "preempted"}`, `{"op": 3}`, `[]`, `{"metrics": {"step": "x"}}`,
	} {
		f.Add([]byte(s))
	}
	h, err := OpenHistory(filepath.Join(f.TempDir(), "state"))
	if err != nil {
		f.Fatal(err)
	}
	if err := h.BeginAllocation("1", 0, "n"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s := NewStateServer(h)
		s.Handle([]byte(`{"op": "attempt", "attempt": 0, "world_size": 1}`))
		r := s.Handle(line)
		var q StateRequest
		if json.Unmarshal(line, &q) != nil && !strings.HasPrefix(r.Error, ErrStateRequest.Error()) {
			t.Fatalf("%q is not a request, answered %+v", line, r)
		}
		if s.Ended() != (q.Op == "end" && r.Error == "") {
			t.Fatalf("%q: ended %v, answered %+v", line, s.Ended(), r)
		}
		if r.Error == "" && q.Op == "attempt" && r.ID <= 0 {
			t.Fatalf("%q: an attempt without an id: %+v", line, r)
		}
	})
}
