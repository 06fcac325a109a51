package nodeagent

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// twoNodes is a head node's agent and a member agent with a store of its own, on loopback,
// with their stores in /dev/shm under names of their own.
type twoNodes struct {
	t      testing.TB
	secret string
	head   *Agent
	member *Member
	shm    []string
}

func startTwoNodes(t testing.TB, headStore, memberStore int64) *twoNodes {
	t.Helper()
	return startTwoNodesAt(t, "127.0.0.1:0", "127.0.0.1", headStore, memberStore)
}

// startTwoNodesAt is startTwoNodes with the head's TCP listener at listen and the member's
// address addr.
func startTwoNodesAt(t testing.TB, listen, addr string, headStore, memberStore int64) *twoNodes {
	t.Helper()
	log := hclog.NewNullLogger()
	if testing.Verbose() {
		log = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug})
	}
	id := "xfertest" + wire.NewSecret()[:8]
	n := &twoNodes{t: t, secret: wire.NewSecret()}
	n.shm = []string{"/dev/shm/shoal-" + id, "/dev/shm/shoal-" + id + "-node2"}
	a, err := New(log.Named("head"), nil, Config{ClusterID: id, Secret: n.secret, NodeID: "node1", SessionDir: t.TempDir(),
		StoreDir: n.shm[0], SpillDir: filepath.Join(t.TempDir(), "spill"), Resources: sched.Resources{"CPU": 1},
		ObjectStoreMemory: headStore, ListenTCP: listen})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		a.Close()
		t.Fatal(err)
	}
	n.head = a
	m, err := Join(log.Named("member"), MemberConfig{HeadAddr: a.TCPAddr(), Secret: n.secret, Node: "node2", Addr: addr,
		Resources: sched.Resources{"CPU": 1}, Store: &StoreConfig{ClusterID: id, Dir: n.shm[1],
			SessionDir: filepath.Join(t.TempDir(), id+"-node2"), Memory: memberStore}})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	n.member = m
	go m.Run()
	t.Cleanup(n.close)
	// the member announced its store
	for deadline := time.Now().Add(10 * time.Second); n.memberLoc() == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the member's NODE_STORE did not reach the head node's agent")
		}
	}
	return n
}

func (n *twoNodes) memberLoc() string {
	n.head.mu.Lock()
	defer n.head.mu.Unlock()
	for _, nd := range n.head.nodes {
		if nd.member != nil {
			return nd.loc
		}
	}
	return ""
}

func (n *twoNodes) close() {
	n.member.Close()
	n.head.Close()
	for _, d := range n.shm {
		if _, err := os.Stat(d); err == nil {
			n.t.Errorf("%s is left behind after the agents closed", d)
			os.RemoveAll(d)
		}
	}
}

// dial connects to addr as a driver (head) or a worker-less store client (member).
func (n *twoNodes) dial(addr string) *wire.Conn {
	n.t.Helper()
	c, _, err := wire.Dial(addr, n.secret, wire.Auth{Role: "driver", PID: os.Getpid()})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

func randomID() wire.ID {
	var id wire.ID
	rand.Read(id[:])
	return id
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// create writes data as object id through CREATE and SEAL on c.
func create(t *testing.T, c *wire.Conn, id wire.ID, data []byte) {
	t.Helper()
	var r wire.CreateReply
	if err := c.Call(wire.TCreate, 1, &wire.Create{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Refs: []wire.ID{}}, &r); err != nil {
		t.Fatal(err)
	}
	writeFileAt(t, r.Path, r.Offset, data)
	c.Send(wire.TSeal, 0, &wire.One{ID: id})
	if err := c.Call(wire.TInfo, 3, struct{}{}, nil); err != nil { // sealed once this is answered
		t.Fatal(err)
	}
}

func writeFileAt(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// readObj returns the bytes of a stored object answer by mapping it, as a client does.
func readObj(t *testing.T, o wire.Obj) []byte {
	t.Helper()
	if o.Fmt == wire.FmtError {
		t.Fatalf("object %s is an error object: %q", o.ID, o.Data)
	}
	if o.Path == "" {
		t.Fatalf("object %s has no path: %+v", o.ID, o)
	}
	f, err := os.Open(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), o.Offset, int(o.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	return bytes.Clone(m)
}

func TestObjectPulledFromHeadToMember(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 64<<20)
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	data := randomBytes(40<<20 + 12345)
	id := randomID()
	create(t, driver, id, data)
	var o wire.Obj
	if err := store.Call(wire.TFetch, 10, &wire.Fetch{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Loc: n.head.XferAddr()}, &o); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, o); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the member's copy of a %d-byte object differs from what the driver put", len(data))
	}
	if !strings.HasPrefix(o.Path, n.shm[1]) {
		t.Errorf("the member's copy is at %s, not in its own store %s", o.Path, n.shm[1])
	}
}

// TestPullInManyPiecesOverSeveralConnections pulls objects in many pieces of an odd size (not a
// multiple of a page), over several connections with requests in flight on each, and checks
// every byte.
func TestPullInManyPiecesOverSeveralConnections(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 64<<20)
	n.member.store.xfer.piece = 1000003
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	for _, size := range []int{5, 1 << 20, 33<<20 + 4097} {
		data := randomBytes(size)
		id := randomID()
		create(t, driver, id, data)
		var o wire.Obj
		if err := store.Call(wire.TFetch, 10, &wire.Fetch{ID: id, Fmt: wire.FmtRaw, Size: int64(size), Loc: n.head.XferAddr()}, &o); err != nil {
			t.Fatal(err)
		}
		if got := readObj(t, o); !bytes.Equal(got, data) {
			t.Fatalf("the member's copy of a %d-byte object pulled in pieces of 1000003 bytes differs from the original", size)
		}
	}
}

// TestPullOfAnObjectItsHolderLacksSaysWhy asks node2 to pull an object the head node does not
// have: the answer is an object_lost error that names the holder, node2 keeps no room for it,
// and the next pull from the same holder works.
func TestPullOfAnObjectItsHolderLacksSaysWhy(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 64<<20)
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	var o wire.Obj
	missing := randomID()
	if err := store.Call(wire.TFetch, 10, &wire.Fetch{ID: missing, Fmt: wire.FmtRaw, Size: 20 << 20, Loc: n.head.XferAddr()}, &o); err != nil {
		t.Fatal(err)
	}
	if o.Fmt != wire.FmtError || !strings.Contains(string(o.Data), "object_lost") || !strings.Contains(string(o.Data), "no longer at "+n.head.XferAddr()) {
		t.Fatalf("FETCH of an object its holder lacks answered %+v (%q); want an object_lost error naming the holder", o, o.Data)
	}
	if st := n.member.StoreStats(); st.Objects != 0 || st.Bytes != 0 {
		t.Errorf("node2's store after a failed pull: %+v; want nothing kept", st)
	}
	data := randomBytes(20 << 20)
	id := randomID()
	create(t, driver, id, data)
	if err := store.Call(wire.TFetch, 11, &wire.Fetch{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Loc: n.head.XferAddr()}, &o); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, o); !bytes.Equal(got, data) {
		t.Fatal("a pull after a failed one got other bytes than the original")
	}
}

func TestObjectPulledFromMemberToHeadAndFreedEverywhere(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 128<<20)
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	// an object of more than one 256 MiB frame would do too; this one is over several chunks
	data := randomBytes(100<<20 + 7)
	id := randomID()
	create(t, store, id, data)
	driver.Send(wire.TPutAt, 0, &wire.PutAt{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Refs: []wire.ID{}, Loc: n.memberLoc()})
	var g wire.GetReply
	if err := driver.Call(wire.TGet, 21, &wire.Get{IDs: []wire.ID{id}, TimeoutMS: 10000}, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Objs) != 1 || g.Objs[0].Loc != n.memberLoc() {
		t.Fatalf("GET of an object sealed on node2 answered %+v, want it located at %s", g.Objs, n.memberLoc())
	}
	var o wire.Obj
	if err := driver.Call(wire.TFetch, 22, &wire.Fetch{ID: id, Fmt: g.Objs[0].Fmt, Size: g.Objs[0].Size, Loc: g.Objs[0].Loc}, &o); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, o); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("the head's copy differs from the object written on node2")
	}
	driver.Send(wire.TRelease, 0, &wire.IDs{IDs: []wire.ID{id}})
	driver.Send(wire.TDecref, 0, &wire.IDs{IDs: []wire.ID{id}})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		hs, ms := n.head.Stats(), n.member.StoreStats()
		if hs.Objects == 0 && ms.Objects == 0 && ms.Bytes == 0 && hs.Bytes == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the last reference went, the head holds %+v and node2 %+v; want nothing", hs, ms)
		}
	}
}

// TestTCPDriverGetsAnObjectThatLivesOnAMember: a driver connected over TCP, with no store of
// its own, gets an object sealed only in node2's store. The head node's agent pulls it into
// its own store and sends its bytes in the answer, as for the objects of its own store.
func TestTCPDriverGetsAnObjectThatLivesOnAMember(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 64<<20)
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	tcp := n.dial(n.head.TCPAddr())
	data := randomBytes(30<<20 + 5)
	id := randomID()
	create(t, store, id, data)
	driver.Send(wire.TPutAt, 0, &wire.PutAt{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Refs: []wire.ID{}, Loc: n.memberLoc()})
	missing := randomID() // put at node2 too, but node2 does not have it
	driver.Send(wire.TPutAt, 0, &wire.PutAt{ID: missing, Fmt: wire.FmtRaw, Size: 1 << 20, Refs: []wire.ID{}, Loc: n.memberLoc()})
	if err := driver.Call(wire.TInfo, 4, struct{}{}, nil); err != nil { // both PUT_AT are in once this is answered
		t.Fatal(err)
	}
	var g wire.GetReply
	if err := tcp.Call(wire.TGet, 5, &wire.Get{IDs: []wire.ID{id, missing}, TimeoutMS: 10000}, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Objs) != 2 {
		t.Fatalf("GET of two objects answered %d", len(g.Objs))
	}
	if o := g.Objs[0]; o.Fmt != wire.FmtRaw || o.Path != "" || o.Loc != "" || !bytes.Equal(o.Data, data) {
		t.Fatalf("a TCP driver's GET of an object on node2 answered fmt %d, path %q, loc %q, %d bytes (%q...); want the object's %d bytes",
			o.Fmt, o.Path, o.Loc, len(o.Data), o.Data[:min(len(o.Data), 200)], len(data))
	}
	if o := g.Objs[1]; o.Fmt != wire.FmtError || !strings.Contains(string(o.Data), "object_lost") || !strings.Contains(string(o.Data), "no longer at") {
		t.Fatalf("a TCP driver's GET of an object node2 lacks answered %+v (%q); want an object_lost error that says why", o, o.Data)
	}
	if hs := n.head.Stats(); hs.Bytes < int64(len(data)) {
		t.Errorf("the head node's store after serving the TCP driver: %+v; want its copy of the %d-byte object", hs, len(data))
	}
}

// TestWildcardListenAddresses: with the head's listener and
// the member's store on 0.0.0.0, the transfer addresses the head hands out name the host each
// agent reached the other at, not 0.0.0.0 (which other nodes cannot reach), and pulls work
// both ways through them.
func TestWildcardListenAddresses(t *testing.T) {
	n := startTwoNodesAt(t, "0.0.0.0:0", "0.0.0.0", 256<<20, 64<<20)
	n.head.mu.Lock()
	var headLoc, memberLoc string
	for _, nd := range n.head.nodes {
		if nd.member != nil {
			headLoc, memberLoc = n.head.xferLocFor(nd), nd.loc
		}
	}
	n.head.mu.Unlock()
	for _, loc := range []string{headLoc, memberLoc} {
		host, _, err := net.SplitHostPort(strings.TrimPrefix(loc, "tcp:"))
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("published transfer address %q; want the address the agents reached each other at, on loopback (the head's listener: %s)", loc, n.head.XferAddr())
		}
	}
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	data := randomBytes(9 << 20)
	id := randomID()
	create(t, driver, id, data)
	var o wire.Obj
	if err := store.Call(wire.TFetch, 10, &wire.Fetch{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Loc: headLoc}, &o); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, o); !bytes.Equal(got, data) {
		t.Fatal("node2's copy pulled through the head's published address differs")
	}
	id2 := randomID()
	create(t, store, id2, data)
	driver.Send(wire.TPutAt, 0, &wire.PutAt{ID: id2, Fmt: wire.FmtRaw, Size: int64(len(data)), Refs: []wire.ID{}, Loc: memberLoc})
	if err := driver.Call(wire.TFetch, 11, &wire.Fetch{ID: id2, Fmt: wire.FmtRaw, Size: int64(len(data)), Loc: memberLoc}, &o); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, o); !bytes.Equal(got, data) {
		t.Fatal("the head's copy pulled through node2's published address differs")
	}
}

func TestConcurrentPullsIntoASmallStoreSpill(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 32<<20)
	driver := n.dial(n.head.Addr())
	// six objects of 12 MiB, and one larger than the member's whole arena
	sizes := []int{12 << 20, 12 << 20, 12 << 20, 12 << 20, 12 << 20, 12 << 20, 40 << 20}
	ids := make([]wire.ID, len(sizes))
	sums := make([][32]byte, len(sizes))
	for i, sz := range sizes {
		ids[i] = randomID()
		data := randomBytes(sz)
		sums[i] = sha256.Sum256(data)
		create(t, driver, ids[i], data)
	}
	var wg sync.WaitGroup
	errs := make(chan string, len(sizes))
	for i := range sizes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, _, err := wire.Dial(n.member.store.Addr(), n.secret, wire.Auth{Role: "driver"})
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			var o wire.Obj
			if err := c.Call(wire.TFetch, 1, &wire.Fetch{ID: ids[i], Fmt: wire.FmtRaw, Size: int64(sizes[i]), Loc: n.head.XferAddr()}, &o); err != nil {
				errs <- err.Error()
				return
			}
			if o.Fmt == wire.FmtError || o.Path == "" {
				errs <- "object " + ids[i].String() + ": " + string(o.Data)
				return
			}
			f, _ := os.Open(o.Path)
			b := make([]byte, o.Size)
			f.ReadAt(b, o.Offset)
			f.Close()
			if sha256.Sum256(b) != sums[i] {
				errs <- "object " + ids[i].String() + " differs after the pull"
			}
			c.Send(wire.TRelease, 0, &wire.IDs{IDs: []wire.ID{ids[i]}})
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if st := n.member.StoreStats(); st.Spilled == 0 || st.Objects != len(sizes) {
		t.Errorf("node2's 32 MiB store after pulling %d objects (108 MiB): %+v; want them all, some spilled", len(sizes), st)
	}
}

// BenchmarkPull pulls a 256 MiB object from the head node's agent into a member's store over
// loopback TCP, one object per iteration; the copy is freed before the next.
func BenchmarkPull(b *testing.B) {
	n := startTwoNodes(b, 1<<30, 1<<30)
	c, _, err := wire.Dial(n.head.Addr(), n.secret, wire.Auth{Role: "driver"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, _, err := wire.Dial(n.member.store.Addr(), n.secret, wire.Auth{Role: "driver"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const size = 256 << 20
	data := randomBytes(size)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := randomID()
		var r wire.CreateReply
		if err := c.Call(wire.TCreate, 1, &wire.Create{ID: id, Size: size, Refs: []wire.ID{}}, &r); err != nil {
			b.Fatal(err)
		}
		f, _ := os.OpenFile(r.Path, os.O_RDWR, 0)
		f.WriteAt(data, r.Offset)
		f.Close()
		c.Send(wire.TSeal, 0, &wire.One{ID: id})
		c.Call(wire.TInfo, 2, struct{}{}, nil)
		b.StartTimer()
		var o wire.Obj
		if err := s.Call(wire.TFetch, 3, &wire.Fetch{ID: id, Size: size, Loc: n.head.XferAddr()}, &o); err != nil || o.Path == "" {
			b.Fatal(err, o)
		}
		b.StopTimer()
		s.Send(wire.TRelease, 0, &wire.IDs{IDs: []wire.ID{id}})
		n.member.store.free([]wire.ID{id})
		c.Send(wire.TDecref, 0, &wire.IDs{IDs: []wire.ID{id}})
		b.StartTimer()
	}
}

// flakyProxy forwards TCP connections to target, closing the first drop of them at once, as a
// lossy link whose handshakes time out or reset would.
func flakyProxy(t *testing.T, target string, drop int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n < drop {
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestPullTriesAgainAfterAFailedConnection: the first connections to the holder fail (closed
// at once); the pull tries again and gets the object, where it used to answer object_lost
// (chaos seed 2076: packet loss on the holder's link).
func TestPullTriesAgainAfterAFailedConnection(t *testing.T) {
	n := startTwoNodes(t, 256<<20, 64<<20)
	driver := n.dial(n.head.Addr())
	store := n.dial(n.member.store.Addr())
	data := randomBytes(3<<20 + 17)
	id := randomID()
	create(t, driver, id, data)
	name, addr, _ := strings.Cut(n.head.XferAddr(), ":")
	loc := name + ":" + flakyProxy(t, addr, 3)
	var o wire.Obj
	if err := store.Call(wire.TFetch, 10, &wire.Fetch{ID: id, Fmt: wire.FmtRaw, Size: int64(len(data)), Loc: loc}, &o); err != nil {
		t.Fatal(err)
	}
	if o.Fmt == wire.FmtError {
		t.Fatalf("a pull whose first connections failed answered %q; want the object, tried again", o.Data)
	}
	if got := readObj(t, o); !bytes.Equal(got, data) {
		t.Fatal("the copy pulled on a second try differs from the original")
	}
}
