package nodeagent

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/wire"
)

// waiter is a GET or WAIT that is not answered yet.
type waiter struct {
	c         *client
	seq       uint64
	ids       []wire.ID
	num       int // -1 for GET
	remaining int
	timer     *time.Timer
	done      bool
	blocked   bool // the client is a worker that gave its CPUs back while waiting
}

// errorData encodes an error object's bytes.
func errorData(kind, msg string) []byte {
	b, _ := msgpack.Marshal(map[string]any{"kind": kind, "msg": msg})
	return b
}

func lostObj(id wire.ID) wire.Obj {
	return wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("object_freed",
		"object "+id.String()+" was freed: every reference to it was dropped (or its owner exited) before this get")}
}

func (a *Agent) isReady(id wire.ID) bool {
	o := a.store.Lookup(id)
	return o == nil || o.Freed() || o.State == objstore.Sealed
}

// objFor describes a ready object for client c, counting a use when c will map it.
func (a *Agent) objFor(c *client, id wire.ID) wire.Obj {
	o := a.store.Lookup(id)
	if o == nil || o.Freed() {
		return lostObj(id)
	}
	if o.Stored() || !o.Local() {
		if nd := storeNode(c); nd != nil {
			return a.remoteObj(nd, o) // its node's agent pulls the bytes in chunks
		}
	}
	if c.remote && o.Stored() && o.Local() && o.Size > partsAbove && storeNode(c) == nil {
		return a.inParts(c, o) // remote_driver.go
	}
	if c.remote && (o.Stored() || !o.Local()) && o.Size > maxInlineReply {
		return tooLarge(id, int(o.Size), "")
	}
	if !o.Local() {
		if c.remote {
			return wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("object_lost",
				"object "+id.String()+" lives on another node's store, and this client, connected over TCP, has no store of its own to pull it into; run it on a node of the cluster")}
		}
		return o.Obj() // {id, fmt, size, loc}: the client FETCHes it
	}
	if o.Stored() && c.remote {
		// a TCP client without a store of its own (not a worker of a member node)
		b, err := readStored(o.Path, o.Offset, o.Size)
		if err != nil {
			return wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("object_lost", err.Error())}
		}
		return wire.Obj{ID: id, Fmt: o.Fmt, Data: b}
	}
	return a.localObj(c, o)
}

// storeBytes stores a sealed object whose bytes arrived in a message: small ones stay inline,
// large ones (from clients on other nodes) go to the arena so local readers map them. When
// the store has no room for it (memory and spill directory full), the object is sealed as a
// store_full error object instead, and its putter (owner) is told with READY: a PUT is not
// answered, and its error must not end the connection.
func (a *Agent) storeBytes(id wire.ID, format int, data []byte, refs []wire.ID, owner uint64) error {
	if len(data) < wire.InlineMax {
		if o := a.store.PutInline(id, format, data, refs, owner); o != nil {
			a.storedFor(o, format, owner)
		}
		return nil
	}
	if o := a.store.Lookup(id); o == nil && owner == 0 {
		return nil // a return value nobody wants any more
	} else if o != nil && o.State == objstore.Sealed {
		return nil // immutable: a retried task's second answer
	}
	o, err := a.store.Create(id, format, int64(len(data)), refs, owner, 0)
	if errors.Is(err, objstore.ErrFull) {
		if o := a.store.PutInline(id, wire.FmtError, errorData("store_full", err.Error()), nil, owner); o != nil {
			a.storedFor(o, format, owner)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := writeStored(o.Path, o.Offset, data); err != nil {
		a.store.Abort(id)
		return err
	}
	o, err = a.store.Seal(id, 0)
	if err != nil {
		return err
	}
	if a.store.Lookup(id) == o {
		a.sealed(o)
	}
	return nil
}

// storedFor ends storeBytes for o, sealed: a putter whose object became a store_full error
// object hears of it (its own cached copy must not answer its gets).
func (a *Agent) storedFor(o *objstore.Object, format int, owner uint64) {
	a.sealed(o)
	if o.Fmt == wire.FmtError && format != wire.FmtError && owner != 0 {
		if c := a.conns[owner]; c != nil {
			a.push(c, []wire.Obj{{ID: o.ID, Fmt: o.Fmt, Data: nonNil(o.Inline)}})
		}
	}
}

func writeStored(path string, off int64, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("write object bytes to %s: %w", path, err)
	}
	return nil
}

// get answers a GET (num < 0) or WAIT (num >= 0) now or registers a waiter.
func (a *Agent) get(c *client, seq uint64, ids []wire.ID, timeoutMS int64, num int) {
	w := &waiter{c: c, seq: seq, ids: ids, num: num}
	nready := 0
	for _, id := range ids {
		if a.isReady(id) {
			nready++
		}
	}
	w.remaining = len(ids) - nready
	if (num < 0 && w.remaining == 0) || (num >= 0 && nready >= num) || timeoutMS == 0 {
		a.complete(w, num < 0 && w.remaining > 0)
		return
	}
	for _, id := range ids {
		if !a.isReady(id) {
			a.waiters[id] = append(a.waiters[id], w)
		}
	}
	if timeoutMS > 0 {
		w.timer = time.AfterFunc(time.Duration(timeoutMS)*time.Millisecond, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if !w.done {
				a.complete(w, w.num < 0)
			}
		})
	}
	if c.worker != nil {
		w.blocked = a.blockWorker(c.worker)
		if w.blocked {
			c.worker.blockW = w
		}
	}
}

// complete answers a waiter.
func (a *Agent) complete(w *waiter, timedOut bool) {
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.blocked {
		a.unblockWorker(w.c.worker)
	}
	if w.num >= 0 {
		var ready []int
		for i, id := range w.ids {
			if a.isReady(id) {
				ready = append(ready, i)
			}
		}
		w.c.conn.Send(wire.TOK, w.seq, &wire.WaitReply{Ready: ready})
		return
	}
	if timedOut {
		w.c.conn.Send(wire.TOK, w.seq, &wire.GetReply{Objs: []wire.Obj{}, Timeout: true})
		return
	}
	if ps := a.pullsFor(w.c, w.ids); ps != nil {
		// answered once the objects that live only on other nodes are here (objremote.go)
		go func() {
			for _, p := range ps {
				<-p.done
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			a.answerGet(w, ps)
		}()
		return
	}
	a.answerGet(w, nil)
}

// answerGet sends a GET's objects; pulled holds the pulls it waited for (objremote.go).
func (a *Agent) answerGet(w *waiter, pulled map[wire.ID]*pull) {
	objs := make([]wire.Obj, len(w.ids))
	inline := 0 // bytes of stored objects sent in this answer
	for i, id := range w.ids {
		if p := pulled[id]; p != nil && p.err != nil {
			objs[i] = wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("object_lost",
				"could not pull object "+id.String()+" to the head node for a client without a store of its own: "+p.err.Error())}
			continue
		}
		objs[i] = a.objFor(w.c, id)
		if o := objs[i]; o.Path == "" && len(o.Data) >= wire.InlineMax {
			if inline += len(o.Data); inline > maxInlineReply {
				objs[i] = tooLarge(id, len(o.Data), "with the other objects of this get ")
				inline -= len(o.Data)
			}
		}
	}
	w.c.conn.Send(wire.TOK, w.seq, &wire.GetReply{Objs: objs})
}

// maxInlineReply is how many bytes of stored objects one GET answer carries to a client
// without a store of its own: one frame, less room for the message around them.
const maxInlineReply = wire.MaxFrame - 1<<20

func tooLarge(id wire.ID, size int, with string) wire.Obj {
	return wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("too_large", fmt.Sprintf(
		"object %s (%d bytes) does not fit in one answer %s(%d bytes at most) to a client without a store of its own; get fewer objects at once, or run the driver on a node of the cluster",
		id, size, with, maxInlineReply))}
}

// sealed is called when an object becomes readable: it answers waiters and releases tasks
// whose dependencies are now all ready.
// seal seals object id, written by the client whose connection is owner, and announces it
// (sealed) unless it was replaced meanwhile. (a.mu held)
func (a *Agent) seal(id wire.ID, owner uint64) error {
	o, err := a.store.Seal(id, owner)
	if err != nil {
		return err
	}
	if a.store.Lookup(id) == o {
		a.sealed(o)
	}
	return nil
}

func (a *Agent) sealed(o *objstore.Object) {
	a.located(o)
	a.wake(o.ID)
}

// unsealedGone is called for an object that its writer created and never sealed, dropped
// when the writer's connection closed: its waiters get an object_freed answer and the tasks
// that wait for it fail (their dependency reads as freed).
func (a *Agent) unsealedGone(id wire.ID) { a.wake(id) }

// wake answers the waiters of id and releases the tasks waiting for it, now that it is
// sealed or gone.
func (a *Agent) wake(id wire.ID) {
	if ws, ok := a.waiters[id]; ok {
		delete(a.waiters, id)
		for _, w := range ws {
			if w.done {
				continue
			}
			w.remaining--
			if w.num < 0 && w.remaining <= 0 {
				a.complete(w, false)
			} else if w.num >= 0 && len(w.ids)-w.remaining >= w.num {
				a.complete(w, false)
			}
		}
	}
	if ts, ok := a.depWait[id]; ok {
		delete(a.depWait, id)
		for _, t := range ts {
			t.pendingDeps--
			if t.pendingDeps == 0 {
				a.depsReady(t)
			}
		}
	}
}
