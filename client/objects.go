package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/wire"
)

// ObjectRef names an object in the cluster: a task's return value or a value put with Put.
// It is a small value; copies name the same object. The zero ObjectRef names nothing.
type ObjectRef struct {
	id wire.ID
	c  *Client // the client holding the reference; nil for a borrowed ref
}

// Hex returns the object id in hex.
func (r ObjectRef) Hex() string { return r.id.String() }

func (r ObjectRef) String() string { return "ObjectRef(" + r.id.String() + ")" }

// IsZero reports whether r names nothing.
func (r ObjectRef) IsZero() bool { return r.id.IsZero() }

// Release gives the client's reference to the object back to the cluster, which frees the
// object once no task, object or client needs it, and drops the value the client keeps for it.
// Use r no more afterwards (a later Get fails with ErrObjectLost once the object is freed).
// Releasing twice, a borrowed ref, or after Close does nothing.
func (r ObjectRef) Release() {
	if r.c != nil {
		r.c.release(r.id)
	}
}

func (c *Client) release(id wire.ID) {
	c.mu.Lock()
	s := c.slots[id]
	delete(c.slots, id)
	if s != nil {
		select {
		case <-s.ready:
		default: // a Get waiting for it must not wait for a READY that is dropped now
			s.obj = wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData(KindObjectLost, "object "+id.String()+" was released while a get waited for it")}
			close(s.ready)
		}
	}
	c.mu.Unlock()
	if s != nil {
		c.send(wire.TDecref, &wire.IDs{IDs: []wire.ID{id}})
	}
}

// hold records a reference of this client: ready says whether obj is known already.
func (c *Client) hold(id wire.ID, obj *wire.Obj) ObjectRef {
	s := &slot{ready: make(chan struct{})}
	if obj != nil {
		s.obj = *obj
		close(s.ready)
	}
	c.mu.Lock()
	c.slots[id] = s
	c.mu.Unlock()
	return ObjectRef{id: id, c: c}
}

// readyLocked records o, pushed by READY: a return value of this client's task, or a put
// that the agent could not store (a store_full error object that replaces the bytes this
// client kept, so that its gets say what the others' say). Called with c.mu held.
func (c *Client) readyLocked(o wire.Obj) {
	s := c.slots[o.ID]
	if s == nil {
		return
	}
	select {
	case <-s.ready:
		if o.Fmt == wire.FmtError && s.obj.Fmt != wire.FmtError {
			// readers may hold s and read s.obj without the lock: a new slot instead
			ns := &slot{ready: make(chan struct{}), obj: o}
			close(ns.ready)
			c.slots[o.ID] = ns
		}
	default:
		s.obj = o
		close(s.ready)
	}
}

// Put stores v in the cluster and returns a reference to it. v is encoded with MessagePack;
// under 100 KiB it travels inline, otherwise it is written into the node's shared-memory
// arena. ObjectRefs inside v are kept alive as long as the object lives. An error wraps
// ErrStoreFull when v is larger than the whole object store, or when neither the store nor
// its spill directory has room for it. A small v that the agent cannot store (its memory
// budget and its spill directory both full) becomes an error object: Get of the reference
// returns an error of kind store_full, here as everywhere.
func (c *Client) Put(v any) (ObjectRef, error) {
	switch v.(type) {
	case ObjectRef, *ObjectRef:
		return ObjectRef{}, errors.New("put an ObjectRef: not allowed; put a value, or a slice or struct that holds the ObjectRef")
	}
	data, refs, err := encodeValue(v)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("put: %w", err)
	}
	id := c.newID(tailPut)
	stored, err := c.store(id, data, refs)
	if err != nil {
		if stored {
			c.send(wire.TDecref, &wire.IDs{IDs: []wire.ID{id}}) // what CREATE reserved, if it did
		}
		return ObjectRef{}, fmt.Errorf("put %d bytes: %w", len(data), err)
	}
	if stored {
		return c.hold(id, &wire.Obj{ID: id, Fmt: wire.FmtMsgpack, Size: int64(len(data))}), nil
	}
	return c.hold(id, &wire.Obj{ID: id, Fmt: wire.FmtMsgpack, Data: data}), nil
}

// store writes MessagePack bytes under id: inline with PUT when small, otherwise through
// CREATE, the arena and SEAL. It reports whether the bytes went to the store.
func (c *Client) store(id wire.ID, data []byte, refs []wire.ID) (bool, error) {
	if refs == nil {
		refs = []wire.ID{}
	}
	if len(data) < wire.InlineMax {
		return false, c.send(wire.TPut, &wire.Put{ID: id, Fmt: wire.FmtMsgpack, Data: data, Refs: refs})
	}
	return true, c.create(id, data, refs)
}

// create writes MessagePack bytes under id into the store: CREATE reserves a range, the bytes
// are copied into it through a shared mapping, and SEAL makes the object readable.
func (c *Client) create(id wire.ID, data []byte, refs []wire.ID) error {
	if refs == nil {
		refs = []wire.ID{}
	}
	if c.nodeStore != nil {
		return c.createHere(id, data, refs)
	}
	var r wire.CreateReply
	if err := c.request(context.Background(), wire.TCreate, &wire.Create{ID: id, Fmt: wire.FmtMsgpack, Size: int64(len(data)), Refs: refs}, &r); err != nil {
		return fmt.Errorf("reserve room in the object store: %w", err)
	}
	if err := writeAt(r.Path, r.Offset, data); err != nil {
		// Seal all the same, so that the DECREF of the caller frees it now (the agent would
		// drop it unsealed only when this connection closes). Nobody reads it, since the
		// caller reports the failure instead of the reference.
		c.send(wire.TSeal, &wire.One{ID: id})
		return fmt.Errorf("write %d bytes into the object store: %w", len(data), err)
	}
	return c.send(wire.TSeal, &wire.One{ID: id})
}

// mapRange maps size bytes of path at offset (which need not be page aligned). It returns the
// bytes and the whole mapping to unmap.
func mapRange(path string, offset, size int64, write bool) ([]byte, []byte, error) {
	flag, prot := os.O_RDONLY, unix.PROT_READ
	if write {
		flag, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open object store file: %w", err)
	}
	defer f.Close()
	page := int64(os.Getpagesize())
	base := offset / page * page
	skip := offset - base
	m, err := unix.Mmap(int(f.Fd()), base, int(skip+size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %d bytes of %s at %d: %w", size, path, offset, err)
	}
	return m[skip : skip+size], m, nil
}

// writeAt copies data into the object store file path at offset through a shared mapping.
func writeAt(path string, offset int64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	b, m, err := mapRange(path, offset, int64(len(data)), true)
	if err != nil {
		return err
	}
	copy(b, data)
	return unix.Munmap(m)
}

// readObj calls fn with the bytes of a ready object; a stored object is mapped read-only for
// the call and its use is given back (RELEASE) afterwards.
func (c *Client) readObj(o wire.Obj, fn func([]byte) error) error {
	if o.Loc != "" {
		lo, release, err := c.localize(context.Background(), o)
		if err != nil {
			return err
		}
		if lo.Path == "" {
			return fn(lo.Data)
		}
		defer release()
		return c.mapObj(lo, fn)
	}
	if o.Path == "" {
		return fn(o.Data)
	}
	defer c.send(wire.TRelease, &wire.IDs{IDs: []wire.ID{o.ID}})
	return c.mapObj(o, fn)
}

// mapObj calls fn with the bytes of a stored object mapped read-only.
func (c *Client) mapObj(o wire.Obj, fn func([]byte) error) error {
	if o.Size == 0 {
		return fn(nil)
	}
	b, m, err := mapRange(o.Path, o.Offset, o.Size, false)
	if err != nil {
		return fmt.Errorf("read object %s: %w", o.ID, err)
	}
	defer unix.Munmap(m)
	return fn(b)
}

// Get waits until the object r names is ready and decodes it into out, a non-nil pointer (or
// nil to only wait and see the error). When the object is an error it returns its
// *TaskError; when ctx ends first, an error wrapping ctx.Err().
func (c *Client) Get(ctx context.Context, r ObjectRef, out any) error {
	if out != nil {
		if v := reflect.ValueOf(out); v.Kind() != reflect.Pointer || v.IsNil() {
			return fmt.Errorf("get %s into %T: %w", r.id, out, errNotPointer)
		}
	}
	objs, err := c.fetch(ctx, []wire.ID{r.id})
	if err != nil {
		return err
	}
	return c.readObj(objs[0], func(b []byte) error { return decodeObject(r.id, objs[0].Fmt, b, out) })
}

// GetAll waits for all of refs and decodes them into outs, a pointer to a slice, which is
// resized to len(refs). The first error object found is returned as an error wrapping its
// *TaskError, naming its index; the other elements are decoded all the same.
func (c *Client) GetAll(ctx context.Context, refs []ObjectRef, outs any) error {
	pv := reflect.ValueOf(outs)
	if pv.Kind() != reflect.Pointer || pv.IsNil() || pv.Elem().Kind() != reflect.Slice {
		return fmt.Errorf("get all into %T: want a pointer to a slice", outs)
	}
	ids := make([]wire.ID, len(refs))
	for i, r := range refs {
		ids[i] = r.id
	}
	objs, err := c.fetch(ctx, ids)
	if err != nil {
		return err
	}
	sv := pv.Elem()
	if sv.Cap() >= len(refs) {
		sv.SetLen(len(refs))
	} else {
		sv.Set(reflect.MakeSlice(sv.Type(), len(refs), len(refs)))
	}
	var first error
	for i, o := range objs {
		ep := sv.Index(i).Addr().Interface()
		if err := c.readObj(o, func(b []byte) error { return decodeObject(o.ID, o.Fmt, b, ep) }); err != nil && first == nil {
			first = fmt.Errorf("get object %d of %d: %w", i+1, len(refs), err)
		}
	}
	return first
}

// fetch waits for ids and returns them as ready objects: inline ones from what READY pushed
// or Put kept, the others from a GET. Stored objects in the result count a use each, which
// readObj gives back.
func (c *Client) fetch(ctx context.Context, ids []wire.ID) ([]wire.Obj, error) {
	out := make([]wire.Obj, len(ids))
	var need []int
	for i, id := range ids {
		if id.IsZero() {
			return nil, fmt.Errorf("get object %d of %d: the ObjectRef is zero", i+1, len(ids))
		}
		c.mu.Lock()
		s := c.slots[id]
		c.mu.Unlock()
		if s == nil {
			need = append(need, i)
			continue
		}
		if c.worker {
			// A worker waits through GET, so that the agent gives its CPUs to other tasks
			// meanwhile (the tasks it waits for may need them).
			select {
			case <-s.ready:
				if !s.stored() {
					out[i] = s.obj
					continue
				}
			default:
			}
			need = append(need, i)
			continue
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("get %s: %w", id, ctx.Err())
		case <-c.dead:
			return nil, c.failure()
		}
		if s.stored() {
			need = append(need, i)
		} else {
			out[i] = s.obj
		}
	}
	if len(need) == 0 {
		return out, nil
	}
	m := wire.Get{IDs: make([]wire.ID, len(need)), TimeoutMS: timeoutMS(ctx)}
	for k, i := range need {
		m.IDs[k] = ids[i]
	}
	var r wire.GetReply
	if err := c.request(ctx, wire.TGet, &m, &r); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("get %d objects: %w", len(need), ctx.Err())
		}
		return nil, fmt.Errorf("get %d objects: %w", len(need), err)
	}
	if r.Timeout {
		return nil, fmt.Errorf("get %d objects: not ready in time: %w", len(need), context.DeadlineExceeded)
	}
	if len(r.Objs) != len(need) {
		return nil, fmt.Errorf("get %d objects: %w: the agent answered with %d", len(need), wire.ErrCorruptFrame, len(r.Objs))
	}
	for k, i := range need {
		out[i] = r.Objs[k]
	}
	return out, nil
}

// timeoutMS turns ctx's deadline into the protocol's timeout_ms (-1: none).
func timeoutMS(ctx context.Context) int64 {
	dl, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	ms := time.Until(dl).Milliseconds()
	if ms < 0 {
		return 0
	}
	return ms
}

// Wait blocks until n of refs are ready (a value or an error) or ctx ends. It returns the
// ready refs (at most n, in the order of refs) and the others. When ctx ends first it returns
// what is ready then, with an error wrapping ctx.Err(). refs must not repeat an object.
func (c *Client) Wait(ctx context.Context, refs []ObjectRef, n int) (ready, notReady []ObjectRef, err error) {
	if n < 0 || n > len(refs) {
		return nil, refs, fmt.Errorf("wait for %d of %d objects: n must be between 0 and the number of refs", n, len(refs))
	}
	seen := make(map[wire.ID]bool, len(refs))
	for _, r := range refs {
		if seen[r.id] {
			return nil, refs, fmt.Errorf("wait: object %s is listed twice; refs must be unique", r.id)
		}
		seen[r.id] = true
	}
	isReady := make([]bool, len(refs))
	split := func() ([]ObjectRef, []ObjectRef) {
		var rd, nr []ObjectRef
		for i, r := range refs {
			if isReady[i] && len(rd) < n {
				rd = append(rd, r)
			} else {
				nr = append(nr, r)
			}
		}
		return rd, nr
	}
	for {
		// What this client knows: its own returns after READY, its puts.
		c.mu.Lock()
		gen := c.readyGen
		count, foreign := 0, false
		for i, r := range refs {
			if s := c.slots[r.id]; s != nil {
				select {
				case <-s.ready:
					isReady[i] = true
				default:
				}
			}
			if isReady[i] {
				count++
			} else if c.slots[r.id] == nil || c.worker {
				// Not ours (the agent knows), or we are a worker, which waits through WAIT
				// so that the agent gives its CPUs to other tasks meanwhile.
				foreign = true
			}
		}
		c.mu.Unlock()
		if count >= n {
			rd, nr := split()
			return rd, nr, nil
		}
		if !foreign {
			select {
			case <-gen:
				continue
			case <-ctx.Done():
				rd, nr := split()
				return rd, nr, fmt.Errorf("wait for %d of %d objects: %w", n, len(refs), ctx.Err())
			case <-c.dead:
				return nil, refs, c.failure()
			}
		}
		// Some refs came from elsewhere (say, inside a value): ask the agent.
		var ask []int
		for i := range refs {
			if !isReady[i] {
				ask = append(ask, i)
			}
		}
		m := wire.Wait{IDs: make([]wire.ID, len(ask)), Num: n - count, TimeoutMS: timeoutMS(ctx)}
		for k, i := range ask {
			m.IDs[k] = refs[i].id
		}
		var r wire.WaitReply
		if err := c.request(ctx, wire.TWait, &m, &r); err != nil {
			rd, nr := split()
			if ctx.Err() != nil {
				return rd, nr, fmt.Errorf("wait for %d of %d objects: %w", n, len(refs), ctx.Err())
			}
			return rd, nr, fmt.Errorf("wait for %d of %d objects: %w", n, len(refs), err)
		}
		for _, k := range r.Ready {
			if k >= 0 && k < len(ask) {
				isReady[ask[k]] = true
			}
		}
		count = 0
		for _, ok := range isReady {
			if ok {
				count++
			}
		}
		rd, nr := split()
		if count < n {
			return rd, nr, fmt.Errorf("wait for %d of %d objects: not ready in time: %w", n, len(refs), context.DeadlineExceeded)
		}
		return rd, nr, nil
	}
}
