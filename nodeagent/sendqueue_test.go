package nodeagent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func queueAgent(t *testing.T, lim wire.Limits, log hclog.Logger) *Agent {
	t.Helper()
	dir := t.TempDir()
	a, err := New(log, nil, Config{ClusterID: "0123456789ab", Secret: spawnSecret, NodeID: "head",
		SessionDir: dir, StoreDir: filepath.Join(dir, "store"), SpillDir: filepath.Join(dir, "spill"),
		Resources: sched.Resources{"CPU": 1}, ObjectStoreMemory: 64 << 20, SendQueue: lim})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func dialDriver(t *testing.T, a *Agent) (*wire.Conn, wire.ID) {
	t.Helper()
	c, w, err := wire.Dial(a.Addr(), spawnSecret, wire.Auth{Role: "driver", Lang: "go", PID: os.Getpid(), Exe: "/bin/true", Path: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var id wire.ID
	copy(id[:8], w.Client)
	id[11] = 1
	return c, id.WithIndex(0xFFFFFFFF)
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestAgentDisconnectsAClientThatDoesNotRead: a driver asks for a 64 KiB object 4,000 times
// (250 MiB of answers) and never reads. The agent disconnects it once its queue passes the bound,
// with a Warn line naming the driver and the bound, and its heap never grows by much more than
// the bound; a second driver that reads keeps working throughout.
func TestAgentDisconnectsAClientThatDoesNotRead(t *testing.T) {
	var logs syncBuffer
	lim := wire.Limits{Bytes: 4 << 20, Frames: 100000}
	a := queueAgent(t, lim, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn}))
	bad, badObj := dialDriver(t, a)
	good, goodObj := dialDriver(t, a)
	data := bytes.Repeat([]byte("shoal"), 64<<10/5)
	for _, p := range []struct {
		c  *wire.Conn
		id wire.ID
	}{{bad, badObj}, {good, goodObj}} {
		if err := p.c.Send(wire.TPut, 0, &wire.Put{ID: p.id, Fmt: wire.FmtRaw, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	// the good driver's round trip: its object, whole
	roundTrip := func(seq uint64) error {
		var r wire.GetReply
		if err := good.Call(wire.TGet, seq, &wire.Get{IDs: []wire.ID{goodObj}, TimeoutMS: 10000}, &r); err != nil {
			return err
		}
		if len(r.Objs) != 1 || !bytes.Equal(r.Objs[0].Data, data) {
			return fmt.Errorf("GET answered %d objects, not the object put", len(r.Objs))
		}
		return nil
	}
	if err := roundTrip(1); err != nil {
		t.Fatal(err)
	}
	base := heapInUse()

	// sample the heap while the bad driver floods
	stop := make(chan struct{})
	peak := make(chan uint64, 1)
	go func() {
		var top uint64
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				peak <- top
				return
			default:
			}
			runtime.ReadMemStats(&m)
			top = max(top, m.HeapInuse)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	const gets = 4000
	sent := 0
	for i := 0; i < gets; i++ {
		if err := bad.Send(wire.TGet, uint64(i+1), &wire.Get{IDs: []wire.ID{badObj}, TimeoutMS: -1}); err != nil {
			break // our own end saw the agent close the connection
		}
		sent++
		if i%200 == 199 {
			if err := roundTrip(uint64(10 + i)); err != nil {
				t.Fatalf("the good driver after %d GETs of the bad one: %v", i+1, err)
			}
		}
	}
	// The bad driver reads only now: at most what the sockets held, then the end.
	bad.Net().SetReadDeadline(time.Now().Add(30 * time.Second))
	got := 0
	var rerr error
	for {
		if _, rerr = bad.Read(); rerr != nil {
			break
		}
		got++
	}
	close(stop)
	top := <-peak
	var ne net.Error
	if errors.As(rerr, &ne) && ne.Timeout() {
		t.Fatalf("the agent did not disconnect the driver that did not read (%d answers read)", got)
	}
	if got >= sent {
		t.Fatalf("read all %d answers: the agent never disconnected", got)
	}
	log := logs.String()
	if !strings.Contains(log, "disconnecting a client that does not read its messages") || !strings.Contains(log, "role=driver") ||
		!strings.Contains(log, fmt.Sprintf("pid=%d", os.Getpid())) || !strings.Contains(log, fmt.Sprintf("bound %d frames, %d bytes", lim.Frames, lim.Bytes)) {
		t.Fatalf("no Warn line naming the driver and the bound:\n%s", log)
	}
	if grew := int64(top) - int64(base); grew > 48<<20 {
		t.Fatalf("the agent's heap grew by %d MiB while the driver did not read (bound %d MiB)", grew>>20, lim.Bytes>>20)
	}
	t.Logf("sent %d GETs, read %d answers before the end (%v); heap peak %d MiB over %d MiB", sent, got, rerr, (top-base)>>20, base>>20)
	if err := roundTrip(99999); err != nil {
		t.Fatalf("the good driver after the bad one was cut: %v", err)
	}
}

// TestUnauthenticatedQueuesNothing: a connection that has not finished the handshake gets the
// HELLO and nothing it can make grow: requests sent before AUTH end the connection.
func TestUnauthenticatedQueuesNothing(t *testing.T) {
	a := queueAgent(t, wire.Limits{}, hclog.NewNullLogger())
	nc, err := net.Dial("unix", strings.TrimPrefix(a.Addr(), "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var id wire.ID
	for i := 0; i < 1000; i++ {
		f, _ := wire.Encode(wire.TGet, uint64(i+1), &wire.Get{IDs: []wire.ID{id}, TimeoutMS: -1})
		if _, err := nc.Write(f); err != nil {
			break // closed already
		}
	}
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var types []wire.Type
	for {
		f, err := wire.ReadFrame(nc)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the agent kept an unauthenticated connection open (got %v)", types)
			}
			break
		}
		types = append(types, f.Type)
	}
	if len(types) > 2 || len(types) == 0 || types[0] != wire.THello {
		t.Fatalf("an unauthenticated connection got %v, want HELLO (and at most an ERROR)", types)
	}
}

// TestActorCallsWaitForABusyWorker: a driver queues 600 calls of 50 KiB each (30 MB, twice the
// send queue's bound here) on an actor whose worker is busy and reads nothing. The agent holds
// the calls past its window instead of pushing them all, so the worker's connection is not cut;
// once the worker reads again, every call reaches it in order and its result the driver. The
// test plays the member node (it gets the SPAWN) and the worker process.
func TestActorCallsWaitForABusyWorker(t *testing.T) {
	lim := wire.Limits{Bytes: 16 << 20, Frames: 100000}
	a := startTestHead(t, func(c *Config) { c.SendQueue, c.Heartbeat = lim, Heartbeat{Timeout: time.Hour} })
	member, _ := joinTestMember(t, a, "m1", map[string]float64{"CPU": 1, "on_m1": 1})
	driver, prefix := dialDriver(t, a)
	id := func(c uint32) wire.ID {
		var x wire.ID
		copy(x[:8], prefix[:8])
		x[8], x[9], x[10], x[11] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
		return x
	}
	actor := id(1).WithIndex(0xFFFFFFFE)
	if err := driver.Send(wire.TSubmit, 0, &wire.Task{Task: id(1), Kind: wire.KindActorCreate, Name: "A", Lang: "go", Nret: 1,
		Actor: actor, Res: map[string]float64{"on_m1": 1}, Bundle: -1, Deps: []wire.ID{}, Refs: []wire.ID{}}); err != nil {
		t.Fatal(err)
	}
	// the member gets the SPAWN; the test becomes that worker
	member.Net().SetReadDeadline(time.Now().Add(20 * time.Second))
	var spawn wire.Spawn
	for spawn.Worker == "" {
		f, err := member.Read()
		if err != nil {
			t.Fatalf("no SPAWN: %v", err)
		}
		if f.Type == wire.TSpawn {
			if err := f.Decode(&spawn); err != nil {
				t.Fatal(err)
			}
		}
	}
	worker, _, err := wire.Dial(a.TCPAddr(), spawnSecret, wire.Auth{Role: "worker", Lang: "go", PID: os.Getpid(), WorkerID: spawn.Worker})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	worker.Net().SetReadDeadline(time.Now().Add(60 * time.Second))
	readExec := func() wire.Task {
		t.Helper()
		for {
			f, err := worker.Read()
			if err != nil {
				t.Fatalf("worker read: %v", err)
			}
			if f.Type != wire.TExec {
				continue
			}
			var x wire.Task
			if err := f.Decode(&x); err != nil {
				t.Fatal(err)
			}
			return x
		}
	}
	if x := readExec(); x.Task != id(1) {
		t.Fatalf("first EXEC is %s, want the actor's creation", x.Task)
	}
	if err := worker.Send(wire.TDone, 0, &wire.Done{Task: id(1), Rets: []wire.Ret{{ID: id(1).WithIndex(1), Fmt: wire.FmtRaw, Data: []byte{}}}}); err != nil {
		t.Fatal(err)
	}
	// the driver reads its READYs all along
	readies := make(chan int, 1)
	const calls = 600
	go func() {
		n := 0
		for n < calls+1 {
			f, err := driver.Read()
			if err != nil {
				break
			}
			if f.Type == wire.TReady {
				var r wire.Ready
				f.Decode(&r)
				n += len(r.Objs)
			}
		}
		readies <- n
	}()
	arg := make([]byte, 50<<10)
	for i := 0; i < calls; i++ {
		if err := driver.Send(wire.TSubmit, 0, &wire.Task{Task: id(uint32(2 + i)), Kind: wire.KindActorMethod, Name: "A.m", Method: "m",
			Lang: "go", Nret: 1, Actor: actor, Args: arg, Res: map[string]float64{}, Bundle: -1, Deps: []wire.ID{}, Refs: []wire.ID{}}); err != nil {
			t.Fatal(err)
		}
	}
	// wait until the agent has taken every call; the worker has read none of them
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.mu.Lock()
		ac := a.actors[actor]
		held, sent, dead := len(ac.queue), len(ac.inflight), ac.state == actorDead
		a.mu.Unlock()
		if dead {
			t.Fatal("the actor died: its busy worker's connection was cut")
		}
		if held+sent == calls {
			if held == 0 {
				t.Fatalf("all %d calls were pushed to a worker that reads nothing", calls)
			}
			t.Logf("%d calls in flight, %d held by the agent", sent, held)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent took %d of %d calls", held+sent, calls)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, b := func() (int, int64) {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.workers[spawn.Worker].client.conn.Queued()
	}(); b > lim.Bytes/4+64<<10 {
		t.Fatalf("%d bytes queued for the worker, over the window", b)
	}
	// the worker reads again: every call, in order, and answers each
	for i := 0; i < calls; i++ {
		x := readExec()
		if x.Task != id(uint32(2+i)) {
			t.Fatalf("call %d: got task %s, want %s", i, x.Task, id(uint32(2+i)))
		}
		if err := worker.Send(wire.TDone, 0, &wire.Done{Task: x.Task, Rets: []wire.Ret{{ID: x.Task.WithIndex(1), Fmt: wire.FmtRaw, Data: []byte("r")}}}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case n := <-readies:
		if n != calls+1 {
			t.Fatalf("the driver got %d results, want %d", n, calls+1)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the driver did not get every result")
	}
}
