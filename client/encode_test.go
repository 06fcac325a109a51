package client

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/wire"
)

func testID(b byte) wire.ID {
	var id wire.ID
	for i := range id {
		id[i] = b
	}
	return id
}

type point struct {
	X, Y int
}

type holder struct {
	Name string
	Ref  ObjectRef
	Refs []ObjectRef
}

func TestEncodeArgs(t *testing.T) {
	r1, r2, r3 := ObjectRef{id: testID(1)}, ObjectRef{id: testID(2)}, ObjectRef{id: testID(3)}
	tests := []struct {
		name     string
		args     []any
		wantDeps []wire.ID
		wantRefs []wire.ID
		wantDep  map[int]int // argument index -> dep index
	}{
		{name: "plain values", args: []any{1, "two", []byte{3}, point{4, 5}, nil}},
		{name: "no arguments", args: nil},
		{name: "top-level refs become deps", args: []any{r1, 7, &r2},
			wantDeps: []wire.ID{r1.id, r2.id}, wantDep: map[int]int{0: 0, 2: 1}},
		{name: "nested refs go to refs", args: []any{holder{Name: "h", Ref: r3, Refs: []ObjectRef{r3, r1}}},
			wantRefs: []wire.ID{r3.id, r1.id}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, deps, refs, err := encodeArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(deps, tc.wantDeps) {
				t.Errorf("deps = %v, want %v", deps, tc.wantDeps)
			}
			if !reflect.DeepEqual(refs, tc.wantRefs) {
				t.Errorf("refs = %v, want %v", refs, tc.wantRefs)
			}
			raws, err := splitArray(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(raws) != len(tc.args) {
				t.Fatalf("%d elements, want %d", len(raws), len(tc.args))
			}
			for i, raw := range raws {
				k, isDep := depIndex(raw)
				want, wantDep := tc.wantDep[i]
				if isDep != wantDep || k != want {
					t.Errorf("argument %d: depIndex = %d, %v; want %d, %v", i, k, isDep, want, wantDep)
				}
			}
		})
	}
}

func TestEncodeArgsZeroRef(t *testing.T) {
	if _, _, _, err := encodeArgs([]any{ObjectRef{}}); err == nil {
		t.Fatal("a zero ObjectRef argument was accepted")
	}
}

func TestObjectRefRoundTrip(t *testing.T) {
	in := holder{Name: "h", Ref: ObjectRef{id: testID(9)}, Refs: []ObjectRef{{id: testID(8)}, {}}}
	data, refs, err := encodeValue(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []wire.ID{testID(9), testID(8)}; !reflect.DeepEqual(refs, want) {
		t.Errorf("refs = %v, want %v", refs, want)
	}
	var out holder
	if err := msgpack.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
	// A decoded ref is borrowed: Release must not panic or send anything.
	out.Ref.Release()
}

func TestDepIndex(t *testing.T) {
	var b buffer
	e := newEncoder(&b)
	if err := encodeDep(e, 70000); err != nil {
		t.Fatal(err)
	}
	if k, ok := depIndex(b.Bytes()); !ok || k != 70000 {
		t.Errorf("depIndex = %d, %v; want 70000, true", k, ok)
	}
	for _, v := range []any{int32(5), "abcd", []byte{0x53, 0, 0, 0}} {
		raw, _ := msgpack.Marshal(v)
		if _, ok := depIndex(raw); ok {
			t.Errorf("%#v taken for a dependency placeholder", v)
		}
	}
}

func TestErrorObjects(t *testing.T) {
	tests := []struct {
		kind     string
		sentinel error
	}{
		{KindTaskError, nil},
		{KindWorkerDied, ErrWorkerDied},
		{KindActorDied, ErrActorDied},
		{KindObjectLost, ErrObjectLost},
		{KindStoreFull, ErrStoreFull},
		{KindInfeasible, ErrInfeasible},
		{KindCancelled, ErrCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			err := decodeObject(testID(1), wire.FmtError, errorData(tc.kind, "the message"), nil)
			var te *TaskError
			if !errors.As(err, &te) || te.Kind != tc.kind || te.Msg != "the message" {
				t.Fatalf("decodeObject = %#v, want a TaskError of kind %s", err, tc.kind)
			}
			if !strings.Contains(err.Error(), "the message") {
				t.Errorf("message %q lacks the remote message", err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.sentinel)
			}
			if tc.sentinel == nil && errors.Is(err, ErrActorDied) {
				t.Errorf("a task_error matches ErrActorDied")
			}
		})
	}
	// What the agent and the Python SDK write: a map that may hold more keys.
	py, _ := msgpack.Marshal(map[string]any{"kind": "task_error", "msg": "ValueError: x", "py": []byte{1, 2}})
	var te *TaskError
	if err := decodeObject(testID(1), wire.FmtError, py, nil); !errors.As(err, &te) || te.Msg != "ValueError: x" {
		t.Errorf("python error object decoded as %v", err)
	}
}

func TestDecodeObjectFormats(t *testing.T) {
	id := testID(4)
	packed, _ := msgpack.Marshal(point{1, 2})
	var p point
	if err := decodeObject(id, wire.FmtMsgpack, packed, &p); err != nil || p != (point{1, 2}) {
		t.Errorf("msgpack: %v, %+v", err, p)
	}
	if err := decodeObject(id, wire.FmtMsgpack, packed, nil); err != nil {
		t.Errorf("msgpack into nil: %v", err)
	}
	var b []byte
	if err := decodeObject(id, wire.FmtRaw, []byte("raw"), &b); err != nil || string(b) != "raw" {
		t.Errorf("raw into []byte: %v, %q", err, b)
	}
	var s string
	if err := decodeObject(id, wire.FmtRaw, []byte("raw"), &s); err != nil || s != "raw" {
		t.Errorf("raw into string: %v, %q", err, s)
	}
	if err := decodeObject(id, wire.FmtRaw, []byte("raw"), &p); err == nil {
		t.Error("raw bytes decoded into a struct")
	}
	if err := decodeObject(id, wire.FmtPython, []byte("SHB1"), &p); err == nil || !strings.Contains(err.Error(), "Python") {
		t.Errorf("python object: %v", err)
	}
	if err := decodeObject(id, 42, nil, &p); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestAsMsgpack(t *testing.T) {
	raw, err := asMsgpack(testID(1), wire.FmtRaw, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := msgpack.Unmarshal(raw, &s); err != nil || s != "hello" {
		t.Errorf("raw dep as string: %v, %q", err, s)
	}
	if _, err := asMsgpack(testID(1), wire.FmtError, errorData(KindActorDied, "gone")); !errors.Is(err, ErrActorDied) {
		t.Errorf("error dep: %v", err)
	}
}

func TestSignatures(t *testing.T) {
	tests := []struct {
		name    string
		fn      any
		ok      bool
		ctx     bool
		nin     int
		val     bool
		err     bool
		nargsOK []int
		nargsNo []int
	}{
		{name: "value and error", fn: func(int) (int, error) { return 0, nil }, ok: true, nin: 1, val: true, err: true, nargsOK: []int{1}, nargsNo: []int{0, 2}},
		{name: "value only", fn: func(string, int) string { return "" }, ok: true, nin: 2, val: true, nargsOK: []int{2}},
		{name: "error only", fn: func() error { return nil }, ok: true, err: true, nargsOK: []int{0}, nargsNo: []int{1}},
		{name: "nothing", fn: func(int) {}, ok: true, nin: 1, nargsOK: []int{1}},
		{name: "context first", fn: func(context.Context, int) int { return 0 }, ok: true, ctx: true, nin: 1, val: true, nargsOK: []int{1}, nargsNo: []int{2}},
		{name: "variadic", fn: func(string, ...int) int { return 0 }, ok: true, nin: 2, val: true, nargsOK: []int{1, 2, 5}, nargsNo: []int{0}},
		{name: "second result not error", fn: func() (int, int) { return 0, 0 }},
		{name: "three results", fn: func() (int, int, error) { return 0, 0, nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSignature(reflect.TypeOf(tc.fn))
			if (err == nil) != tc.ok {
				t.Fatalf("newSignature error = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			if s.ctx != tc.ctx || len(s.in) != tc.nin || s.val != tc.val || s.err != tc.err {
				t.Errorf("signature = %+v", s)
			}
			for _, n := range tc.nargsOK {
				if err := s.checkArgs("f", n); err != nil {
					t.Errorf("%d arguments: %v", n, err)
				}
			}
			for _, n := range tc.nargsNo {
				if err := s.checkArgs("f", n); err == nil {
					t.Errorf("%d arguments accepted", n)
				}
			}
		})
	}
}

type testActor struct{ n int }

func (a *testActor) Add(k int) (int, error) { a.n += k; return a.n, nil }
func (a *testActor) private()               {}

func TestRegister(t *testing.T) {
	Register("unit.double", func(x int) int { return 2 * x })
	RegisterActor("unit.Acc", func(n int) *testActor { return &testActor{n: n} })
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("duplicate", func() { Register("unit.double", func() {}) })
	mustPanic("not a function", func() { Register("unit.x", 42) })
	mustPanic("nil function", func() { Register("unit.y", (func())(nil)) })
	mustPanic("empty name", func() { Register("", func() {}) })
	mustPanic("constructor without value", func() { RegisterActor("unit.z", func() error { return nil }) })

	at := lookupActor("unit.Acc")
	if at == nil {
		t.Fatal("actor type not found")
	}
	if s, err := methodSignature(at.typ, "Add"); err != nil || len(s.in) != 1 || !s.val || !s.err {
		t.Errorf("methodSignature(Add) = %+v, %v", s, err)
	}
	for _, m := range []string{"private", "Missing"} {
		if _, err := methodSignature(at.typ, m); err == nil {
			t.Errorf("method %s accepted", m)
		}
	}
	if fnID("func", "a") == fnID("actor", "a") || fnID("func", "a") != fnID("func", "a") {
		t.Error("function ids are not stable and distinct")
	}
}

func TestOptions(t *testing.T) {
	o, rest, err := splitOptions(options{}, []any{1, CPUs(2), "x", Resource("disk", 1), Retries(5)}, forTask)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rest, []any{1, "x"}) {
		t.Errorf("arguments = %v", rest)
	}
	if got := o.resources(1); !reflect.DeepEqual(got, map[string]float64{"CPU": 2, "disk": 1}) {
		t.Errorf("resources = %v", got)
	}
	if o.retries == nil || *o.retries != 5 {
		t.Errorf("retries = %v", o.retries)
	}
	if got := (options{}).resources(0); len(got) != 0 {
		t.Errorf("actor default resources = %v, want none", got)
	}
	if _, _, err := splitOptions(options{}, []any{Name("a")}, forTask); err == nil {
		t.Error("Name accepted for a task")
	}
	if _, _, err := splitOptions(options{}, []any{Retries(1)}, forActor); err == nil {
		t.Error("Retries accepted for an actor")
	}
	if _, _, err := splitOptions(options{}, []any{CPUs(-1)}, forTask); err == nil {
		t.Error("negative CPUs accepted")
	}
	o, _, err = splitOptions(options{}, []any{Name("c"), Namespace("ns"), MaxRestarts(-1), CPUs(0)}, forActor)
	if err != nil || o.name != "c" || o.namespace != "ns" || o.restarts != -1 || len(o.resources(0)) != 0 {
		t.Errorf("actor options = %+v, %v", o, err)
	}
}

// TestWorkerArgs checks how a worker rebuilds arguments: dependency placeholders take the
// dependencies' values (MessagePack as is, raw bytes as bin), and the arguments may come from
// an argument object, the last dependency.
func TestWorkerArgs(t *testing.T) {
	sig, err := newSignature(reflect.TypeOf(func(context.Context, int, string, []byte, point) {}))
	if err != nil {
		t.Fatal(err)
	}
	dep1, dep2 := ObjectRef{id: testID(1)}, ObjectRef{id: testID(2)}
	data, deps, _, err := encodeArgs([]any{dep1, "s", dep2, point{3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	seven, _ := msgpack.Marshal(7)
	depv := []wire.Obj{{ID: deps[0], Fmt: wire.FmtMsgpack, Data: seven}, {ID: deps[1], Fmt: wire.FmtRaw, Data: []byte("raw")}}
	check := func(name string, task *wire.Task) {
		t.Helper()
		c := &Client{}
		in, err := c.args(context.Background(), task, sig)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(in) != 5 || in[1].Int() != 7 || in[2].String() != "s" || string(in[3].Bytes()) != "raw" || in[4].Interface() != (point{3, 4}) {
			t.Errorf("%s: arguments = %v", name, in)
		}
	}
	check("inline", &wire.Task{Name: "f", Args: data, Deps: deps, Depv: depv})
	argobj := testID(3)
	check("argument object", &wire.Task{Name: "f", ArgObj: argobj, Deps: deps,
		Depv: append(append([]wire.Obj{}, depv...), wire.Obj{ID: argobj, Fmt: wire.FmtMsgpack, Data: data})})

	bad := &wire.Task{Name: "f", Args: data, Deps: deps,
		Depv: []wire.Obj{depv[0], {ID: deps[1], Fmt: wire.FmtError, Data: errorData(KindWorkerDied, "x")}}}
	if _, err := (&Client{}).args(context.Background(), bad, sig); !errors.Is(err, ErrWorkerDied) {
		t.Errorf("an error dependency gave %v", err)
	}
	short, _, _, _ := encodeArgs([]any{1})
	if _, err := (&Client{}).args(context.Background(), &wire.Task{Name: "f", Args: short}, sig); err == nil {
		t.Error("too few arguments accepted")
	}
	wrong, _, _, _ := encodeArgs([]any{"not an int", "s", []byte{}, point{}})
	if _, err := (&Client{}).args(context.Background(), &wire.Task{Name: "f", Args: wrong}, sig); err == nil || !strings.Contains(err.Error(), "argument 1") {
		t.Errorf("a string for an int gave %v", err)
	}
}

// TestMapRange writes and reads through shared mappings at an offset that is not page aligned
// and one that is.
func TestMapRange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "arena")
	if err := os.WriteFile(p, make([]byte, 3*os.Getpagesize()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{100, int64(os.Getpagesize())} {
		want := bytes.Repeat([]byte{byte(off)}, 5000)
		if err := writeAt(p, off, want); err != nil {
			t.Fatal(err)
		}
		b, m, err := mapRange(p, off, int64(len(want)), false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("offset %d: read back different bytes", off)
		}
		if err := unix.Munmap(m); err != nil {
			t.Fatal(err)
		}
	}
}
