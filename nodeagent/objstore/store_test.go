package objstore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

func newStore(t *testing.T, capacity int64) *Store {
	t.Helper()
	dir := t.TempDir()
	s, err := New(hclog.NewNullLogger(), filepath.Join(dir, "shm"), filepath.Join(dir, "spill"), capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func id(n byte) wire.ID { return wire.ID{n} }

func TestAllocatorFirstFitAndCoalesce(t *testing.T) {
	a := newAllocator(10 * PageSize)
	x := a.alloc(PageSize)
	y := a.alloc(3 * PageSize)
	z := a.alloc(PageSize + 1) // rounds up to 2 pages
	if x != 0 || y != PageSize || z != 4*PageSize {
		t.Fatalf("offsets %d %d %d", x, y, z)
	}
	a.release(y, 3*PageSize)
	if got := a.alloc(2 * PageSize); got != PageSize {
		t.Fatalf("first fit reused %d, want %d", got, PageSize)
	}
	a.release(PageSize, 2*PageSize)
	a.release(x, PageSize)
	a.release(z, PageSize+1)
	if len(a.free) != 1 || a.free[0].len != 10*PageSize || a.used != 0 {
		t.Fatalf("free list did not coalesce: %+v used %d", a.free, a.used)
	}
	if a.alloc(11*PageSize) != -1 {
		t.Fatal("allocated more than the arena")
	}
}

func TestRefcountFreesObject(t *testing.T) {
	s := newStore(t, 1<<20)
	var freed []wire.ID
	s.OnFree = func(i wire.ID) { freed = append(freed, i) }
	o, err := s.Create(id(1), wire.FmtRaw, 100_000, nil, 7, 7)
	if err != nil {
		t.Fatal(err)
	}
	if o.Path != s.ArenaPath() || o.Offset%PageSize != 0 {
		t.Fatalf("object at %s+%d", o.Path, o.Offset)
	}
	s.Seal(id(1), 7)
	s.Incref(id(1), 8)
	s.Decref(id(1), 7)
	if s.Lookup(id(1)) == nil {
		t.Fatal("freed while owner 8 still holds a reference")
	}
	s.Use(o, 9)
	s.Decref(id(1), 8)
	if o := s.Lookup(id(1)); o == nil || !o.Freed() {
		t.Fatal("object in use must stay mapped but read as freed")
	}
	if s.alloc.used == 0 {
		t.Fatal("range released while a client maps it")
	}
	s.Release(id(1), 9)
	if s.Lookup(id(1)) != nil || s.alloc.used != 0 || len(freed) != 1 {
		t.Fatalf("not freed after the last use: used=%d freed=%v", s.alloc.used, freed)
	}
}

func TestContainedRefsArePinned(t *testing.T) {
	s := newStore(t, 1<<20)
	s.PutInline(id(1), wire.FmtPython, []byte("inner"), nil, 1)
	s.PutInline(id(2), wire.FmtPython, []byte("outer"), []wire.ID{id(1)}, 1)
	s.Decref(id(1), 1)
	if s.Lookup(id(1)) == nil {
		t.Fatal("inner object freed while the outer one holds it")
	}
	s.Decref(id(2), 1)
	if s.Lookup(id(1)) != nil || s.Lookup(id(2)) != nil {
		t.Fatal("objects not freed once the outer one went")
	}
}

func TestDropOwner(t *testing.T) {
	s := newStore(t, 1<<20)
	for i := byte(1); i <= 3; i++ {
		s.PutInline(id(i), wire.FmtRaw, []byte{i}, nil, 5)
	}
	s.Incref(id(2), 6)
	s.DropOwner(5)
	if s.Lookup(id(1)) != nil || s.Lookup(id(3)) != nil || s.Lookup(id(2)) == nil {
		t.Fatal("DropOwner freed the wrong objects")
	}
}

func TestFullArenaSpills(t *testing.T) {
	s := newStore(t, 4*PageSize)
	o1, _ := s.Create(id(1), wire.FmtRaw, 3*PageSize, nil, 1, 1)
	f, _ := os.OpenFile(o1.Path, os.O_RDWR, 0)
	f.WriteAt([]byte("first object"), o1.Offset)
	f.Close()
	s.Seal(id(1), 1)
	o2, err := s.Create(id(2), wire.FmtRaw, 3*PageSize, nil, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if o2.Path != s.ArenaPath() {
		t.Fatal("the new object should get the arena after the old one spilled")
	}
	o1 = s.Lookup(id(1))
	if o1.Path == s.ArenaPath() {
		t.Fatal("the sealed object was not spilled")
	}
	b, err := os.ReadFile(o1.Path)
	if err != nil || string(b[:12]) != "first object" {
		t.Fatalf("spilled bytes %q, %v", b[:12], err)
	}
	// o2 is only created (not sealed), so a third object goes to a spill file itself
	o3, err := s.Create(id(3), wire.FmtRaw, 2*PageSize, nil, 1, 1)
	if err != nil || o3.Path == s.ArenaPath() {
		t.Fatalf("third object: %+v %v", o3, err)
	}
	if st := s.Stats(); st.Spilled != 2 {
		t.Fatalf("stats %+v", st)
	}
	s.Seal(id(3), 1)
	s.Decref(id(3), 1)
	if _, err := os.Stat(o3.Path); !os.IsNotExist(err) {
		t.Fatal("spill file of a freed object is still there")
	}
}

func TestObjectLargerThanStore(t *testing.T) {
	s := newStore(t, 4*PageSize)
	_, err := s.Create(id(1), wire.FmtRaw, 5*PageSize, nil, 1, 1)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("got %v, want ErrFull", err)
	}
}

func TestCloseRemovesFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := New(hclog.NewNullLogger(), filepath.Join(dir, "shm"), filepath.Join(dir, "spill"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "shm"))
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("store directory mode %v, want 0700", st.Mode().Perm())
	}
	ast, _ := os.Stat(s.ArenaPath())
	if ast.Mode().Perm() != 0o600 {
		t.Fatalf("arena mode %v, want 0600", ast.Mode().Perm())
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "shm")); !os.IsNotExist(err) {
		t.Fatal("store directory left behind")
	}
}

func TestRemoteObjectFilledHereAndFreed(t *testing.T) {
	s := newStore(t, 16*PageSize)
	var freed []wire.ID
	s.OnFree = func(id wire.ID) { freed = append(freed, id) }
	o := s.PutRemote(id(1), wire.FmtRaw, 3*PageSize, nil, 7, "tcp:10.0.0.2:9")
	if o == nil || o.Local() || o.Stored() {
		t.Fatalf("a remote object must be sealed here without local bytes: %+v", o)
	}
	if got := o.Obj(); got.Loc != "tcp:10.0.0.2:9" || got.Size != 3*PageSize || got.Path != "" {
		t.Fatalf("obj of a remote object %+v; want its loc and size, no path", got)
	}
	if s.PutRemote(id(1), wire.FmtRaw, 3*PageSize, nil, 7, "tcp:x:1") != nil {
		t.Fatal("a second PUT_AT of a sealed object must be ignored (objects are immutable)")
	}
	if _, err := s.FillRemote(id(1), 100); err != nil {
		t.Fatal(err)
	}
	if o.Local() {
		t.Fatal("an object being pulled must not be readable yet")
	}
	s.Filled(id(1), 100, true)
	if !o.Local() || !o.Stored() || o.Path != s.ArenaPath() {
		t.Fatalf("after the pull the object must be readable from the arena: %+v", o)
	}
	s.Decref(id(1), 7)
	if len(freed) != 1 || s.Stats().Bytes != 0 {
		t.Fatalf("after the last reference: freed %v, stats %+v", freed, s.Stats())
	}
}

func TestFailedFillLeavesTheObjectRemote(t *testing.T) {
	s := newStore(t, 16*PageSize)
	o := s.PutRemote(id(2), wire.FmtRaw, PageSize, nil, 7, "tcp:h:1")
	if _, err := s.FillRemote(id(2), 100); err != nil {
		t.Fatal(err)
	}
	s.Filled(id(2), 100, false)
	if o.Local() || o.Stored() || s.Stats().Bytes != 0 {
		t.Fatalf("a failed pull must give the room back and leave the object remote: %+v %+v", o, s.Stats())
	}
}

func TestCreateAnySpillsWhatTheArenaCannotHold(t *testing.T) {
	s := newStore(t, 4*PageSize)
	if _, err := s.Create(id(3), 0, 8*PageSize, nil, 1, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("Create of an object larger than the arena: %v, want ErrFull", err)
	}
	o, err := s.CreateAny(id(3), 0, 8*PageSize, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if o.Path == s.ArenaPath() || s.Stats().Spilled != 1 {
		t.Fatalf("an object larger than the arena must go to a spill file: %+v", o)
	}
	s.Abort(id(3))
	if _, err := os.Stat(o.Path); !os.IsNotExist(err) || s.Lookup(id(3)) != nil {
		t.Fatalf("Abort must remove the spill file and the entry: %v", err)
	}
}
