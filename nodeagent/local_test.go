package nodeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// TestHeadSideOfLocalTasks: the head node's agent's side of member-local scheduling
// (local.go), with the test playing the member node and its workers. A lease request becomes a
// lease task on a worker of that node; a value the member sends is found by a GET after its
// EXPECT, also when it arrived first; a value still expected when its node is lost fails; the
// lease's DONE frees its CPU.
func TestHeadSideOfLocalTasks(t *testing.T) {
	a := startTestHead(t, func(c *Config) { c.Heartbeat = Heartbeat{Timeout: time.Hour} })
	member, jr := joinTestMember(t, a, "m1", map[string]float64{"CPU": 2, "on_m1": 1})
	if !jr.LocalTasks {
		t.Fatal("NODE_JOIN's answer does not tell the member to run its workers' tasks")
	}
	member.Net().SetReadDeadline(time.Now().Add(30 * time.Second))
	spawned := func() (string, string) {
		t.Helper()
		for {
			f, err := member.Read()
			if err != nil {
				t.Fatalf("no SPAWN: %v", err)
			}
			if f.Type == wire.TSpawn {
				var s wire.Spawn
				f.Decode(&s)
				for _, e := range s.Env {
					if j, ok := strings.CutPrefix(e, "SHOAL_JOB_ID="); ok {
						return s.Worker, j
					}
				}
				t.Fatal("SPAWN without SHOAL_JOB_ID")
			}
		}
	}
	asWorker := func(id string) *wire.Conn {
		t.Helper()
		c, _, err := wire.Dial(a.TCPAddr(), spawnSecret, wire.Auth{Role: "worker", Lang: "go", PID: os.Getpid(), WorkerID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Net().SetReadDeadline(time.Now().Add(30 * time.Second))
		return c
	}
	readType := func(c *wire.Conn, typ wire.Type, seq uint64, v any) {
		t.Helper()
		for {
			f, err := c.Read()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if f.Type == typ && (seq == 0 || f.Seq == seq) {
				if err := f.Decode(v); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	// a task of the driver's on m1: the test becomes its worker, the submitter
	driver, tid := dialDriver(t, a)
	if err := driver.Send(wire.TSubmit, 0, &wire.Task{Task: tid.WithIndex(0), Kind: wire.KindTask, Name: "f", Lang: "go", Nret: 1,
		Res: map[string]float64{"CPU": 1, "on_m1": 1}, Bundle: -1, Deps: []wire.ID{}, Refs: []wire.ID{}}); err != nil {
		t.Fatal(err)
	}
	wid, job := spawned()
	w := asWorker(wid)
	var x wire.Task
	readType(w, wire.TExec, 0, &x)

	// the member asks for a lease: a second worker there gets a lease task
	member.Send(wire.TLeaseRequest, 0, &wire.LeaseRequest{Job: job, N: 1})
	lid, _ := spawned()
	lw := asWorker(lid)
	var lease wire.Task
	readType(lw, wire.TExec, 0, &lease)
	if lease.Kind != wire.KindLease || lease.Name != "shoal::lease" || lease.Res["CPU"] != 1 {
		t.Fatalf("lease task %+v", lease)
	}
	a.mu.Lock()
	avail := a.core.Avail(a.nodeByName("m1").cid)["CPU"]
	a.mu.Unlock()
	if avail != 0 {
		t.Fatalf("m1 has %g CPUs free with a task and a lease on its 2", avail)
	}
	// a lease asked for on a full node, then dropped (the member's queue emptied): it never
	// takes the CPU the first lease gives back below
	asked := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.mu.Lock()
			n := len(a.local2.asked[a.nodeByName("m1")])
			a.mu.Unlock()
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d leases wait for m1, want %d", n, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	member.Send(wire.TLeaseRequest, 0, &wire.LeaseRequest{Job: job, N: 1})
	asked(1)
	member.Send(wire.TLeaseRequest, 0, &wire.LeaseRequest{Job: job, Drop: 1})
	asked(0)

	val := func(n uint32) wire.ID { return wire.ID{7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, byte(n), 0, 0, 0, 1} }
	get := func(id wire.ID, seq uint64) wire.Obj {
		t.Helper()
		w.Send(wire.TGet, seq, &wire.Get{IDs: []wire.ID{id}, TimeoutMS: 10000})
		var r wire.GetReply
		readType(w, wire.TOK, seq, &r)
		if r.Timeout || len(r.Objs) != 1 {
			t.Fatalf("GET %s: %+v", id, r)
		}
		return r.Objs[0]
	}
	// expected, then sent
	w.Send(wire.TExpect, 0, &wire.Expect{IDs: []wire.ID{val(1)}, Node: "m1"})
	member.Send(wire.TLocalDone, 0, &wire.LocalDone{Rets: []wire.LocalRet{{ID: val(1), Fmt: wire.FmtRaw, Data: []byte("one"), Owner: wid}},
		Tasks: []wire.LocalTask{{Task: val(1).WithIndex(0), Name: "g", Job: job, Worker: lid}}})
	if o := get(val(1), 11); string(o.Data) != "one" {
		t.Fatalf("value sent after its EXPECT: %+v", o)
	}
	// sent first (another connection), then expected
	member.Send(wire.TLocalDone, 0, &wire.LocalDone{Rets: []wire.LocalRet{{ID: val(2), Fmt: wire.FmtRaw, Data: []byte("two"), Owner: wid}}})
	time.Sleep(50 * time.Millisecond)
	w.Send(wire.TExpect, 0, &wire.Expect{IDs: []wire.ID{val(2)}, Node: "m1"})
	if o := get(val(2), 12); string(o.Data) != "two" {
		t.Fatalf("value sent before its EXPECT: %+v", o)
	}
	// the worker waits for its member (BLOCK): its CPU is lent out meanwhile
	w.Send(wire.TBlock, 0, &wire.Block{On: true})
	w.Send(wire.TGet, 13, &wire.Get{IDs: []wire.ID{val(1)}, TimeoutMS: 1000}) // a round trip: BLOCK was handled
	var gr wire.GetReply
	readType(w, wire.TOK, 13, &gr)
	a.mu.Lock()
	avail = a.core.Avail(a.nodeByName("m1").cid)["CPU"]
	a.mu.Unlock()
	if avail != 1 {
		t.Fatalf("m1 has %g CPUs free while its task's worker waits for member-local tasks, want 1", avail)
	}
	w.Send(wire.TBlock, 0, &wire.Block{On: false})
	// the lease ends
	lw.Send(wire.TDone, 0, &wire.Done{Task: lease.Task, Rets: []wire.Ret{}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		avail = a.core.Avail(a.nodeByName("m1").cid)["CPU"]
		a.mu.Unlock()
		if avail == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("m1 has %g CPUs free after the lease's DONE, want 1", avail)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a task the member had queued and hands back (LOCAL_SPILL) runs as its submitter's, here on
	// the job's idle worker of m1 (its strategy); the submitter's EXPECT is its one reference
	w.Send(wire.TExpect, 0, &wire.Expect{IDs: []wire.ID{val(4), val(5)}, Node: "m1"})
	w.Send(wire.TGet, 14, &wire.Get{IDs: []wire.ID{}, TimeoutMS: 0}) // a round trip: the EXPECT was read
	readType(w, wire.TOK, 14, &gr)
	back := wire.Task{Task: val(4).WithIndex(0), Kind: wire.KindTask, Name: "h", Lang: "go", Fn: wire.ID{9}, Fnb: []byte("code"), Nret: 1,
		Res: map[string]float64{"CPU": 1}, Bundle: -1, Strategy: "NODE_AFFINITY", Node: "m1", Deps: []wire.ID{}, Refs: []wire.ID{}}
	stranger := back
	stranger.Task = val(6).WithIndex(0) // never EXPECTed: not the member's to hand back
	member.Send(wire.TLocalSpill, 0, &wire.LocalSpill{Job: job, Tasks: []wire.Task{back, stranger}, Owners: []string{wid, wid}})
	var h wire.Task
	readType(lw, wire.TExec, 0, &h)
	if h.Task != back.Task || string(h.Fnb) != "code" {
		t.Fatalf("the task handed back ran as %+v", h)
	}
	lw.Send(wire.TDone, 0, &wire.Done{Task: h.Task, Rets: []wire.Ret{{ID: val(4), Fmt: wire.FmtRaw, Data: []byte("four")}}})
	if o := get(val(4), 15); string(o.Data) != "four" {
		t.Fatalf("value of a task handed back: %+v", o)
	}
	a.mu.Lock()
	_, still := a.local2.wait[val(4)]
	_, ran := a.tasks[val(6).WithIndex(0)]
	a.mu.Unlock()
	if still || ran {
		t.Fatalf("after LOCAL_SPILL: still expected from m1 %v, the stranger taken %v", still, ran)
	}
	w.Send(wire.TDecref, 0, &wire.IDs{IDs: []wire.ID{val(4)}})
	deadline = time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		o := a.store.Lookup(val(4))
		a.mu.Unlock()
		if o == nil || o.Freed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the value of a task handed back outlived its submitter's one reference (counted twice)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// cancelled while on its way back (the member no longer knew it): it never runs
	w.Send(wire.TCancel, 16, &wire.Cancel{Object: val(5).WithIndex(0)})
	readType(w, wire.TOK, 16, &gr)
	five := back
	five.Task = val(5).WithIndex(0)
	member.Send(wire.TLocalSpill, 0, &wire.LocalSpill{Job: job, Tasks: []wire.Task{five}, Owners: []string{wid}})
	if o := get(val(5), 17); o.Fmt != wire.FmtError || !strings.Contains(string(o.Data), "cancelled") {
		t.Fatalf("a task cancelled on its way back: %+v", o)
	}
	// handed back before its submitter's EXPECT reached the head (another connection): it runs
	// when the EXPECT comes
	seven := back
	seven.Task = val(7).WithIndex(0)
	member.Send(wire.TLocalSpill, 0, &wire.LocalSpill{Job: job, Tasks: []wire.Task{seven}, Owners: []string{wid}})
	member.Send(wire.THeartbeat, 78, &wire.NodeStats{}) // a round trip: the LOCAL_SPILL was read
	var hb0 wire.HeartbeatReply
	readType(member, wire.THeartbeat, 78, &hb0)
	w.Send(wire.TExpect, 0, &wire.Expect{IDs: []wire.ID{val(7)}, Node: "m1"})
	readType(lw, wire.TExec, 0, &h)
	if h.Task != seven.Task {
		t.Fatalf("the task handed back before its EXPECT ran as %+v", h)
	}
	lw.Send(wire.TDone, 0, &wire.Done{Task: h.Task, Rets: []wire.Ret{{ID: val(7), Fmt: wire.FmtRaw, Data: []byte("seven")}}})
	if o := get(val(7), 18); string(o.Data) != "seven" {
		t.Fatalf("value of a task handed back before its EXPECT: %+v", o)
	}
	// the head's answer to a heartbeat says how many CPUs are free on the other nodes (its own
	// one, at its last look)
	time.Sleep(300 * time.Millisecond)
	member.Send(wire.THeartbeat, 77, &wire.NodeStats{})
	var hb wire.HeartbeatReply
	readType(member, wire.THeartbeat, 77, &hb)
	if hb.FreeElsewhere != 1 {
		t.Fatalf("free CPUs elsewhere in the heartbeat's answer: %g, want 1 (the head node's)", hb.FreeElsewhere)
	}
	// a worker that expected a value and left: the head forgets the expectation
	lw.Send(wire.TExpect, 0, &wire.Expect{IDs: []wire.ID{val(9)}, Node: "m1"})
	lw.Send(wire.TGet, 31, &wire.Get{IDs: []wire.ID{}, TimeoutMS: 0}) // a round trip: the EXPECT was read
	readType(lw, wire.TOK, 31, &gr)
	lw.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		_, still := a.local2.wait[val(9)]
		a.mu.Unlock()
		if !still {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the head still expects a value for a worker that left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// expected, and its node goes: the driver (whose worker's id it has) gets the error
	w.Send(wire.TExpect, 0, &wire.Expect{IDs: []wire.ID{val(3)}, Node: "m1"})
	w.Send(wire.TIncref, 0, &wire.IDs{IDs: []wire.ID{}}) // (ordering: the EXPECT is read before the member goes)
	time.Sleep(50 * time.Millisecond)
	driver.Send(wire.TIncref, 0, &wire.IDs{IDs: []wire.ID{val(3)}})
	member.Close()
	driver.Send(wire.TGet, 21, &wire.Get{IDs: []wire.ID{val(3)}, TimeoutMS: 10000})
	driver.Net().SetReadDeadline(time.Now().Add(30 * time.Second))
	readType(driver, wire.TOK, 21, &gr)
	if len(gr.Objs) != 1 || gr.Objs[0].Fmt != wire.FmtError || !strings.Contains(string(gr.Objs[0].Data), "node m1 was lost") {
		t.Fatalf("a value its lost node was to send: %+v", gr)
	}
}

// startTestHead starts a head node's agent of one CPU for a test (mod changes its Config).
func startTestHead(t *testing.T, mod func(*Config)) *Agent {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{ClusterID: "0123456789ab", Secret: spawnSecret, NodeID: "head",
		SessionDir: dir, StoreDir: filepath.Join(dir, "store"), SpillDir: filepath.Join(dir, "spill"),
		Resources: sched.Resources{"CPU": 1}, ObjectStoreMemory: 64 << 20, ListenTCP: "127.0.0.1:0"}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(hclog.NewNullLogger(), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// joinTestMember joins node to a as a member agent offering res; the test plays that agent.
func joinTestMember(t *testing.T, a *Agent, node string, res map[string]float64) (*wire.Conn, wire.NodeJoinReply) {
	t.Helper()
	member, _, err := wire.Dial(a.TCPAddr(), spawnSecret, wire.Auth{Role: "member", PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { member.Close() })
	var jr wire.NodeJoinReply
	if err := member.Call(wire.TNodeJoin, 1, &wire.NodeJoin{Node: node, Addr: "127.0.0.1", Resources: res}, &jr); err != nil {
		t.Fatal(err)
	}
	return member, jr
}
