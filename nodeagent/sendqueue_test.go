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
