package nodeagent

import (
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

// Table tests of member-local scheduling's member side (memberlocal.go): no processes; the
// head is a recorder of what is sent to it, each worker's store connection a pipe.

type toHead struct {
	mu     sync.Mutex
	leases []wire.LeaseRequest
	dones  []wire.LocalDone
	spills []wire.LocalSpill
}

func (h *toHead) send(t wire.Type, body any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch t {
	case wire.TLeaseRequest:
		h.leases = append(h.leases, *body.(*wire.LeaseRequest))
	case wire.TLocalDone:
		h.dones = append(h.dones, *body.(*wire.LocalDone))
	case wire.TLocalSpill:
		h.spills = append(h.spills, *body.(*wire.LocalSpill))
	}
	return nil
}

func (h *toHead) leased() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range h.leases {
		n += l.N
	}
	return n
}

func (h *toHead) done() []wire.LocalDone {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]wire.LocalDone(nil), h.dones...)
}

type sig struct {
	worker string
	sig    syscall.Signal
}

type localFixture struct {
	t      *testing.T
	l      *memberLocal
	head   *toHead
	mu     sync.Mutex
	sigs   []sig
	stored map[wire.ID]bool
}

func newLocalFixture(t *testing.T, cpus int) *localFixture {
	f := &localFixture{t: t, head: &toHead{}, stored: map[wire.ID]bool{}}
	f.l = newMemberLocal(hclog.NewNullLogger(), cpus, f.head.send, func(id wire.ID, cid uint64) (wire.Obj, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.stored[id] {
			return wire.Obj{}, false
		}
		return wire.Obj{ID: id, Fmt: wire.FmtPython, Path: "/dev/shm/x", Size: 1 << 20}, true
	}, func(w string, s syscall.Signal) {
		f.mu.Lock()
		f.sigs = append(f.sigs, sig{w, s})
		f.mu.Unlock()
	})
	for _, w := range []string{"sub", "l1", "l2", "l3"} {
		f.l.spawned(w, []string{"SHOAL_NODE_ID=m1", "SHOAL_JOB_ID=job1"})
	}
	return f
}

// done flushes the member's batch and returns what went to the head, one LOCAL_DONE per task.
func (f *localFixture) done() []wire.LocalDone {
	f.l.mu.Lock()
	f.l.flushDone()
	f.l.mu.Unlock()
	var out []wire.LocalDone
	for _, d := range f.head.done() {
		for i := range d.Rets {
			out = append(out, wire.LocalDone{Rets: d.Rets[i : i+1], Tasks: d.Tasks[i : i+1]})
		}
	}
	return out
}

// peer is a worker's end of its store connection: the agent's answers arrive on frames.
type peer struct {
	conn   *wire.Conn
	frames chan wire.Frame
}

func newPeer(t *testing.T) *peer {
	agent, mine := net.Pipe()
	p := &peer{conn: wire.NewConn(agent), frames: make(chan wire.Frame, 64)}
	go func() {
		for {
			fr, err := wire.ReadFrame(mine)
			if err != nil {
				close(p.frames)
				return
			}
			p.frames <- fr
		}
	}()
	t.Cleanup(func() { agent.Close(); mine.Close() })
	return p
}

func (p *peer) next(t *testing.T) wire.Frame {
	t.Helper()
	select {
	case fr, ok := <-p.frames:
		if !ok {
			t.Fatal("connection closed")
		}
		return fr
	case <-time.After(5 * time.Second):
		t.Fatal("no answer in 5 s")
	}
	return wire.Frame{}
}

func (p *peer) none(t *testing.T) {
	t.Helper()
	select {
	case fr := <-p.frames:
		t.Fatalf("unexpected frame type %d seq %d", fr.Type, fr.Seq)
	case <-time.After(50 * time.Millisecond):
	}
}

func (p *peer) exec(t *testing.T, seq uint64) wire.Task {
	t.Helper()
	fr := p.next(t)
	if fr.Type != wire.TExec || fr.Seq != seq {
		t.Fatalf("got frame %d seq %d, want EXEC for seq %d", fr.Type, fr.Seq, seq)
	}
	var s wire.Task
	if err := fr.Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func taskID(n byte) wire.ID { return wire.ID{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, n} }

func plain(n byte) *wire.Task {
	return &wire.Task{Task: taskID(n), Kind: wire.KindTask, Fn: wire.ID{9}, Name: "f", Nret: 1, Res: map[string]float64{"CPU": 1}, Retries: 1}
}

func withCode(s *wire.Task) *wire.Task { s.Fnb = []byte("code"); return s }

func doneOf(s wire.Task, data string) *wire.Done {
	return &wire.Done{Task: s.Task, Rets: []wire.Ret{{ID: s.Task.WithIndex(1), Fmt: wire.FmtPython, Data: []byte(data)}}}
}

func TestEligible(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*wire.Task)
		why  string
	}{
		{"plain", func(*wire.Task) {}, ""},
		{"no resources named", func(s *wire.Task) { s.Res = nil }, ""},
		{"actor", func(s *wire.Task) { s.Kind = wire.KindActorCreate }, "not a plain task"},
		{"placement group", func(s *wire.Task) { s.PG = wire.ID{1} }, "a scheduling strategy"},
		{"spread", func(s *wire.Task) { s.Strategy = "SPREAD" }, "a scheduling strategy"},
		{"labels", func(s *wire.Task) { s.Selector = []wire.LabelReq{{Key: "a"}} }, "a scheduling strategy"},
		{"runtime env", func(s *wire.Task) { s.Renv = []byte("{}") }, "a runtime environment"},
		{"object argument", func(s *wire.Task) { s.Deps = []wire.ID{{1}} }, "object arguments"},
		{"nested ref", func(s *wire.Task) { s.Refs = []wire.ID{{1}} }, "object arguments"},
		{"two returns", func(s *wire.Task) { s.Nret = 2 }, "a task feature"},
		{"generator", func(s *wire.Task) { s.Gen = 1 }, "a task feature"},
		{"retry exceptions", func(s *wire.Task) { s.RetryExc = true }, "a task feature"},
		{"two CPUs", func(s *wire.Task) { s.Res = map[string]float64{"CPU": 2} }, "resources other than one CPU"},
		{"a GPU", func(s *wire.Task) { s.Res = map[string]float64{"CPU": 1, "GPU": 1} }, "resources other than one CPU"},
	}
	for _, c := range cases {
		s := plain(1)
		c.mod(s)
		if got := eligible(s); got != c.why {
			t.Errorf("%s: eligible = %q, want %q", c.name, got, c.why)
		}
	}
}

// Tasks queue for their job, leases are asked for within the node's CPUs, a lease runs them
// in order (the code sent once), and each value goes to the head and to its submitter's get.
func TestLocalRunsOnLeases(t *testing.T) {
	f := newLocalFixture(t, 2)
	sub := newPeer(t)
	if r := f.l.submit(1, "sub", plain(1)); r.Local || r.Why != "its code is not here" {
		t.Fatalf("a task whose code never came: %+v", r)
	}
	for n := byte(1); n <= 3; n++ {
		s := plain(n)
		if n == 1 {
			s = withCode(s)
		}
		if r := f.l.submit(1, "sub", s); !r.Local {
			t.Fatalf("task %d refused: %s", n, r.Why)
		}
	}
	if f.head.leased() != 2 {
		t.Fatalf("asked for %d leases for 3 queued tasks on 2 CPUs, want 2", f.head.leased())
	}
	if r := f.l.submit(1, "stranger", plain(9)); r.Local {
		t.Fatal("took a task from a worker this node did not start")
	}
	le := newPeer(t)
	if err := f.l.next(le.conn, 2, 10, "l1", &wire.LeaseNext{Lease: wire.ID{0xAA}}); err != nil {
		t.Fatal(err)
	}
	s1 := le.exec(t, 10)
	if s1.Task != taskID(1) || string(s1.Fnb) != "code" || s1.Attempt != 0 {
		t.Fatalf("first task %+v", s1)
	}
	if err := f.l.next(le.conn, 2, 11, "l1", &wire.LeaseNext{Lease: wire.ID{0xAA}, Done: doneOf(s1, "v1")}); err != nil {
		t.Fatal(err)
	}
	if s2 := le.exec(t, 11); s2.Task != taskID(2) || s2.Fnb != nil {
		t.Fatalf("second task %+v (the code goes once per lease)", s2)
	}
	d := f.done()
	if len(d) != 1 || d[0].Rets[0].ID != taskID(1).WithIndex(1) || string(d[0].Rets[0].Data) != "v1" || d[0].Rets[0].Owner != "sub" ||
		len(d[0].Tasks) != 1 || d[0].Tasks[0].Worker != "l1" || d[0].Tasks[0].Job != "job1" {
		t.Fatalf("to the head: %+v", d)
	}
	// the submitter's get: the value once (then the head has it), a running task pending
	if err := f.l.get(sub.conn, 1, 20, &wire.LocalGet{IDs: []wire.ID{taskID(1).WithIndex(1), taskID(2).WithIndex(1), taskID(8).WithIndex(1)}}); err != nil {
		t.Fatal(err)
	}
	var g wire.LocalGetReply
	fr := sub.next(t)
	if err := fr.Decode(&g); err != nil || fr.Seq != 20 {
		t.Fatal(fr.Seq, err)
	}
	if string(g.Objs[0].Data) != "v1" || !g.Objs[1].ID.IsZero() || !g.Objs[2].ID.IsZero() || len(g.Pending) != 1 || g.Pending[0] != 1 {
		t.Fatalf("get: %+v", g)
	}
	f.l.get(sub.conn, 1, 21, &wire.LocalGet{IDs: []wire.ID{taskID(1).WithIndex(1)}})
	g = wire.LocalGetReply{}
	sub.next(t).Decode(&g)
	if !g.Objs[0].ID.IsZero() {
		t.Fatal("a value given once was given again (the head has it from then on)")
	}
}

// A get with a timeout waits for the value; a get that times out says what is pending.
func TestLocalGetWaits(t *testing.T) {
	f := newLocalFixture(t, 1)
	sub, le := newPeer(t), newPeer(t)
	f.l.submit(1, "sub", withCode(plain(1)))
	f.l.next(le.conn, 2, 1, "l1", &wire.LeaseNext{Lease: wire.ID{0xAA}})
	s1 := le.exec(t, 1)
	f.l.get(sub.conn, 1, 5, &wire.LocalGet{IDs: []wire.ID{taskID(1).WithIndex(1)}, TimeoutMS: 30})
	var g wire.LocalGetReply
	g = wire.LocalGetReply{}
	sub.next(t).Decode(&g)
	if len(g.Pending) != 1 {
		t.Fatalf("timed-out get: %+v", g)
	}
	f.l.mu.Lock()
	kept := len(f.l.waiters[taskID(1).WithIndex(1)])
	f.l.mu.Unlock()
	if kept != 0 {
		t.Fatalf("a get that timed out is still kept as a waiter (%d): the SDK's 50 ms slices would pile up", kept)
	}
	f.l.get(sub.conn, 1, 6, &wire.LocalGet{IDs: []wire.ID{taskID(1).WithIndex(1)}, TimeoutMS: -1})
	sub.none(t)
	f.l.next(le.conn, 2, 2, "l1", &wire.LeaseNext{Lease: wire.ID{0xAA}, Done: doneOf(s1, "v")})
	fr := sub.next(t)
	g = wire.LocalGetReply{}
	fr.Decode(&g)
	if fr.Seq != 6 || string(g.Objs[0].Data) != "v" || len(g.Pending) != 0 {
		t.Fatalf("waiting get: seq %d %+v", fr.Seq, g)
	}
	// a stored value is mapped from the store each time
	s2 := plain(2)
	f.l.submit(1, "sub", s2)
	le.exec(t, 2)
	f.mu.Lock()
	f.stored[taskID(2).WithIndex(1)] = true
	f.mu.Unlock()
	f.l.next(le.conn, 2, 3, "l1", &wire.LeaseNext{Lease: wire.ID{0xAA}, Done: &wire.Done{Task: taskID(2),
		Rets: []wire.Ret{{ID: taskID(2).WithIndex(1), Fmt: wire.FmtPython, Stored: true, Size: 1 << 20}}}})
	for seq := uint64(7); seq <= 8; seq++ {
		f.l.get(sub.conn, 1, seq, &wire.LocalGet{IDs: []wire.ID{taskID(2).WithIndex(1)}})
		g = wire.LocalGetReply{}
		sub.next(t).Decode(&g)
		if g.Objs[0].Path != "/dev/shm/x" {
			t.Fatalf("stored value, get %d: %+v", seq, g)
		}
	}
	d := f.done()
	if r := d[len(d)-1].Rets[0]; !r.Stored || r.Size != 1<<20 {
		t.Fatalf("the head is told of a stored value as %+v", r)
	}
	f.l.forget(1, []wire.ID{taskID(2).WithIndex(1)})
	f.l.get(sub.conn, 1, 9, &wire.LocalGet{IDs: []wire.ID{taskID(2).WithIndex(1)}})
	g = wire.LocalGetReply{}
	sub.next(t).Decode(&g)
	if !g.Objs[0].ID.IsZero() {
		t.Fatal("a value its submitter forgot was still given")
	}
}

// Past the wait a function's known time allows (or, before it is known, a few per CPU), a
// task is answered "spill": the head may run it elsewhere.
func TestLocalSpill(t *testing.T) {
	f := newLocalFixture(t, 2)
	f.l.submit(1, "sub", withCode(plain(1)))
	for n := byte(2); n <= 8; n++ {
		if r := f.l.submit(1, "sub", plain(n)); !r.Local {
			t.Fatalf("task %d of an unknown time spilled: %s", n, r.Why)
		}
	}
	if r := f.l.submit(1, "sub", plain(9)); r.Local || r.Why != "this node's share is taken" {
		t.Fatalf("the 9th task of an unknown time on 2 CPUs: %+v", r)
	}
	g := newLocalFixture(t, 2)
	g.l.est[wire.ID{9}] = 40 * time.Millisecond
	g.l.submit(1, "sub", withCode(plain(1))) // waits 40 ms / 2 CPUs
	g.l.submit(1, "sub", plain(2))           // 80 / 2
	if r := g.l.submit(1, "sub", plain(3)); r.Local {
		t.Fatal("a task that would wait 60 ms here was taken")
	}
	if r := g.l.submit(1, "sub", plain(1)); r.Local || r.Why != "a task of that id is here already" {
		t.Fatalf("a second task of the same id: %+v", r)
	}
	// no CPU free elsewhere (the head's word): it waits here, up to spillAlways
	h := newLocalFixture(t, 2)
	h.l.est[wire.ID{9}] = 400 * time.Millisecond
	h.l.setElsewhere(0)
	h.l.submit(1, "sub", withCode(plain(1)))
	for n := byte(2); n <= 10; n++ { // up to 10 x 400 ms / 2 CPUs = 2 s
		if r := h.l.submit(1, "sub", plain(n)); !r.Local {
			t.Fatalf("task %d spilled with no CPU free elsewhere: %s", n, r.Why)
		}
	}
	if r := h.l.submit(1, "sub", plain(11)); r.Local {
		t.Fatal("a task that would wait 2.2 s here was taken")
	}
	h.l.setElsewhere(1.5)
	if r := h.l.submit(1, "sub", plain(12)); r.Local {
		t.Fatal("with a CPU free elsewhere, a task that would wait here was taken")
	}
}

// Tasks queued while no other node had a free CPU go back to the head (LOCAL_SPILL) when the
// head says some have: the newest first, as many as those CPUs, while the rest would still wait
// longer than spillAfter; the code goes once; a get waiting for one is told "not here".
func TestLocalReoffer(t *testing.T) {
	f := newLocalFixture(t, 2)
	sub := newPeer(t)
	f.l.est[wire.ID{9}] = 400 * time.Millisecond
	f.l.setElsewhere(0)
	f.l.submit(1, "sub", withCode(plain(1)))
	for n := byte(2); n <= 10; n++ {
		if r := f.l.submit(1, "sub", plain(n)); !r.Local {
			t.Fatalf("task %d spilled with no CPU free elsewhere: %s", n, r.Why)
		}
	}
	f.l.get(sub.conn, 1, 5, &wire.LocalGet{IDs: []wire.ID{taskID(10).WithIndex(1)}, TimeoutMS: -1})
	f.l.get(sub.conn, 1, 6, &wire.LocalGet{IDs: []wire.ID{taskID(1).WithIndex(1), taskID(9).WithIndex(1)}, TimeoutMS: -1})
	sub.none(t)
	spilled := func() []wire.LocalSpill {
		f.head.mu.Lock()
		defer f.head.mu.Unlock()
		return append([]wire.LocalSpill(nil), f.head.spills...)
	}
	f.l.setElsewhere(3)
	sp := spilled()
	if len(sp) != 1 || sp[0].Job != "job1" || len(sp[0].Tasks) != 3 || sp[0].Tasks[0].Task != taskID(10) || sp[0].Tasks[2].Task != taskID(8) ||
		string(sp[0].Tasks[0].Fnb) != "code" || sp[0].Tasks[1].Fnb != nil {
		t.Fatalf("3 CPUs free elsewhere, 10 tasks of 400 ms queued on 2 CPUs: handed back %+v", sp)
	}
	fr := sub.next(t)
	var g wire.LocalGetReply
	fr.Decode(&g)
	if fr.Seq != 5 || !g.Objs[0].ID.IsZero() || len(g.Pending) != 0 {
		t.Fatalf("a get waiting for a task handed back: seq %d %+v (want \"not here\": the SDK asks the head)", fr.Seq, g)
	}
	sub.none(t) // the get for 1 and 9 still waits for 1
	f.l.setElsewhere(3)
	sp = spilled()
	if len(sp) != 2 || len(sp[1].Tasks) != 3 || sp[1].Tasks[0].Task != taskID(7) || sp[1].Tasks[0].Fnb != nil {
		t.Fatalf("second word of 3 free CPUs: %+v", sp[1:])
	}
	// 4 left: 4 x 400 ms / 2 CPUs is still more than spillAfter, but none is free elsewhere
	f.l.setElsewhere(0.5)
	if len(spilled()) != 2 {
		t.Fatal("handed tasks back with no whole CPU free elsewhere")
	}
	f.l.mu.Lock()
	q := len(f.l.jobs["job1"].queue)
	f.l.mu.Unlock()
	if q != 4 {
		t.Fatalf("%d tasks queued, want 4", q)
	}
	// a short queue stays: 3 x 10 ms / 2 CPUs is under spillAfter
	h := newLocalFixture(t, 2)
	h.l.est[wire.ID{9}] = 10 * time.Millisecond
	h.l.submit(1, "sub", withCode(plain(1)))
	h.l.submit(1, "sub", plain(2))
	h.l.submit(1, "sub", plain(3))
	h.l.setElsewhere(8)
	h.head.mu.Lock()
	n := len(h.head.spills)
	h.head.mu.Unlock()
	if n != 0 {
		t.Fatal("handed back tasks that would start here within spillAfter")
	}
}

// A worker that dies with a task runs it again (max_retries) on another lease, then fails it;
// the submitter's end drops its queued tasks.
func TestLocalWorkerDies(t *testing.T) {
	f := newLocalFixture(t, 1)
	f.l.submit(1, "sub", withCode(plain(1)))
	f.l.submit(1, "sub", plain(2))
	a := newPeer(t)
	f.l.next(a.conn, 2, 1, "l1", &wire.LeaseNext{Lease: wire.ID{0xA}})
	a.exec(t, 1)
	f.l.closedConn(2)
	if f.head.leased() != 2 {
		t.Fatalf("leases asked after the lease's worker died: %d, want 2", f.head.leased())
	}
	b := newPeer(t)
	f.l.next(b.conn, 3, 1, "l2", &wire.LeaseNext{Lease: wire.ID{0xB}})
	if s := b.exec(t, 1); s.Task != taskID(1) || s.Attempt != 1 {
		t.Fatalf("after the death: %+v, want task 1's second attempt", s)
	}
	f.l.closedConn(3)
	d := f.done()
	if len(d) != 1 || d[0].Rets[0].Fmt != wire.FmtError || d[0].Tasks[0].Failed != "worker_died" || d[0].Tasks[0].Attempt != 1 {
		t.Fatalf("after max_retries: %+v", d)
	}
	f.l.closedConn(1) // the submitter
	if j := f.l.jobs["job1"]; j != nil && len(j.queue) != 0 || len(f.l.tasks) != 0 {
		t.Fatal("the tasks of a submitter that left are still queued")
	}
	// a task whose submitter left before its worker died is not run again (the job ends)
	f.l.submit(4, "sub", plain(5))
	c := newPeer(t)
	f.l.next(c.conn, 5, 1, "l3", &wire.LeaseNext{Lease: wire.ID{0xC}})
	c.exec(t, 1)
	f.l.closedConn(4)
	f.l.closedConn(5)
	if len(f.l.tasks) != 0 || len(f.l.jobs) != 0 {
		t.Fatalf("after its submitter and its worker left: %d tasks, %d jobs kept", len(f.l.tasks), len(f.l.jobs))
	}
}

// cancel: a queued task fails at once; a running one gets SIGINT (its worker answers) or,
// with force, SIGKILL and fails without a retry; recursive reaches what it submitted here.
func TestLocalCancel(t *testing.T) {
	f := newLocalFixture(t, 1)
	f.l.submit(1, "sub", withCode(plain(1)))
	f.l.submit(1, "sub", plain(2))
	if r := f.l.cancel(&wire.LocalCancel{Task: taskID(2)}); !r.Known {
		t.Fatal("a queued task is unknown to cancel")
	}
	if d := f.done(); len(d) != 1 || d[0].Tasks[0].Failed != "cancelled" || d[0].Rets[0].ID != taskID(2).WithIndex(1) {
		t.Fatalf("queued cancel: %+v", d)
	}
	le := newPeer(t)
	f.l.next(le.conn, 2, 1, "l1", &wire.LeaseNext{Lease: wire.ID{0xA}})
	le.exec(t, 1)
	// the running task submitted one of its own here (its lease's connection)
	f.l.submit(2, "l1", plain(3))
	f.l.cancel(&wire.LocalCancel{Task: taskID(1), Recursive: true})
	f.mu.Lock()
	if len(f.sigs) != 1 || f.sigs[0] != (sig{"l1", syscall.SIGINT}) {
		t.Fatalf("signals: %+v", f.sigs)
	}
	f.mu.Unlock()
	if d := f.done(); len(d) != 2 || d[1].Rets[0].ID != taskID(3).WithIndex(1) || d[1].Tasks[0].Failed != "cancelled" {
		t.Fatalf("recursive cancel of the running task's own: %+v", d)
	}
	f.l.cancel(&wire.LocalCancel{Task: taskID(1), Force: true})
	f.l.closedConn(2)
	d := f.done()
	if last := d[len(d)-1]; last.Tasks[0].Task != taskID(1) || last.Tasks[0].Failed != "cancelled" {
		t.Fatalf("force cancel: %+v (a retry would have been queued instead)", last)
	}
	if r := f.l.cancel(&wire.LocalCancel{Task: taskID(7)}); r.Known {
		t.Fatal("a task never submitted here is known to cancel")
	}
	// a task interrupted before it began (the worker ignored the SIGINT) that then answers
	// with its value ends as cancelled all the same
	f.l.submit(1, "sub", plain(4))
	le2 := newPeer(t)
	f.l.next(le2.conn, 6, 1, "l2", &wire.LeaseNext{Lease: wire.ID{0xB}})
	s4 := le2.exec(t, 1)
	f.l.cancel(&wire.LocalCancel{Task: taskID(4)})
	f.l.next(le2.conn, 6, 2, "l2", &wire.LeaseNext{Lease: wire.ID{0xB}, Done: doneOf(s4, "finished anyway")})
	d = f.done()
	if last := d[len(d)-1]; last.Tasks[0].Task != taskID(4) || last.Tasks[0].Failed != "cancelled" || last.Rets[0].Fmt != wire.FmtError {
		t.Fatalf("a missed interrupt: %+v", last)
	}
}

// A lease with nothing to do goes back to the head after leaseIdle.
func TestLocalIdleLeaseEnds(t *testing.T) {
	f := newLocalFixture(t, 1)
	le := newPeer(t)
	f.l.next(le.conn, 2, 4, "l1", &wire.LeaseNext{Lease: wire.ID{0xA}})
	fr := le.next(t)
	var e wire.LeaseEnd
	if fr.Seq != 4 || fr.Type != wire.TOK || fr.Decode(&e) != nil || !e.End {
		t.Fatalf("idle lease: frame %d seq %d %+v", fr.Type, fr.Seq, e)
	}
	if f.l.jobs["job1"].held != 0 || len(f.l.leases) != 0 {
		t.Fatal("an ended lease is still held")
	}
}

// A lease that fails before it gets a worker (the head's LEASE_FAILED): while another lease is
// held or asked for, the queue waits for it; when none is, the queued tasks fail with the
// lease's error instead of waiting for ever.
func TestLocalLeaseFails(t *testing.T) {
	f := newLocalFixture(t, 2)
	f.l.submit(1, "sub", withCode(plain(1)))
	f.l.submit(1, "sub", plain(2))
	if f.head.leased() != 2 {
		t.Fatalf("leases asked: %d, want 2", f.head.leased())
	}
	lf := &wire.LeaseFailed{Job: "job1", Kind: "worker_start_failed", Msg: "3 worker processes in a row failed to start"}
	f.l.leaseFailed(lf)
	if d := f.done(); len(d) != 0 {
		t.Fatalf("tasks failed while another lease was still asked for: %+v", d)
	}
	f.l.leaseFailed(lf)
	d := f.done()
	if len(d) != 2 || d[0].Tasks[0].Failed != "worker_start_failed" || d[1].Rets[0].Fmt != wire.FmtError || len(f.l.tasks) != 0 {
		t.Fatalf("after every lease failed: %+v", d)
	}
	f.l.leaseFailed(&wire.LeaseFailed{Job: "nobody"}) // a job with nothing here
}
