package nodeagent

import (
	"bytes"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// waitStats polls stats until ok holds, or fails the test with what it last saw.
func waitStats(t *testing.T, what string, stats func() wire.StoreStats, ok func(wire.StoreStats) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := stats()
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the store holds %+v", what, st)
		}
	}
}

// TestUnsealedObjectsGoWithTheirWriter: a client that creates objects in the head node's store
// and in a member's store and goes away before it seals them (a killed writer) leaves nothing
// behind on either node, and a GET waiting for such an object is answered that it is lost.
func TestUnsealedObjectsGoWithTheirWriter(t *testing.T) {
	n := startTwoNodes(t, 64<<20, 64<<20)
	for _, tc := range []struct {
		name  string
		addr  string
		stats func() wire.StoreStats
	}{
		{"head", n.head.Addr(), n.head.Stats},
		{"member", n.member.store.Addr(), n.member.StoreStats},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.stats()
			w := n.dial(tc.addr)
			ids := []wire.ID{randomID(), randomID()}
			for i, id := range ids {
				var r wire.CreateReply
				if err := w.Call(wire.TCreate, uint64(i+1), &wire.Create{ID: id, Fmt: wire.FmtRaw, Size: 8 << 20, Refs: []wire.ID{}}, &r); err != nil {
					t.Fatal(err)
				}
				writeFileAt(t, r.Path, r.Offset, bytes.Repeat([]byte{7}, 1<<20)) // part of it, never sealed
			}
			if st := tc.stats(); st.Bytes < before.Bytes+16<<20 {
				t.Fatalf("two 8 MiB objects created: the store holds %+v", st)
			}
			var got chan wire.GetReply
			if tc.name == "head" {
				// a driver waits for one of them
				d := n.dial(n.head.Addr())
				got = make(chan wire.GetReply, 1)
				go func() {
					var g wire.GetReply
					d.Call(wire.TGet, 9, &wire.Get{IDs: ids[:1], TimeoutMS: 60000}, &g)
					got <- g
				}()
				time.Sleep(100 * time.Millisecond)
			}
			w.Close()
			waitStats(t, "after the writer went", tc.stats, func(st wire.StoreStats) bool {
				return st.Bytes == before.Bytes && st.Objects == before.Objects
			})
			if got != nil {
				select {
				case g := <-got:
					if g.Timeout || len(g.Objs) != 1 || g.Objs[0].Fmt != wire.FmtError || !bytes.Contains(g.Objs[0].Data, []byte("object_freed")) {
						t.Fatalf("GET of an object whose writer went: %+v, want an object_freed error", g)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("GET of an object whose writer went is still waiting")
				}
			}
		})
	}
}

// TestSecondWriterOfAnUnsealedObject: a retried task writes its return value on a member's
// store while the connection of the attempt before it (which created the same object and
// died before sealing it) is not closed yet. The retry gets room of its own and seals; the
// first attempt cannot seal over it, and its room goes back when its connection closes.
func TestSecondWriterOfAnUnsealedObject(t *testing.T) {
	n := startTwoNodes(t, 64<<20, 64<<20)
	first, second := n.dial(n.member.store.Addr()), n.dial(n.member.store.Addr())
	id := randomID()
	var r1, r2 wire.CreateReply
	if err := first.Call(wire.TCreate, 1, &wire.Create{ID: id, Fmt: wire.FmtRaw, Size: 4 << 20, Refs: []wire.ID{}}, &r1); err != nil {
		t.Fatal(err)
	}
	if err := second.Call(wire.TCreate, 1, &wire.Create{ID: id, Fmt: wire.FmtRaw, Size: 4 << 20, Refs: []wire.ID{}}, &r2); err != nil {
		t.Fatalf("CREATE by a second writer of an unsealed object: %v", err)
	}
	if r1.Path == r2.Path && r1.Offset == r2.Offset {
		t.Fatal("the second writer got the range the first one may still be writing")
	}
	data := randomBytes(4 << 20)
	writeFileAt(t, r2.Path, r2.Offset, data)
	if err := second.Call(wire.TSeal, 2, &wire.One{ID: id}, nil); err != nil {
		t.Fatal(err)
	}
	if err := first.Call(wire.TSeal, 2, &wire.One{ID: id}, nil); err == nil {
		t.Fatal("the superseded writer sealed the object")
	}
	first.Close()
	waitStats(t, "after the first writer went", n.member.StoreStats, func(st wire.StoreStats) bool {
		return st.Objects == 1 && st.Bytes == 4<<20
	})
	var o wire.Obj
	if err := second.Call(wire.TFetch, 3, &wire.Fetch{ID: id}, &o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readObj(t, o), data) {
		t.Fatal("the object's bytes are not the second writer's")
	}
}
