package obs

import (
	"encoding/json"
	"sort"
	"time"
)

// TraceEvent is one event of the Chrome trace event format (the "JSON Array Format" of
// "Trace Event Format", which chrome://tracing and Perfetto open): a complete event ("X") per
// task attempt, on a process per node and a thread per worker, and metadata ("M") naming them.
type TraceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	TS   float64        `json:"ts"`            // microseconds since the cluster started
	Dur  *float64       `json:"dur,omitempty"` // X events
	PID  int            `json:"pid"`
	TID  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// Trace is the document `shoal timeline` writes.
type Trace struct {
	TraceEvents     []TraceEvent `json:"traceEvents"`
	DisplayTimeUnit string       `json:"displayTimeUnit"`
	// OtherData says what the trace holds (Perfetto shows it in the trace's info).
	OtherData map[string]any `json:"otherData"`
}

// Timeline returns every task the recorder holds as trace events: tasks that ran on their
// node's process and their worker's thread, from start to end (now for those still
// running); tasks that never ran (failed before, or still pending) on a "not started" thread
// of node 0's process, from submission. Every event's args hold the task id, function, state,
// node, worker, attempt and the times in seconds since the cluster started.
func (r *Recorder) Timeline() Trace {
	recs, dropped := r.Records()
	now := time.Now()
	if r != nil {
		now = r.now()
	}
	start := now
	if r != nil {
		start = r.start
	}
	us := func(t time.Time) float64 { return float64(t.Sub(start).Nanoseconds()) / 1e3 }
	nodes := map[string]int{}
	workers := map[string]int{}
	var events []TraceEvent
	pidOf := func(node string) int {
		if p, ok := nodes[node]; ok {
			return p
		}
		p := len(nodes) + 1
		nodes[node] = p
		name := "node " + node
		if node == "" {
			name = "not started"
		}
		events = append(events, TraceEvent{Name: "process_name", Ph: "M", PID: p, Args: map[string]any{"name": name}},
			TraceEvent{Name: "process_sort_index", Ph: "M", PID: p, Args: map[string]any{"sort_index": p}})
		return p
	}
	tidOf := func(pid int, worker string) int {
		if t, ok := workers[worker]; ok {
			return t
		}
		t := len(workers) + 1
		workers[worker] = t
		name := worker
		if worker == "" {
			name = "pending"
		}
		events = append(events, TraceEvent{Name: "thread_name", Ph: "M", PID: pid, TID: t, Args: map[string]any{"name": name}})
		return t
	}
	for _, rec := range recs {
		from, to := rec.Start, rec.End
		if from.IsZero() {
			from = rec.Submit
		}
		if to.IsZero() {
			to = now
		}
		pid := pidOf(rec.Node)
		tid := tidOf(pid, rec.Worker)
		d := max(us(to)-us(from), 0)
		args := map[string]any{"task_id": rec.Task.String(), "function": rec.Name, "kind": rec.Kind.String(),
			"state": rec.State.String(), "node": rec.Node, "worker": rec.Worker, "attempt": rec.Attempt,
			"job": rec.Job, "submitted_s": rec.Submit.Sub(start).Seconds()}
		if !rec.Start.IsZero() {
			args["start_s"] = rec.Start.Sub(start).Seconds()
		}
		if !rec.End.IsZero() {
			args["end_s"] = rec.End.Sub(start).Seconds()
		}
		if !rec.Actor.IsZero() {
			args["actor_id"] = rec.Actor.String()
		}
		if rec.Reason != "" {
			args["reason"] = rec.Reason
		}
		events = append(events, TraceEvent{Name: rec.Name, Cat: rec.Kind.String(), Ph: "X", TS: us(from), Dur: &d,
			PID: pid, TID: tid, Args: args})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Ph == "M" && events[j].Ph != "M" })
	if events == nil {
		events = []TraceEvent{}
	}
	return Trace{TraceEvents: events, DisplayTimeUnit: "ms", OtherData: map[string]any{
		"producer": "shoal", "cluster_start": start.UTC().Format(time.RFC3339Nano), "tasks": len(recs), "dropped_tasks": dropped}}
}

// TimelineJSON is Timeline as JSON.
func (r *Recorder) TimelineJSON() []byte {
	b, _ := json.Marshal(r.Timeline())
	return b
}
