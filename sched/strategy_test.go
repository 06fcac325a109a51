package sched

import (
	"strings"
	"testing"
)

func withPolicy(p Policy) func(*Submitted) { return func(s *Submitted) { s.Policy = &p } }

func labelled(name string, cpu float64, labels map[string]string) NodeJoined {
	n := joined(name, cpu)
	n.Labels = labels
	return n
}

// TestSpreadGoesRoundTheNodes: SPREAD tasks from one submitter land on every node in turn,
// where DEFAULT tasks keep to the submitter's node while it has room.
func TestSpreadGoesRoundTheNodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy *Policy
		want   map[NodeID]int
	}{
		{"default keeps to the submitter's node", nil, map[NodeID]int{0: 3}},
		{"spread", &Policy{Spread: true}, map[NodeID]int{0: 1, 1: 1, 2: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, joined("a", 4), joined("b", 4), joined("c", 4))
			for i := TaskID(1); i <= 3; i++ {
				h.submit(i, cpus(1), func(s *Submitted) { s.Policy = tc.policy })
			}
			got := map[NodeID]int{}
			for _, r := range h.runs {
				got[r.Node]++
			}
			if len(got) != len(tc.want) {
				t.Fatalf("tasks per node %v, want %v", got, tc.want)
			}
			for n, k := range tc.want {
				if got[n] != k {
					t.Fatalf("tasks per node %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestNodeAffinity: hard affinity runs on its node or waits for room there, fails for a lost
// or unknown node and for a node too small; soft affinity prefers its node and falls back.
func TestNodeAffinity(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   Policy
		lose     bool    // node b is lost before the task is submitted
		fill     bool    // node b is full when the task is submitted
		res      float64 // CPUs the task asks for
		wantNode NodeID  // where it runs (NoNode: it does not run now)
		wantFail string  // the Fail's kind, "" for none
		wantMsg  string
	}{
		{name: "hard on its node", policy: Policy{Affinity: true, Node: 1, NodeName: "b"}, res: 1, wantNode: 1},
		{name: "hard waits for room on its node", policy: Policy{Affinity: true, Node: 1, NodeName: "b"}, fill: true, res: 1, wantNode: NoNode},
		{name: "hard on a lost node fails", policy: Policy{Affinity: true, Node: 1, NodeName: "b"}, lose: true, res: 1, wantNode: NoNode, wantFail: ErrKindUnschedulable, wantMsg: "not alive"},
		{name: "hard on an unknown node fails", policy: Policy{Affinity: true, Node: NoNode, NodeName: "zz"}, res: 1, wantNode: NoNode, wantFail: ErrKindUnschedulable, wantMsg: "not a node of this cluster"},
		{name: "hard on a node too small fails", policy: Policy{Affinity: true, Node: 1, NodeName: "b"}, res: 3, wantNode: NoNode, wantFail: ErrKindInfeasible, wantMsg: "node b"},
		{name: "soft on its node", policy: Policy{Affinity: true, Node: 1, NodeName: "b", Soft: true}, res: 1, wantNode: 1},
		{name: "soft on a full node falls back", policy: Policy{Affinity: true, Node: 1, NodeName: "b", Soft: true}, fill: true, res: 1, wantNode: 0},
		{name: "soft on a lost node falls back", policy: Policy{Affinity: true, Node: 1, NodeName: "b", Soft: true}, lose: true, res: 1, wantNode: 0},
		{name: "soft on an unknown node falls back", policy: Policy{Affinity: true, Node: NoNode, NodeName: "zz", Soft: true}, res: 1, wantNode: 0},
		{name: "soft falls back only where its labels allow", policy: Policy{Affinity: true, Node: 1, NodeName: "b", Soft: true, Labels: []LabelReq{{LabelNodeID, "in", []string{"c"}}}}, res: 1, wantNode: 2},
		{name: "soft with labels no node matches fails", policy: Policy{Affinity: true, Node: 1, NodeName: "b", Soft: true, Labels: []LabelReq{{"zone", "in", []string{"mars"}}}}, res: 1, wantNode: NoNode, wantFail: ErrKindInfeasible, wantMsg: "label_selector"},
		{name: "hard on a node its labels exclude fails", policy: Policy{Affinity: true, Node: 1, NodeName: "b", Labels: []LabelReq{{LabelNodeID, "in", []string{"a"}}}}, res: 1, wantNode: NoNode, wantFail: ErrKindInfeasible, wantMsg: "does not match its label_selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, joined("a", 4), joined("b", 2), joined("c", 1))
			if tc.lose {
				h.step(NodeLost{Node: 1})
			}
			if tc.fill {
				h.submit(100, cpus(2), withPolicy(Policy{Affinity: true, Node: 1, NodeName: "b"}))
				if h.runs[100].Node != 1 {
					t.Fatalf("the filler did not run on b: %v", h.log)
				}
			}
			acts := h.submit(1, cpus(tc.res), withPolicy(tc.policy))
			r, ran := h.runs[1]
			switch {
			case tc.wantNode == NoNode && ran:
				t.Fatalf("ran on node %d, want it not to run: %v", r.Node, acts)
			case tc.wantNode != NoNode && (!ran || r.Node != tc.wantNode):
				t.Fatalf("ran=%v on node %d, want node %d: %v", ran, r.Node, tc.wantNode, acts)
			}
			f, failed := failOf(acts, 1)
			if failed != (tc.wantFail != "") || failed && (f.Kind != tc.wantFail || !strings.Contains(f.Msg, tc.wantMsg)) {
				t.Fatalf("fail = %v %+v, want kind %q naming %q", failed, f, tc.wantFail, tc.wantMsg)
			}
			if tc.fill && tc.wantNode == NoNode && tc.wantFail == "" {
				// it waited: room on b places it there, not on idle a
				acts = h.step(TaskFinished{Task: 100})
				if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 1 }); !ok || r.Node != 1 {
					t.Fatalf("after b freed up the task should run on b: %v", acts)
				}
			}
		})
	}
}

// TestHardAffinityFailsWhenItsNodeIsLost: a task waiting for room on its node fails when the
// node goes.
func TestHardAffinityFailsWhenItsNodeIsLost(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 4), joined("b", 1))
	hard := withPolicy(Policy{Affinity: true, Node: 1, NodeName: "b"})
	h.submit(1, cpus(1), hard)
	h.submit(2, cpus(1), hard)
	if _, ok := h.runs[2]; ok {
		t.Fatalf("t2 ran although b is full")
	}
	acts := h.step(NodeLost{Node: 1})
	if f, ok := failOf(acts, 2); !ok || f.Kind != ErrKindUnschedulable {
		t.Fatalf("t2 should fail unschedulable when b is lost: %v", acts)
	}
	if f, ok := failOf(acts, 1); !ok || f.Kind != ErrKindUnschedulable {
		t.Fatalf("t1 ran on b and cannot be retried elsewhere: %v", acts)
	}
}

// TestLabelSelector: only matching nodes; no match fails at once; the default node-id label.
func TestLabelSelector(t *testing.T) {
	for _, tc := range []struct {
		name     string
		labels   []LabelReq
		res      float64
		wantNode NodeID
		wantMsg  string // the Fail's message contains it ("" for no failure)
	}{
		{name: "equals", labels: []LabelReq{{"zone", "in", []string{"east"}}}, res: 1, wantNode: 1},
		{name: "in", labels: []LabelReq{{"zone", "in", []string{"north", "east"}}}, res: 1, wantNode: 1},
		{name: "not in skips the node with the label", labels: []LabelReq{{"zone", "!in", []string{"west"}}}, res: 1, wantNode: 1},
		{name: "not in matches a node without the label", labels: []LabelReq{{"disk", "!in", []string{"hdd"}}}, res: 1, wantNode: 0},
		{name: "node id label", labels: []LabelReq{{LabelNodeID, "in", []string{"c"}}}, res: 1, wantNode: 2},
		{name: "every requirement must hold", labels: []LabelReq{{"zone", "in", []string{"east"}}, {"gpu", "in", []string{"a100"}}}, res: 1, wantNode: 1},
		{name: "no node matches", labels: []LabelReq{{"zone", "in", []string{"mars"}}}, res: 1, wantNode: NoNode, wantMsg: "no live node of the cluster matches"},
		{name: "matching nodes too small", labels: []LabelReq{{"zone", "in", []string{"east"}}}, res: 3, wantNode: NoNode, wantMsg: "none of the 1 live nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, labelled("a", 4, map[string]string{"zone": "west"}),
				labelled("b", 2, map[string]string{"zone": "east", "gpu": "a100"}), labelled("c", 4, nil))
			acts := h.submit(1, cpus(tc.res), withPolicy(Policy{Labels: tc.labels}))
			if tc.wantMsg != "" {
				f, ok := failOf(acts, 1)
				if !ok || f.Kind != ErrKindInfeasible || !strings.Contains(f.Msg, tc.wantMsg) {
					t.Fatalf("want an infeasible failure naming %q: %v", tc.wantMsg, acts)
				}
				return
			}
			if r, ok := h.runs[1]; !ok || r.Node != tc.wantNode {
				t.Fatalf("ran on %v (%v), want node %d: %v", r.Node, ok, tc.wantNode, acts)
			}
		})
	}
}

// TestLabelledQueueDoesNotBlockOthers: a selector task that waits for its node does not hold
// up tasks of the same shape without one.
func TestLabelledQueueDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t, Config{}, labelled("a", 1, map[string]string{"k": "v"}), joined("b", 2))
	sel := withPolicy(Policy{Labels: []LabelReq{{"k", "in", []string{"v"}}}})
	h.submit(1, cpus(1), sel)
	h.submit(2, cpus(1), sel) // waits for a
	h.submit(3, cpus(1))
	if _, ok := h.runs[2]; ok {
		t.Fatalf("t2 ran although its only node is full")
	}
	if r, ok := h.runs[3]; !ok || r.Node != 1 {
		t.Fatalf("t3 (no selector) should run on b: %v", h.log)
	}
}

// TestPolicyValidation: a malformed policy is refused as an event error.
func TestPolicyValidation(t *testing.T) {
	for _, p := range []Policy{
		{Spread: true, Affinity: true, Node: 0},
		{Labels: []LabelReq{{"", "in", []string{"x"}}}},
		{Labels: []LabelReq{{"k", "==", []string{"x"}}}},
		{Labels: []LabelReq{{"k", "in", nil}}},
	} {
		c := New(Config{})
		_ = c.Step(joined("a", 1))
		_ = c.Step(JobStarted{Job: 1, Driver: 0})
		p := p
		if err := c.Step(Submitted{Task: 1, Job: 1, Name: "t", Res: cpus(1), Bundle: -1, Policy: &p}); err == nil {
			t.Fatalf("policy %+v accepted", p)
		}
	}
}

// TestRetryExceptions: a task that raised a retryable exception runs again while retries are
// left, on an idle worker, then ends as it answered.
func TestRetryExceptions(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1))
	h.submit(1, cpus(1), func(s *Submitted) { s.Retries = 2 })
	for attempt := 1; attempt <= 2; attempt++ {
		if !h.c.CanRetry(1) {
			t.Fatalf("attempt %d: CanRetry false with retries left", attempt)
		}
		acts := h.step(TaskFinished{Task: 1, Retry: true})
		if r, ok := find[Retry](acts, nil); !ok || r.Attempt != attempt {
			t.Fatalf("attempt %d: want a Retry: %v", attempt, acts)
		}
		h.step(Tick{Now: int64(attempt) * 10000})
		if r := h.runs[1]; r.Attempt != attempt {
			t.Fatalf("attempt %d: the task did not run again: %+v", attempt, r)
		}
	}
	if h.c.CanRetry(1) {
		t.Fatalf("CanRetry true with no retries left")
	}
	acts := h.step(TaskFinished{Task: 1, Retry: true})
	if count[Retry](acts) != 0 || h.c.Stats().Tasks != 0 {
		t.Fatalf("with no retries left the task should end: %v", acts)
	}
	if n := count[StartWorker](h.log); n != 1 {
		t.Fatalf("retries started %d workers, want the one reused", n)
	}
}

// TestWorkerExitsAfterMaxCalls: a worker that leaves after its task is not reused; the next
// task gets a new one and nothing fails.
func TestWorkerExitsAfterMaxCalls(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1))
	h.submit(1, cpus(1))
	h.submit(2, cpus(1))
	w1 := h.wOf[1]
	acts := h.step(TaskFinished{Task: 1, WorkerExits: true})
	if k, ok := find[KillWorker](acts, nil); !ok || k.Worker != w1 {
		t.Fatalf("want worker %d let go: %v", w1, acts)
	}
	r, ok := find[Run](acts, func(r Run) bool { return r.Task == 2 })
	if !ok || r.Worker == w1 {
		t.Fatalf("t2 should run on a new worker: %v", acts)
	}
	if count[Fail](h.log) != 0 {
		t.Fatalf("nothing should fail: %v", h.log)
	}
}
