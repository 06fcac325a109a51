// Package objstore is a node's shared-memory object store: one arena file under /dev/shm
// (per cluster, mode 0600 in a 0700 directory) that local clients map, holding immutable
// sealed objects, plus small objects kept inline in the agent's memory. It counts references
// per owner (a connection), pins (tasks and containing objects) and uses (clients that map an
// object's bytes), frees an object when all three are gone, and spills objects to a local
// directory when the arena is full instead of failing.
//
// Nothing a client does can make it exceed its budget or kill a writer:
//   - inline objects count against the arena's capacity (past it they spill, as stored
//     objects do);
//   - every byte a client will write through a mapping (an arena range, a spill file) is
//     reserved with fallocate before its CREATE is answered, so a full tmpfs or disk is
//     ErrFull (or spilling), never SIGBUS in the writer;
//   - an object created and never sealed is dropped when its writer (the connection that sent
//     CREATE) goes, and a task's return value goes back to pending so that a retry can write
//     it; a second writer of an unsealed object (a retry whose earlier attempt is not known to
//     be dead yet) gets fresh room, and the first one's room is kept until it goes.
//
// A Store is not safe for concurrent use: the agent calls it under its own lock.
package objstore

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/internal/privdir"
	"github.com/shoal-hpc/shoal/wire"
)

// ErrFull is wrapped when an object cannot be stored: it is larger than the whole store, or
// neither the store's memory nor the spill directory has room for it.
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
	// While Created: the connection writing the bytes, the owner whose reference its CREATE
	// added (0: none), and whether the object was pending (a task's return value) before.
	writer     uint64
	createRef  uint64
	wasPending bool
	// elem is o's place in the store's list of the spillable kind it is (lru), by last use
	elem *list.Element
	lst  *list.List
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
	// orphans holds the room of unsealed objects whose writer was superseded by another one
	// (see Create), by writer: kept until that writer goes, so that it cannot write over the
	// bytes of the object's next owner of the range.
	orphans map[uint64][]room
	// backed has a bit per arena chunk (backChunk bytes) whose pages fallocate has reserved;
	// the store never punches holes, so a bit is never cleared.
	backed []uint64
	// reserve reserves n bytes at off of f before a client writes them (fallocate; a test
	// may replace it to play a full file system).
	reserve func(f *os.File, off, n int64) error
	// lruArena and lruInline hold the sealed objects whose bytes are in the arena, and the
	// sealed inline ones (error objects aside), least recently used first: what spillOne
	// takes from, without a scan of every object.
	lruArena, lruInline *list.List
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
		alloc: newAllocator(capacity), objs: map[wire.ID]*Object{}, orphans: map[uint64][]room{},
		lruArena: list.New(), lruInline: list.New(),
		backed: make([]uint64, (capacity+backChunk*64-1)/(backChunk*64)), reserve: fallocate}, nil
}

// ArenaPath returns the arena file's path.
func (s *Store) ArenaPath() string { return s.arenaPath }

// Capacity returns the arena size in bytes: the budget of the arena's objects and the inline
// ones together.
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

// Stats returns the store's figures. Bytes counts the arena's ranges (those of unsealed
// objects included) and the inline objects: what the budget holds.
func (s *Store) Stats() wire.StoreStats {
	return wire.StoreStats{Objects: len(s.objs), Bytes: s.held(), Capacity: s.alloc.size,
		Spilled: s.spilled, SpilledBytes: s.spillB}
}

// held is what the budget (the arena's capacity) holds now.
func (s *Store) held() int64 { return s.alloc.used + s.inline }

// fits reports whether n more bytes fit the budget.
func (s *Store) fits(n int64) bool { return s.held()+n <= s.alloc.size }

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
// The object counts against the budget: when it does not fit, the least recently used objects
// spill to make room, and failing that it goes to a spill file itself (it is then stored,
// not inline). When the spill directory has no room either (or spilling is off), the object
// is sealed as an error object of kind "store_full" that names the sizes and the flags.
func (s *Store) PutInline(id wire.ID, format int, data []byte, refs []wire.ID, owner uint64) *Object {
	o := s.objs[id]
	if o == nil && owner == 0 {
		return nil
	}
	o = s.entry(id)
	if o.State == Sealed {
		return o // immutable: a retried task's second answer is ignored
	}
	if o.State == Created {
		s.supersede(o) // an earlier attempt's bytes, never sealed
	}
	if owner != 0 {
		o.refs[owner]++
	}
	n := int64(len(data))
	for !s.fits(n) && s.spillOne(true) {
	}
	o.Fmt, o.State = format, Sealed
	switch {
	case s.fits(n) || format == wire.FmtError:
		o.Inline = data
		s.inline += n
	default:
		if err := s.spillBytes(o, data); err != nil {
			o.Fmt, o.Inline = wire.FmtError, errorData("store_full", err.Error())
			s.inline += int64(len(o.Inline))
			s.log.Warn("object refused: no room in the store's memory or spill directory", "object", id.String(), "size", n, "error", err)
		}
	}
	s.touch(o)
	s.pinAll(refs)
	o.Refs = refs
	return o
}

// errorData encodes an error object's bytes as the clients read them (msgpack {kind, msg}).
func errorData(kind, msg string) []byte {
	b, _ := msgpack.Marshal(map[string]any{"kind": kind, "msg": msg})
	return b
}

// spillBytes puts the bytes of o (sealed, inline so far or new) in a spill file of its own.
func (s *Store) spillBytes(o *Object, data []byte) error {
	size := int64(len(data))
	f, err := s.spillFile(o.ID, size, false)
	if err == nil {
		_, err = f.WriteAt(data, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.spill.Remove(o.ID.String())
			err = s.fullError(o.ID, size, fmt.Errorf("write spill file: %w", err))
		}
	}
	if err != nil {
		return err
	}
	o.Path, o.Offset, o.Size, o.spilled, o.Inline = s.spill.Join(o.ID.String()), 0, size, true, nil
	s.spilled++
	s.spillB += size
	return nil
}

func (s *Store) pinAll(ids []wire.ID) {
	for _, r := range ids {
		if p := s.objs[r]; p != nil {
			p.pins++
		}
	}
}

func (s *Store) unpinAll(ids []wire.ID) {
	for _, r := range ids {
		s.Unpin(r)
	}
}

// Create reserves size bytes for object id, written by connection writer (0: the caller
// itself, which seals it before it lets go of the store), and returns where to write them.
// owner (0 for none) gets a reference. When the arena has no room it spills other objects to
// disk; when that is not enough the object itself goes to a spill file. The room is reserved
// (fallocate) before Create returns. An object larger than the whole arena, or one for which
// neither the arena's file system nor the spill directory has room, is an error wrapping
// ErrFull. An unsealed object of another writer is superseded (see the package comment).
func (s *Store) Create(id wire.ID, format int, size int64, refs []wire.ID, owner, writer uint64) (*Object, error) {
	return s.create(id, format, size, refs, owner, writer, false)
}

// CreateAny is Create for a copy pulled from another node, or written by a client of a member
// node's store: an object larger than the whole arena goes straight to a spill file instead
// of failing.
func (s *Store) CreateAny(id wire.ID, format int, size int64, owner, writer uint64) (*Object, error) {
	return s.create(id, format, size, nil, owner, writer, true)
}

func (s *Store) create(id wire.ID, format int, size int64, refs []wire.ID, owner, writer uint64, big bool) (*Object, error) {
	if size < 0 {
		return nil, fmt.Errorf("create object %s: negative size %d", id, size)
	}
	if size > s.alloc.size && !big {
		return nil, fmt.Errorf("%w: object %s of %s is larger than the object store (%s); start the cluster with a larger --object-store-memory",
			ErrFull, id, human(size), human(s.alloc.size))
	}
	o := s.objs[id]
	if o != nil && o.State == Sealed {
		return nil, fmt.Errorf("create object %s: it already exists (objects are immutable)", id)
	}
	if o != nil && o.State == Created {
		if o.writer == writer {
			return nil, fmt.Errorf("create object %s: this connection is writing it already; seal it first", id)
		}
		s.supersede(o)
	}
	wasPending := o != nil
	o = s.entry(id)
	o.Fmt, o.Size, o.State = format, size, Created
	if err := s.place(o); err != nil {
		if wasPending {
			o.State, o.Size = Pending, 0
		} else {
			delete(s.objs, id)
		}
		return nil, err
	}
	if owner != 0 {
		o.refs[owner]++
	}
	o.writer, o.createRef, o.wasPending = writer, owner, wasPending
	s.pinAll(refs)
	o.Refs = refs
	return o, nil
}

// room is the bytes of an object that was never sealed and whose writer was superseded.
type room struct {
	off, size int64
	path      string // a spill file; "" for an arena range
}

// supersede detaches the room of o (Created) from it: kept for o's writer, which may still
// be writing, until that writer goes (DropOwner). o goes back to the state before its CREATE.
func (s *Store) supersede(o *Object) {
	switch {
	case o.inArena:
		s.orphans[o.writer] = append(s.orphans[o.writer], room{off: o.Offset, size: o.Size})
	case o.spilled:
		s.orphans[o.writer] = append(s.orphans[o.writer], room{size: o.Size, path: o.Path})
	}
	s.log.Debug("unsealed object superseded by a second writer", "object", o.ID.String(), "writer", o.writer)
	s.unlist(o)
	o.inArena, o.spilled = false, false
	s.undoCreate(o)
}

// undoCreate takes back what the CREATE of o added: its reference and its pins. o is Pending
// afterwards, its room gone (the caller released or kept it).
func (s *Store) undoCreate(o *Object) {
	if r := o.createRef; r != 0 && o.refs[r] > 0 {
		if o.refs[r]--; o.refs[r] == 0 {
			delete(o.refs, r)
		}
	}
	refs := o.Refs
	o.Path, o.Offset, o.Size, o.Refs, o.State = "", 0, 0, nil, Pending
	o.writer, o.createRef, o.wasPending = 0, 0, false
	s.unpinAll(refs)
}

// abort drops o (Created, its writer gone or its bytes never coming): its room goes back, and
// the object goes back to pending when it was a task's return value that someone still
// wants (a retry may write it), or away otherwise, whatever its references: its bytes will
// never come. It reports whether the object went away.
func (s *Store) abort(o *Object) bool {
	was := o.wasPending
	s.dropBytes(o)
	s.undoCreate(o)
	if was && (len(o.refs) > 0 || o.pins > 0) {
		return false
	}
	delete(s.objs, o.ID)
	return true
}

// place gives o.Size bytes of room to o: in the arena, spilling least recently used objects
// to make room, or else in a spill file of its own. The room is reserved before it returns.
func (s *Store) place(o *Object) error {
	var arenaErr error
	if n := roundUp(o.Size); o.Size <= s.alloc.size {
		for {
			if s.fits(n) {
				if off := s.alloc.alloc(o.Size); off >= 0 {
					if arenaErr = s.reserveArena(off, n); arenaErr == nil {
						o.Path, o.Offset, o.inArena = s.arenaPath, off, true
						return nil
					}
					s.alloc.release(off, o.Size)
					s.log.Warn("the arena's file system has no room for an object: it goes to the spill directory",
						"object", o.ID.String(), "size", o.Size, "error", arenaErr)
					break
				}
			}
			if !s.spillOne(!s.fits(n)) {
				break
			}
		}
	}
	f, err := s.spillFile(o.ID, o.Size, true)
	if err != nil {
		if arenaErr != nil {
			return fmt.Errorf("%w; the arena's file system is full too (--object-store-dir, SHOAL_OBJECT_STORE_DIR): %v", err, arenaErr)
		}
		return err
	}
	f.Close()
	o.Path, o.Offset, o.spilled = f.Name(), 0, true
	s.spilled++
	s.spillB += o.Size
	s.log.Debug("arena full, object created in spill directory", "object", o.ID.String(), "size", o.Size)
	return nil
}

// backChunk is the unit in which the arena's pages are reserved.
const backChunk = 2 << 20

// reserveArena reserves the arena's pages under [off, off+n) that no object has had before,
// in whole chunks, so that a client writing there never meets a full file system (SIGBUS).
func (s *Store) reserveArena(off, n int64) error {
	first, last := off/backChunk, (off+n-1)/backChunk
	for c := first; c <= last; c++ {
		if s.backed[c/64]&(1<<(c%64)) != 0 {
			continue
		}
		e := c
		for e < last && s.backed[(e+1)/64]&(1<<((e+1)%64)) == 0 {
			e++
		}
		lo, hi := c*backChunk, min((e+1)*backChunk, s.alloc.size)
		if err := s.reserve(s.arena, lo, hi-lo); err != nil {
			return fmt.Errorf("reserve %s of the arena %s: %w", human(hi-lo), s.arenaPath, err)
		}
		for ; c <= e; c++ {
			s.backed[c/64] |= 1 << (c % 64)
		}
		c = e
	}
	return nil
}

// fallocate reserves [off, off+n) of f; a file system without fallocate gets zeros written.
func fallocate(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return zeroFill(f, off, n)
	}
	if err != nil {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	return nil
}

func zeroFill(f *os.File, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// noRoom reports whether err says a file system (or the memory behind a tmpfs) is full.
func noRoom(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EFBIG)
}

// fullError says that neither the budget nor the spill directory holds an object of size bytes.
func (s *Store) fullError(id wire.ID, size int64, err error) error {
	return fmt.Errorf("%w: no room for object %s of %s: the store holds %s of its %s (--object-store-memory, SHOAL_OBJECT_STORE_MEMORY), and the spill directory %s has no room (%v); free objects (drop their refs), or restart with --spill-dir (SHOAL_SPILL_DIR) on a disk with room",
		ErrFull, id, human(size), human(s.held()), human(s.alloc.size), s.spillDir, err)
}

// Abort drops an object that Create or CreateAny made and whose bytes never arrived.
func (s *Store) Abort(id wire.ID) {
	o := s.objs[id]
	if o == nil || o.State != Created {
		return
	}
	s.abort(o)
}

// PutRemote records a sealed object whose size bytes live in another node's store, served at
// loc. owner (0 for none) gets a reference. It returns nil when the object is unknown and
// nobody would own it, or when it is sealed already (a retried task's second answer).
func (s *Store) PutRemote(id wire.ID, format int, size int64, refs []wire.ID, owner uint64, loc string) *Object {
	o := s.objs[id]
	if (o == nil && owner == 0) || (o != nil && o.State == Sealed) {
		return nil
	}
	if o != nil && o.State == Created {
		s.supersede(o) // an earlier attempt here, never sealed
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
func (s *Store) Free() int64 { return min(s.alloc.largest(), max(0, s.alloc.size-s.held())) }

// spillFile creates the spill file of id, size bytes, in the (private) spill directory; with
// reserve its blocks are reserved (fallocate), for a client that will write it through a
// mapping. A full spill directory is an error wrapping ErrFull.
func (s *Store) spillFile(id wire.ID, size int64, reserve bool) (*os.File, error) {
	if s.spill == nil {
		return nil, fmt.Errorf("%w: no room for %s in the object store (%s of %s held; --object-store-memory) and spilling is off",
			ErrFull, human(size), human(s.held()), human(s.alloc.size))
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
		if noRoom(err) {
			return nil, s.fullError(id, size, err)
		}
		return nil, fmt.Errorf("create spill file: %w", err)
	}
	if err = f.Truncate(size); err == nil && reserve {
		err = s.reserve(f, 0, size)
	}
	if err != nil {
		f.Close()
		s.spill.Remove(name)
		if noRoom(err) {
			return nil, s.fullError(id, size, err)
		}
		return nil, fmt.Errorf("size spill file %s: %w", f.Name(), err)
	}
	return f, nil
}

// spillOne moves the least recently used sealed object that nobody maps to the spill
// directory: one in the arena, or with inline also one kept inline (to free budget rather than
// an arena range). It reports whether it freed anything.
func (s *Store) spillOne(inline bool) bool {
	if s.spill == nil {
		return false
	}
	o := oldest(s.lruArena)
	if inline {
		if c := oldest(s.lruInline); c != nil && (o == nil || c.tick < o.tick) {
			o = c
		}
	}
	if o == nil {
		return false
	}
	if !o.inArena {
		data := o.Inline
		if err := s.spillBytes(o, data); err != nil {
			s.log.Warn("spill object failed", "object", o.ID.String(), "error", err)
			return false
		}
		s.unlist(o)
		s.inline -= int64(len(data))
		s.log.Debug("spilled inline object", "object", o.ID.String(), "size", len(data))
		return true
	}
	f, err := s.spillFile(o.ID, o.Size, false)
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
	s.unlist(o)
	s.releaseRange(o.Offset, o.Size)
	o.Path, o.Offset, o.inArena, o.spilled = p, 0, false, true
	s.spilled++
	s.spillB += o.Size
	s.log.Debug("spilled object", "object", o.ID.String(), "size", o.Size, "path", p)
	return true
}

// oldest returns the least recently used object of l that may spill now: one that no client
// maps, not freed, not being pulled. The ones skipped are few (in use at this moment).
func oldest(l *list.List) *Object {
	for e := l.Front(); e != nil; e = e.Next() {
		if o := e.Value.(*Object); len(o.uses) == 0 && !o.freeWant && !o.filling {
			return o
		}
	}
	return nil
}

func (s *Store) releaseRange(off, n int64) {
	// The pages stay allocated: the next object written here reuses them at memcpy speed,
	// while fresh tmpfs pages are written about ten times slower (docs/architecture.md).
	// The arena never holds more than its capacity, so this costs no more than a full store.
	s.alloc.release(off, n)
}

// Seal makes object id, created by writer, readable.
func (s *Store) Seal(id wire.ID, writer uint64) (*Object, error) {
	o := s.objs[id]
	if o == nil || o.State != Created || o.writer != writer {
		return nil, fmt.Errorf("seal object %s: it was not created on this connection (or its writer was superseded by a retry)", id)
	}
	o.State = Sealed
	o.writer, o.createRef, o.wasPending = 0, 0, false
	s.touch(o)
	s.maybeFree(o)
	return o, nil
}

// touch marks o as used now, and files it in the spill list of its kind (lru).
func (s *Store) touch(o *Object) {
	s.clock++
	o.tick = s.clock
	l := s.lruOf(o)
	if o.elem != nil && o.lst != l {
		s.unlist(o)
	}
	switch {
	case l == nil:
	case o.elem == nil:
		o.elem, o.lst = l.PushBack(o), l
	default:
		l.MoveToBack(o.elem)
	}
}

// lruOf is the spill list o belongs in: arena, inline, or none (nil).
func (s *Store) lruOf(o *Object) *list.List {
	switch {
	case o.State != Sealed:
		return nil
	case o.inArena:
		return s.lruArena
	case o.Path == "" && o.Loc == "" && len(o.Inline) > 0 && o.Fmt != wire.FmtError:
		return s.lruInline
	}
	return nil
}

func (s *Store) unlist(o *Object) {
	if o.elem != nil {
		o.lst.Remove(o.elem)
		o.elem, o.lst = nil, nil
	}
}

// SetError seals a pending object as an error object. It returns nil when the object is
// unknown or already sealed (objects are immutable).
func (s *Store) SetError(id wire.ID, data []byte) *Object {
	o := s.objs[id]
	if o == nil || o.State == Sealed {
		return nil
	}
	if o.State == Created {
		s.supersede(o) // its writer may still be writing
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

// DropOwner removes every reference and use of owner (its connection closed), and drops the
// objects it created and never sealed (see abort). It returns the ids of those that went away,
// so that whoever waits for them learns that they are lost.
func (s *Store) DropOwner(owner uint64) []wire.ID {
	var touched, unsealed []*Object
	for _, o := range s.objs {
		if o.State == Created && o.writer == owner {
			unsealed = append(unsealed, o)
		}
		_, r := o.refs[owner]
		_, u := o.uses[owner]
		if r || u {
			delete(o.refs, owner)
			delete(o.uses, owner)
			touched = append(touched, o)
		}
	}
	var gone []wire.ID
	for _, o := range unsealed {
		s.log.Debug("unsealed object dropped: its writer went", "object", o.ID.String(), "writer", owner)
		if s.abort(o) {
			gone = append(gone, o.ID)
		}
	}
	for _, r := range s.orphans[owner] {
		if r.path != "" {
			os.Remove(r.path)
			s.spilled--
			s.spillB -= r.size
		} else {
			s.releaseRange(r.off, r.size)
		}
	}
	delete(s.orphans, owner)
	for _, o := range touched {
		if s.objs[o.ID] == o {
			s.maybeFree(o)
		}
	}
	return gone
}

// Free drops an object whatever its references (used when the whole job goes).
func (s *Store) maybeFree(o *Object) {
	if len(o.refs) > 0 || o.pins > 0 || o.State == Created {
		return
	}
	if o.State == Pending {
		// nobody wants the value any more; forget it (a late result is dropped)
		delete(s.objs, o.ID)
		if s.OnFree != nil {
			s.OnFree(o.ID)
		}
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
	s.unlist(o)
	switch {
	case o.inArena:
		s.releaseRange(o.Offset, o.Size)
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
