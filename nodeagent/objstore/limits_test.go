package objstore

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/wire"
)

// check fails the test when the store's figures disagree with its objects: Bytes must be what
// the arena's ranges and the inline objects hold, and never more than the capacity (error
// objects aside).
func check(t *testing.T, s *Store) {
	t.Helper()
	st := s.Stats()
	var inline, errs int64
	for _, o := range s.objs {
		if o.Path == "" {
			inline += int64(len(o.Inline))
			if o.Fmt == wire.FmtError {
				errs += int64(len(o.Inline)) // kept whatever the budget: they say what went wrong
			}
		}
	}
	if st.Bytes-errs > st.Capacity {
		t.Fatalf("the store holds %d bytes, more than its capacity %d", st.Bytes, st.Capacity)
	}
	if inline != s.inline {
		t.Fatalf("inline objects hold %d bytes, the store counts %d", inline, s.inline)
	}
	// the spill lists hold exactly the objects of their kind, oldest first
	listed := 0
	for _, l := range []*list.List{s.lruArena, s.lruInline} {
		var tick uint64
		for e := l.Front(); e != nil; e = e.Next() {
			o := e.Value.(*Object)
			if s.objs[o.ID] != o || s.lruOf(o) != l || o.elem != e || o.tick < tick {
				t.Fatalf("spill list holds %s (state %d, in arena %v, tick %d after %d), which does not belong there", o.ID, o.State, o.inArena, o.tick, tick)
			}
			tick = o.tick
			listed++
		}
	}
	want := 0
	for _, o := range s.objs {
		if s.lruOf(o) != nil {
			want++
		}
	}
	if listed != want {
		t.Fatalf("spill lists hold %d objects, %d may spill", listed, want)
	}
}

// TestUnsealedObjects: every way an object created and never sealed ends.
func TestUnsealedObjects(t *testing.T) {
	const (
		submitter = 5 // holds a task's return value
		w1, w2    = 9, 10
	)
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *Store)
	}{
		{"a put whose writer goes is dropped", func(t *testing.T, s *Store) {
			s.PutInline(id(7), wire.FmtRaw, []byte("contained"), nil, w1)
			if _, err := s.Create(id(1), wire.FmtRaw, 3*PageSize, []wire.ID{id(7)}, w1, w1); err != nil {
				t.Fatal(err)
			}
			s.Incref(id(1), submitter) // someone else was handed the ref already
			if gone := s.DropOwner(w1); len(gone) != 1 || gone[0] != id(1) {
				t.Fatalf("DropOwner returned %v, want the unsealed object", gone)
			}
			if s.Lookup(id(1)) != nil || s.Lookup(id(7)) != nil || s.Stats().Bytes != 0 {
				t.Fatalf("after its writer went: %+v, object %v, contained object %v", s.Stats(), s.Lookup(id(1)), s.Lookup(id(7)))
			}
		}},
		{"a task's return value goes back to pending for the retry", func(t *testing.T, s *Store) {
			s.Expect(id(1), submitter)
			if _, err := s.Create(id(1), wire.FmtPython, 3*PageSize, nil, 0, w1); err != nil {
				t.Fatal(err)
			}
			if gone := s.DropOwner(w1); len(gone) != 0 {
				t.Fatalf("DropOwner dropped %v; the submitter still wants it", gone)
			}
			o := s.Lookup(id(1))
			if o == nil || o.State != Pending || s.Stats().Bytes != 0 {
				t.Fatalf("after the attempt died: %+v, stats %+v; want it pending and no room held", o, s.Stats())
			}
			o2, err := s.Create(id(1), wire.FmtPython, 2*PageSize, nil, 0, w2)
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, o2, "retry")
			if _, err := s.Seal(id(1), w2); err != nil {
				t.Fatal(err)
			}
			if got := readAt(t, s.Lookup(id(1)), 5); got != "retry" {
				t.Fatalf("the object reads %q, want the retry's bytes", got)
			}
		}},
		{"a task's return value nobody wants goes", func(t *testing.T, s *Store) {
			s.Expect(id(1), submitter)
			s.Create(id(1), wire.FmtPython, PageSize, nil, 0, w1)
			s.Decref(id(1), submitter)
			if s.Lookup(id(1)) == nil {
				t.Fatal("freed while its writer writes it")
			}
			if gone := s.DropOwner(w1); len(gone) != 1 || s.Lookup(id(1)) != nil || s.Stats().Bytes != 0 {
				t.Fatalf("gone %v, object %+v, stats %+v", gone, s.Lookup(id(1)), s.Stats())
			}
		}},
		{"a second writer gets room of its own; the first one's is kept until it goes", func(t *testing.T, s *Store) {
			s.Expect(id(1), submitter)
			o1, _ := s.Create(id(1), wire.FmtPython, 3*PageSize, nil, 0, w1)
			off1 := o1.Offset
			o2, err := s.Create(id(1), wire.FmtPython, 3*PageSize, nil, 0, w2)
			if err != nil {
				t.Fatal(err)
			}
			if o2.Offset == off1 {
				t.Fatal("the second writer got the first one's range")
			}
			if _, err := s.Seal(id(1), w1); err == nil {
				t.Fatal("the superseded writer sealed the object")
			}
			if _, err := s.Seal(id(1), w2); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Bytes != 6*PageSize {
				t.Fatalf("both ranges must be held while the first writer lives: %+v", st)
			}
			s.DropOwner(w1)
			if st := s.Stats(); st.Bytes != 3*PageSize || s.Lookup(id(1)).State != Sealed {
				t.Fatalf("after the first writer went: %+v", st)
			}
		}},
		{"the same writer cannot create twice", func(t *testing.T, s *Store) {
			s.Create(id(1), wire.FmtRaw, PageSize, nil, w1, w1)
			if _, err := s.Create(id(1), wire.FmtRaw, PageSize, nil, w1, w1); err == nil {
				t.Fatal("a second CREATE of an object on the connection writing it succeeded")
			}
		}},
		{"a retry answered inline supersedes a half-written attempt", func(t *testing.T, s *Store) {
			s.Expect(id(1), submitter)
			s.Create(id(1), wire.FmtPython, 3*PageSize, nil, 0, w1)
			o := s.PutInline(id(1), wire.FmtPython, []byte("small result"), nil, 0)
			if o == nil || o.Path != "" || string(o.Inline) != "small result" || o.Obj().Path != "" {
				t.Fatalf("the inline answer must be the object: %+v", o)
			}
			s.DropOwner(w1)
			if st := s.Stats(); st.Bytes != int64(len("small result")) {
				t.Fatalf("stats %+v", st)
			}
		}},
		{"a retry on another node supersedes a half-written attempt", func(t *testing.T, s *Store) {
			s.Expect(id(1), submitter)
			s.Create(id(1), wire.FmtPython, 3*PageSize, nil, 0, w1)
			if o := s.PutRemote(id(1), wire.FmtPython, 3*PageSize, nil, 0, "tcp:h:1"); o == nil || o.Local() {
				t.Fatalf("PUT_AT after a dead attempt: %+v", o)
			}
			s.DropOwner(w1)
			if st := s.Stats(); st.Bytes != 0 {
				t.Fatalf("stats %+v", st)
			}
		}},
		{"a task failed while its attempt writes", func(t *testing.T, s *Store) {
			s.Expect(id(1), submitter)
			s.Create(id(1), wire.FmtPython, 3*PageSize, nil, 0, w1)
			o := s.SetError(id(1), []byte("err"))
			if o == nil || o.Fmt != wire.FmtError || o.Path != "" {
				t.Fatalf("error object %+v", o)
			}
			if _, err := s.Seal(id(1), w1); err == nil {
				t.Fatal("the attempt sealed over the error")
			}
			s.DropOwner(w1)
			if st := s.Stats(); st.Bytes != 3 {
				t.Fatalf("stats %+v", st)
			}
		}},
		{"a member's copy written by a client that goes", func(t *testing.T, s *Store) {
			const headOwner = 1 << 61
			if _, err := s.CreateAny(id(1), wire.FmtRaw, 20*PageSize, headOwner, w1); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Spilled != 1 {
				t.Fatalf("an object larger than the arena spills: %+v", st)
			}
			if gone := s.DropOwner(w1); len(gone) != 1 || s.Lookup(id(1)) != nil {
				t.Fatalf("gone %v", gone)
			}
			if st := s.Stats(); st.Spilled != 0 || st.SpilledBytes != 0 {
				t.Fatalf("spill file kept: %+v", st)
			}
			if names, _ := s.spill.Names(); len(names) != 0 {
				t.Fatalf("spill directory holds %v", names)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, 16*PageSize)
			tc.run(t, s)
			check(t, s)
		})
	}
}

func writeAt(t *testing.T, o *Object, s string) {
	t.Helper()
	f, err := os.OpenFile(o.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), o.Offset); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, o *Object, n int) string {
	t.Helper()
	f, err := os.Open(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, o.Offset); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInlineObjectsCountAgainstTheBudget: small objects kept in the agent's memory share the
// arena's capacity with the stored ones; past it the least recently used objects spill.
func TestInlineObjectsCountAgainstTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name  string
		run   func(t *testing.T, s *Store)
		spill bool
	}{
		{"many small puts spill the oldest, and all stay readable", func(t *testing.T, s *Store) {
			for i := byte(0); i < 40; i++ {
				o := s.PutInline(id(i), wire.FmtRaw, bytes.Repeat([]byte{i}, int(PageSize)), nil, 1)
				if o.Fmt != wire.FmtRaw {
					t.Fatalf("put %d refused: %q", i, o.Inline)
				}
				check(t, s)
			}
			st := s.Stats()
			if st.Spilled < 40-16 || st.Bytes > 16*PageSize {
				t.Fatalf("40 pages of small objects in a 16-page store: %+v", st)
			}
			if o := s.Lookup(id(0)); o.Path == "" || !o.spilled {
				t.Fatal("the least recently used object is still in memory")
			}
			if o := s.Lookup(id(39)); o.Path != "" {
				t.Fatal("the newest object was spilled")
			}
			for i := byte(0); i < 40; i++ {
				o := s.Lookup(id(i))
				var got []byte
				if o.Path == "" {
					got = o.Inline
				} else {
					got, _ = os.ReadFile(o.Path)
				}
				if !bytes.Equal(got, bytes.Repeat([]byte{i}, int(PageSize))) {
					t.Fatalf("object %d reads wrong after spilling", i)
				}
			}
			for i := byte(0); i < 40; i++ {
				s.Decref(id(i), 1)
			}
			if st := s.Stats(); st.Objects != 0 || st.Bytes != 0 || st.Spilled != 0 || st.SpilledBytes != 0 {
				t.Fatalf("after the last references: %+v", st)
			}
		}, true},
		{"a stored object takes room from inline ones", func(t *testing.T, s *Store) {
			for i := byte(0); i < 12; i++ {
				s.PutInline(id(i), wire.FmtRaw, make([]byte, PageSize), nil, 1)
			}
			o, err := s.Create(id(100), wire.FmtRaw, 8*PageSize, nil, 1, 1)
			if err != nil || !o.inArena {
				t.Fatalf("create: %+v %v; want it in the arena once small objects spilled", o, err)
			}
			if st := s.Stats(); st.Spilled < 4 {
				t.Fatalf("%+v", st)
			}
		}, true},
		{"an inline put spills a stored object", func(t *testing.T, s *Store) {
			s.Create(id(100), wire.FmtRaw, 14*PageSize, nil, 1, 1)
			s.Seal(id(100), 1)
			s.PutInline(id(1), wire.FmtRaw, make([]byte, 3*PageSize), nil, 1)
			if o := s.Lookup(id(100)); o.inArena || s.Lookup(id(1)).Path != "" {
				t.Fatalf("the older stored object should have spilled for the new small one: %+v", o)
			}
		}, true},
		{"an object in use does not spill, and one whose spill fails stays where it was", func(t *testing.T, s *Store) {
			o, _ := s.Create(id(100), wire.FmtRaw, 8*PageSize, nil, 1, 1)
			s.Seal(id(100), 1)
			s.Use(o, 2)                    // a client maps it
			for i := byte(0); i < 9; i++ { // one page more than the budget has left
				s.PutInline(id(i), wire.FmtRaw, make([]byte, PageSize), nil, 1)
			}
			if !o.inArena || s.Stats().Spilled != 1 {
				t.Fatalf("the mapped object spilled, or not the oldest small one: %+v %+v", o, s.Stats())
			}
			check(t, s)
			os.RemoveAll(s.spillDir) // spills fail from now on
			got := s.PutInline(id(50), wire.FmtRaw, make([]byte, 2*PageSize), nil, 1)
			if got.Fmt != wire.FmtError || s.Lookup(id(1)).Path != "" {
				t.Fatalf("with the spill directory gone: %+v, oldest small object %+v", got, s.Lookup(id(1)))
			}
			s.Release(id(100), 2)
		}, true},
		{"with spilling off, what does not fit is a store_full error naming the flag", func(t *testing.T, s *Store) {
			for i := byte(0); i < 16; i++ {
				s.PutInline(id(i), wire.FmtRaw, make([]byte, PageSize), nil, 1)
			}
			o := s.PutInline(id(16), wire.FmtRaw, make([]byte, 1000), nil, 1)
			if o.Fmt != wire.FmtError {
				t.Fatalf("a put past the budget was kept: %+v", s.Stats())
			}
			var e map[string]string
			if err := msgpack.Unmarshal(o.Inline, &e); err != nil || e["kind"] != "store_full" ||
				!strings.Contains(e["msg"], "--object-store-memory") || !strings.Contains(e["msg"], "1000 B") {
				t.Fatalf("error object %v %v", e, err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, 16*PageSize)
			if !tc.spill {
				s = newStoreNoSpill(t, 16*PageSize)
			}
			tc.run(t, s)
			check(t, s)
		})
	}
}

func newStoreNoSpill(t *testing.T, capacity int64) *Store {
	t.Helper()
	s, err := New(hclog.NewNullLogger(), filepath.Join(t.TempDir(), "shm"), "", capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRoomIsReservedBeforeAnyoneWrites: the arena's pages and a spill file's blocks are
// reserved when CREATE is answered; a file system without room gives spilling or ErrFull,
// never a sparse range that a writer would fault on (SIGBUS).
func TestRoomIsReservedBeforeAnyoneWrites(t *testing.T) {
	enospc := &os.PathError{Op: "fallocate", Path: "x", Err: syscall.ENOSPC}
	for _, tc := range []struct {
		name      string
		arenaFull bool
		spillFull bool
		size      int64
		wantPath  string // "arena", "spill" or "" (ErrFull)
	}{
		{"room everywhere: the arena, reserved", false, false, 3 * PageSize, "arena"},
		{"the arena's tmpfs is full: a spill file, reserved", true, false, 3 * PageSize, "spill"},
		{"larger than the whole arena: ErrFull", false, false, 40 * PageSize, ""},
		{"tmpfs and spill disk full: ErrFull", true, true, 3 * PageSize, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, 16*PageSize)
			var reserved []string
			s.reserve = func(f *os.File, off, n int64) error {
				arena := f.Name() == s.ArenaPath()
				if (arena && tc.arenaFull) || (!arena && tc.spillFull) {
					return enospc
				}
				reserved = append(reserved, fmt.Sprintf("%s:%d+%d", filepath.Base(f.Name()), off, n))
				return fallocate(f, off, n)
			}
			o, err := s.Create(id(1), wire.FmtRaw, tc.size, nil, 1, 1)
			switch tc.wantPath {
			case "":
				if !errors.Is(err, ErrFull) {
					t.Fatalf("got %+v, %v; want ErrFull", o, err)
				}
				if tc.spillFull && (!strings.Contains(err.Error(), "--spill-dir") || !strings.Contains(err.Error(), "12.0 KiB")) {
					t.Fatalf("the error must name the size and the flags: %v", err)
				}
				if s.Lookup(id(1)) != nil || s.Stats().Bytes != 0 || s.Stats().Spilled != 0 {
					t.Fatalf("a refused create left %+v", s.Stats())
				}
				return
			case "arena":
				if err != nil || !o.inArena {
					t.Fatalf("%+v %v", o, err)
				}
			case "spill":
				if err != nil || !o.spilled {
					t.Fatalf("%+v %v", o, err)
				}
			}
			if len(reserved) != 1 {
				t.Fatalf("reserved %v, want one reservation covering the object", reserved)
			}
			// the file system really holds the blocks (fallocate, not a sparse file)
			var st syscall.Stat_t
			if err := syscall.Stat(o.Path, &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 < tc.size {
				t.Fatalf("%s holds %d bytes of blocks after the CREATE of %d", o.Path, st.Blocks*512, tc.size)
			}
			// a range reserved once is not reserved again
			s.Seal(id(1), 1)
			s.Decref(id(1), 1)
			s.Create(id(2), wire.FmtRaw, tc.size, nil, 1, 1)
			if tc.wantPath == "arena" && len(reserved) != 1 {
				t.Fatalf("the same range was reserved twice: %v", reserved)
			}
		})
	}
}

// TestArenaReservedInChunks: reservations cover whole chunks and never past the arena's end.
func TestArenaReservedInChunks(t *testing.T) {
	s := newStore(t, 3*backChunk+5*PageSize)
	var got [][2]int64
	s.reserve = func(f *os.File, off, n int64) error { got = append(got, [2]int64{off, n}); return nil }
	for _, r := range [][2]int64{{0, PageSize}, {backChunk - PageSize, 2 * PageSize}, {3 * backChunk, 5 * PageSize}, {0, 3*backChunk + 5*PageSize}} {
		if err := s.reserveArena(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := [][2]int64{{0, backChunk}, {backChunk, backChunk}, {3 * backChunk, 5 * PageSize}, {2 * backChunk, backChunk}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reserved %v, want %v", got, want)
	}
}

// BenchmarkSmallPutsPastTheBudget: a put of a 1 KiB object into a full store of 1 MiB that
// holds 100,000 objects (most of them spilled): the least recently used one spills per put.
func BenchmarkSmallPutsPastTheBudget(b *testing.B) {
	dir := b.TempDir()
	s, err := New(hclog.NewNullLogger(), filepath.Join(dir, "shm"), filepath.Join(dir, "spill"), 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 1024)
	put := func(i int) {
		var oid wire.ID
		oid[0], oid[1], oid[2], oid[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		s.PutInline(oid, wire.FmtRaw, data, nil, 1)
	}
	for i := 0; i < 100_000; i++ {
		put(i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		put(100_000 + i)
	}
}
