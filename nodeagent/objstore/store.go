// Package objstore is a node's shared-memory object store: one arena file under /dev/shm
// (per cluster, mode 0600 in a 0700 directory) that local clients map, holding immutable
// sealed objects, plus small objects kept inline in the agent's memory. It counts references
// per owner (a connection), pins (tasks and containing objects) and uses (clients that map an
// object's bytes), frees an object when all three are gone, and spills objects to a local
// directory when the arena is full instead of failing.
//
// A Store is not safe for concurrent use: the agent calls it under its own lock.
package objstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/internal/privdir"
	"github.com/shoal-hpc/shoal/wire"
)

// ErrFull is wrapped when an object can never fit: it is larger than the whole store.
var ErrFull = errors.New("object store full")

// State of an object.
type State int

// Object states.
const (
	Pending State = iota // a task will produce it
	Created              // room reserved, bytes being written
	Sealed               // readable
)

// Object is one entry of the store.
type Object struct {
	ID     wire.ID
	Fmt    int
	State  State
	Inline []byte // inline bytes (when Path == "")
	Path   string // arena or spill file
	Offset int64
	Size   int64
	Refs   []wire.ID // ids this object contains; pinned while it lives
	// Loc is the transfer address of another node's agent that holds the bytes, for an
	// object sealed elsewhere (see PutRemote); "" when the bytes are here.
	Loc      string
	filling  bool // FillRemote reserved local room; a pull is writing the bytes
	refs     map[uint64]int
	pins     int
	uses     map[uint64]int
	inArena  bool
	spilled  bool
	tick     uint64
	freeWant bool // freed while in use: release the range when the last use goes
}

// Stored reports whether the object's bytes are in a file (arena or spill).
func (o *Object) Stored() bool { return o.Path != "" }

// Local reports whether the object's bytes are readable in this store (inline or stored).
func (o *Object) Local() bool { return o.Loc == "" || (o.Path != "" && !o.filling) }

// Obj describes the object for a client.
func (o *Object) Obj() wire.Obj {
	if !o.Local() {
		return wire.Obj{ID: o.ID, Fmt: o.Fmt, Size: o.Size, Loc: o.Loc}
	}
	if o.Path == "" {
		return wire.Obj{ID: o.ID, Fmt: o.Fmt, Data: nonNil(o.Inline)}
	}
	return wire.Obj{ID: o.ID, Fmt: o.Fmt, Path: o.Path, Offset: o.Offset, Size: o.Size}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Store is a node's object store.
type Store struct {
	log       hclog.Logger
	dir       string
	spillDir  string
	spill     *privdir.Dir // nil: spilling off
	arenaPath string
	arena     *os.File
	alloc     *allocator
	objs      map[wire.ID]*Object
	clock     uint64
	inline    int64
	spilled   int
	spillB    int64
	// OnFree is called with the id of every object freed (for the agent's bookkeeping).
	OnFree func(id wire.ID)
}

// Hints in the errors about a store or spill directory that is not the user's own.
const (
	storeHint = "remove it (or ask its owner or an admin to), or set --object-store-dir (SHOAL_OBJECT_STORE_DIR) to a directory of your own"
	spillHint = "remove it (or ask its owner or an admin to), or set --spill-dir (SHOAL_SPILL_DIR) to a directory of your own"
)

// New creates the spill directory spillDir ("": spilling off) and then the store's directory
// dir, each with Mkdir (their parents must exist; a directory that exists already is an error,
// a *privdir.NotPrivateError when it is another user's), mode 0700, checked through its open
// descriptor, with an arena of capacity bytes in dir. The spill directory comes first, so that
// no other user has seen the cluster's id (in dir's name under /dev/shm) when it is made. The
// arena is sparse: pages are allocated when first written.
func New(log hclog.Logger, dir, spillDir string, capacity int64) (_ *Store, err error) {
	var spill, d *privdir.Dir
	defer func() {
		if err != nil {
			if d != nil {
				os.RemoveAll(dir)
				d.Close()
			}
			if spill != nil {
				os.RemoveAll(spillDir)
				spill.Close()
			}
		}
	}()
	if spillDir != "" {
		if spill, err = privdir.Create(spillDir, spillHint); err != nil {
			return nil, fmt.Errorf("create the spill directory: %w", err)
		}
	}
	if d, err = privdir.Create(dir, storeHint); err != nil {
		return nil, fmt.Errorf("create the object store directory: %w", err)
	}
	defer d.Close()
	f, err := d.CreateFile("arena")
	if err != nil {
		return nil, fmt.Errorf("create object store arena: %w", err)
	}
	p := f.Name()
	capacity = capacity / PageSize * PageSize
	if err := f.Truncate(capacity); err != nil {
		f.Close()
		return nil, fmt.Errorf("size object store arena %s to %d bytes: %w", p, capacity, err)
	}
	return &Store{log: log, dir: dir, spillDir: spillDir, spill: spill, arenaPath: p, arena: f,
		alloc: newAllocator(capacity), objs: map[wire.ID]*Object{}}, nil
}

// ArenaPath returns the arena file's path.
func (s *Store) ArenaPath() string { return s.arenaPath }

// Capacity returns the arena size in bytes.
func (s *Store) Capacity() int64 { return s.alloc.size }

// Close removes the arena, the store directory and the spill directory.
func (s *Store) Close() error {
	s.arena.Close()
	err := os.RemoveAll(s.dir)
	if s.spill != nil {
		if e := os.RemoveAll(s.spillDir); e != nil && err == nil {
			err = e
		}
		s.spill.Close()
	}
	return err
}

// Lookup returns the object or nil.
func (s *Store) Lookup(id wire.ID) *Object { return s.objs[id] }

// Stats returns the store's figures.
func (s *Store) Stats() wire.StoreStats {
	return wire.StoreStats{Objects: len(s.objs), Bytes: s.alloc.used + s.inline, Capacity: s.alloc.size,
		Spilled: s.spilled, SpilledBytes: s.spillB}
}

func (s *Store) entry(id wire.ID) *Object {
	o := s.objs[id]
	if o == nil {
		o = &Object{ID: id, refs: map[uint64]int{}}
		s.objs[id] = o
	}
	return o
}

// Expect registers a pending object (a task's return value) with one reference for owner.
func (s *Store) Expect(id wire.ID, owner uint64) *Object {
	o := s.entry(id)
	if owner != 0 {
		o.refs[owner]++
	}
	return o
}

// PutInline stores a sealed inline object. owner (0 for none) gets a reference. It returns
// nil when the object is unknown and nobody would own it (a return value already freed).
func (s *Store) PutInline(id wire.ID, format int, data []byte, refs []wire.ID, owner uint64) *Object {
	o := s.objs[id]
	if o == nil && owner == 0 {
		return nil
	}
	o = s.entry(id)
	if o.State == Sealed {
		return o // immutable: a retried task's second answer is ignored
	}
	if owner != 0 {
		o.refs[owner]++
	}
	o.Fmt, o.Inline, o.State = format, data, Sealed
	s.inline += int64(len(data))
	s.pinAll(refs)
	o.Refs = refs
	return o
}

func (s *Store) pinAll(ids []wire.ID) {
	for _, r := range ids {
		if p := s.objs[r]; p != nil {
			p.pins++
		}
	}
}

// Create reserves size bytes for object id and returns where to write them. When the arena
// has no room it spills other objects to disk; when that is not enough the object itself goes
// to a spill file. An object larger than the whole arena is an error wrapping ErrFull.
func (s *Store) Create(id wire.ID, format int, size int64, refs []wire.ID, owner uint64) (*Object, error) {
	return s.create(id, format, size, refs, owner, false)
}

// CreateAny is Create for a copy pulled from another node: an object larger than the whole
// arena goes straight to a spill file instead of failing.
func (s *Store) CreateAny(id wire.ID, format int, size int64, owner uint64) (*Object, error) {
	return s.create(id, format, size, nil, owner, true)
}

func (s *Store) create(id wire.ID, format int, size int64, refs []wire.ID, owner uint64, big bool) (*Object, error) {
	if size < 0 {
		return nil, fmt.Errorf("create object %s: negative size %d", id, size)
	}
	if size > s.alloc.size && !big {
		return nil, fmt.Errorf("%w: object %s of %s is larger than the object store (%s); start the cluster with a larger --object-store-memory",
			ErrFull, id, human(size), human(s.alloc.size))
	}
	if o := s.objs[id]; o != nil && o.State != Pending {
		return nil, fmt.Errorf("create object %s: it already exists (objects are immutable)", id)
	}
	o := s.entry(id)
	if owner != 0 {
		o.refs[owner]++
	}
	o.Fmt, o.Size, o.State = format, size, Created
	if err := s.place(o); err != nil {
		delete(s.objs, id)
		return nil, err
	}
	s.pinAll(refs)
	o.Refs = refs
	return o, nil
}

// place gives o.Size bytes of room to o: in the arena, spilling least recently used objects
// to make room, or else in a spill file of its own.
func (s *Store) place(o *Object) error {
	off := int64(-1)
	if o.Size <= s.alloc.size {
		off = s.alloc.alloc(o.Size)
		for off < 0 && s.spillOne() {
			off = s.alloc.alloc(o.Size)
		}
	}
	if off >= 0 {
		o.Path, o.Offset, o.inArena = s.arenaPath, off, true
		return nil
	}
	f, err := s.spillFile(o.ID, o.Size)
	if err != nil {
		return err
	}
	f.Close()
	o.Path, o.Offset, o.spilled = f.Name(), 0, true
	s.spilled++
	s.spillB += o.Size
	s.log.Debug("arena full, object created in spill directory", "object", o.ID.String(), "size", o.Size)
	return nil
}

// Abort drops an object that Create or CreateAny made and whose bytes never arrived.
func (s *Store) Abort(id wire.ID) {
	o := s.objs[id]
	if o == nil || o.State != Created {
		return
	}
	s.dropBytes(o)
	delete(s.objs, id)
}

// PutRemote records a sealed object whose size bytes live in another node's store, served at
// loc. owner (0 for none) gets a reference. It returns nil when the object is unknown and
// nobody would own it, or when it is sealed already (a retried task's second answer).
func (s *Store) PutRemote(id wire.ID, format int, size int64, refs []wire.ID, owner uint64, loc string) *Object {
	o := s.objs[id]
	if (o == nil && owner == 0) || (o != nil && o.State != Pending) {
		return nil
	}
	o = s.entry(id)
	if owner != 0 {
		o.refs[owner]++
	}
	o.Fmt, o.Size, o.Loc, o.State = format, size, loc, Sealed
	s.pinAll(refs)
	o.Refs = refs
	return o
}

// FillRemote reserves room here for a remote object's bytes (see PutRemote), so that a pull
// can write them; owner gets a use that keeps the range until Filled. It returns the object.
func (s *Store) FillRemote(id wire.ID, owner uint64) (*Object, error) {
	o := s.objs[id]
	if o == nil || o.freeWant || o.State != Sealed || o.Loc == "" || o.Path != "" {
		return nil, fmt.Errorf("[internal error] fill object %s: not a remote object without local bytes", id)
	}
	if err := s.place(o); err != nil {
		return nil, err
	}
	o.filling = true
	s.Use(o, owner)
	return o, nil
}

// Filled ends FillRemote: with ok the bytes are here and readable, otherwise the room goes
// back and the object stays remote. The use of owner ends either way.
func (s *Store) Filled(id wire.ID, owner uint64, ok bool) {
	o := s.objs[id]
	if o == nil || !o.filling {
		return
	}
	o.filling = false
	if ok {
		o.Loc = ""
		s.touch(o)
	} else {
		delete(o.uses, owner)
		s.dropBytes(o)
		o.Path = ""
		owner = 0
	}
	if owner != 0 {
		s.Release(id, owner)
	} else {
		s.maybeFree(o)
	}
}

// Free returns the room in the arena for an object of size bytes now, without spilling.
func (s *Store) Free() int64 { return s.alloc.largest() }

// spillFile creates the spill file of id, size bytes, in the (private) spill directory.
func (s *Store) spillFile(id wire.ID, size int64) (*os.File, error) {
	if s.spill == nil {
		return nil, fmt.Errorf("%w: no room for %s in the arena and spilling is off", ErrFull, human(size))
	}
	name := id.String()
	f, err := s.spill.CreateFile(name)
	if errors.Is(err, fs.ErrExist) {
		// only this process writes the private spill directory: a stale file of an earlier
		// copy of the object
		if err = s.spill.Remove(name); err == nil {
			f, err = s.spill.CreateFile(name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create spill file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		s.spill.Remove(name)
		return nil, fmt.Errorf("size spill file %s: %w", f.Name(), err)
	}
	return f, nil
}

// spillOne moves the least recently used sealed arena object that nobody maps to the spill
// directory. It reports whether it freed anything.
func (s *Store) spillOne() bool {
	var cands []*Object
	for _, o := range s.objs {
		if o.inArena && o.State == Sealed && len(o.uses) == 0 && !o.freeWant && !o.filling {
			cands = append(cands, o)
		}
	}
	if len(cands) == 0 || s.spill == nil {
		return false
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].tick < cands[j].tick })
	o := cands[0]
	f, err := s.spillFile(o.ID, o.Size)
	if err != nil {
		s.log.Warn("spill object failed", "object", o.ID.String(), "error", err)
		return false
	}
	p := f.Name()
	_, err = io.Copy(f, io.NewSectionReader(s.arena, o.Offset, o.Size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.spill.Remove(o.ID.String())
		s.log.Warn("spill object failed", "object", o.ID.String(), "error", err)
		return false
	}
	s.releaseRange(o)
	o.Path, o.Offset, o.inArena, o.spilled = p, 0, false, true
	s.spilled++
	s.spillB += o.Size
	s.log.Debug("spilled object", "object", o.ID.String(), "size", o.Size, "path", p)
	return true
}

func (s *Store) releaseRange(o *Object) {
	// The pages stay allocated: the next object written here reuses them at memcpy speed,
	// while fresh tmpfs pages are written about ten times slower (docs/architecture.md).
	// The arena never holds more than its capacity, so this costs no more than a full store.
	s.alloc.release(o.Offset, o.Size)
}

// Seal makes a created object readable.
func (s *Store) Seal(id wire.ID) (*Object, error) {
	o := s.objs[id]
	if o == nil || o.State != Created {
		return nil, fmt.Errorf("seal object %s: it was not created on this connection", id)
	}
	o.State = Sealed
	s.touch(o)
	s.maybeFree(o)
	return o, nil
}

func (s *Store) touch(o *Object) { s.clock++; o.tick = s.clock }

// SetError seals a pending object as an error object. It returns nil when the object is
// unknown or already sealed (objects are immutable).
func (s *Store) SetError(id wire.ID, data []byte) *Object {
	o := s.objs[id]
	if o == nil || o.State == Sealed {
		return nil
	}
	if o.State == Created {
		s.dropBytes(o)
	}
	o.Fmt, o.Inline, o.Path, o.State = wire.FmtError, data, "", Sealed
	s.inline += int64(len(data))
	return o
}

// Incref adds n references for owner.
func (s *Store) Incref(id wire.ID, owner uint64) {
	if o := s.objs[id]; o != nil {
		o.refs[owner]++
	}
}

// Decref drops one reference of owner.
func (s *Store) Decref(id wire.ID, owner uint64) {
	o := s.objs[id]
	if o == nil {
		return
	}
	if o.refs[owner] > 1 {
		o.refs[owner]--
	} else {
		delete(o.refs, owner)
	}
	s.maybeFree(o)
}

// Pin and Unpin hold an object for a task.
func (s *Store) Pin(id wire.ID) {
	if o := s.objs[id]; o != nil {
		o.pins++
	}
}

// Unpin releases a Pin.
func (s *Store) Unpin(id wire.ID) {
	if o := s.objs[id]; o != nil {
		o.pins--
		s.maybeFree(o)
	}
}

// Use records that owner maps the object's bytes.
func (s *Store) Use(o *Object, owner uint64) {
	if !o.Stored() {
		return
	}
	if o.uses == nil {
		o.uses = map[uint64]int{}
	}
	o.uses[owner]++
	s.touch(o)
}

// Release ends one use of owner.
func (s *Store) Release(id wire.ID, owner uint64) {
	o := s.objs[id]
	if o == nil || o.uses[owner] == 0 {
		return
	}
	if o.uses[owner]--; o.uses[owner] == 0 {
		delete(o.uses, owner)
	}
	s.maybeFree(o)
}

// DropOwner removes every reference and use of owner (its connection closed).
func (s *Store) DropOwner(owner uint64) {
	var touched []*Object
	for _, o := range s.objs {
		_, r := o.refs[owner]
		_, u := o.uses[owner]
		if r || u {
			delete(o.refs, owner)
			delete(o.uses, owner)
			touched = append(touched, o)
		}
	}
	for _, o := range touched {
		s.maybeFree(o)
	}
}

// Free drops an object whatever its references (used when the whole job goes).
func (s *Store) maybeFree(o *Object) {
	if len(o.refs) > 0 || o.pins > 0 || o.State == Created {
		return
	}
	if o.State == Pending {
		// nobody wants the value any more; forget it (a late result is dropped)
		delete(s.objs, o.ID)
		return
	}
	if s.objs[o.ID] != o {
		return
	}
	delete(s.objs, o.ID)
	if len(o.uses) > 0 {
		// a client still maps the bytes: keep the range until its last RELEASE
		o.freeWant = true
		s.objs[o.ID] = o
		o.State = Sealed
		if o.refs == nil {
			o.refs = map[uint64]int{}
		}
		return
	}
	s.dropBytes(o)
	for _, r := range o.Refs {
		s.Unpin(r)
	}
	if s.OnFree != nil {
		s.OnFree(o.ID)
	}
}

// Freed reports whether an object is only waiting for its last use to end.
func (o *Object) Freed() bool { return o.freeWant }

func (s *Store) dropBytes(o *Object) {
	switch {
	case o.inArena:
		s.releaseRange(o)
		o.inArena = false
	case o.spilled:
		os.Remove(o.Path)
		s.spilled--
		s.spillB -= o.Size
		o.spilled = false
	default:
		s.inline -= int64(len(o.Inline))
	}
	o.Inline = nil
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
