package client

import (
	"context"
	"crypto/sha256"
	"fmt"
	"reflect"
	"sync"

	"github.com/shoal-hpc/shoal/wire"
)

// The registry maps names to functions and actor constructors. It is process-wide on purpose:
// the worker is the same binary as the driver and finds what to run by the name the driver
// submitted, the way http.HandleFunc registers before ListenAndServe.
var registry = struct {
	sync.RWMutex
	fns    map[string]*function
	actors map[string]*actorType
}{fns: map[string]*function{}, actors: map[string]*actorType{}}

var (
	errorType   = reflect.TypeOf((*error)(nil)).Elem()
	contextType = reflect.TypeOf((*context.Context)(nil)).Elem()
)

// signature describes a callable: an optional leading context.Context, the argument types,
// and which of (value, error) it returns.
type signature struct {
	ctx      bool
	in       []reflect.Type // arguments after the context; for a variadic one the last is a slice
	variadic bool
	val      bool
	err      bool
}

// newSignature checks t, a func type without receiver, against the supported shapes.
func newSignature(t reflect.Type) (*signature, error) {
	if t.Kind() != reflect.Func {
		return nil, fmt.Errorf("%s is not a function", t)
	}
	s := &signature{variadic: t.IsVariadic()}
	for i := 0; i < t.NumIn(); i++ {
		if i == 0 && t.In(0) == contextType {
			s.ctx = true
			continue
		}
		s.in = append(s.in, t.In(i))
	}
	switch t.NumOut() {
	case 0:
	case 1:
		if t.Out(0) == errorType {
			s.err = true
		} else {
			s.val = true
		}
	case 2:
		if t.Out(1) != errorType {
			return nil, fmt.Errorf("%s returns two values but the second is not error; return (T, error), T, error or nothing", t)
		}
		s.val, s.err = true, true
	default:
		return nil, fmt.Errorf("%s returns %d values; return (T, error), T, error or nothing (put several values in a struct)", t, t.NumOut())
	}
	return s, nil
}

// checkArgs reports whether n arguments fit s.
func (s *signature) checkArgs(name string, n int) error {
	if s.variadic {
		if n < len(s.in)-1 {
			return fmt.Errorf("%s takes at least %d arguments, got %d", name, len(s.in)-1, n)
		}
		return nil
	}
	if n != len(s.in) {
		return fmt.Errorf("%s takes %d arguments, got %d", name, len(s.in), n)
	}
	return nil
}

// argType is the type that argument i decodes into.
func (s *signature) argType(i int) reflect.Type {
	if s.variadic && i >= len(s.in)-1 {
		return s.in[len(s.in)-1].Elem()
	}
	return s.in[i]
}

// results splits what a call returned into its value and its error.
func (s *signature) results(out []reflect.Value) (any, error) {
	var v any
	if s.val {
		v = out[0].Interface()
	}
	if s.err {
		if e := out[len(out)-1]; !e.IsNil() {
			return nil, e.Interface().(error)
		}
	}
	return v, nil
}

type function struct {
	name string
	id   wire.ID
	fn   reflect.Value
	sig  *signature
}

type actorType struct {
	name string
	id   wire.ID
	ctor reflect.Value
	sig  *signature
	typ  reflect.Type // what the constructor returns; methods are looked up on it
}

// fnID derives the 16-byte function id of the task spec from a name, so that the driver and
// every worker agree on it without sending code.
func fnID(kind, name string) wire.ID {
	sum := sha256.Sum256([]byte("shoal/go/" + kind + "/" + name))
	var id wire.ID
	copy(id[:], sum[:16])
	return id
}

// Register makes fn callable as a task named name. fn takes any number of MessagePack-
// encodable arguments, optionally preceded by a context.Context, and returns (T, error), T,
// error or nothing. Register must be called before Init in every process of the program (in
// main or an init function); it panics when name is empty or taken or fn has another shape.
func Register(name string, fn any) {
	if name == "" {
		panic("client.Register: empty function name")
	}
	v := reflect.ValueOf(fn)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		panic(fmt.Sprintf("client.Register(%q): want a non-nil function, got %T", name, fn))
	}
	sig, err := newSignature(v.Type())
	if err != nil {
		panic(fmt.Sprintf("client.Register(%q): %v", name, err))
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.fns[name] != nil {
		panic(fmt.Sprintf("client.Register(%q): a function is already registered under this name", name))
	}
	registry.fns[name] = &function{name: name, id: fnID("func", name), fn: v, sig: sig}
}

// RegisterActor makes ctor the constructor of the actor type name. ctor has the shape of a
// registered function and returns the actor's state (usually a pointer) and optionally an
// error; the state's exported methods, of the same shapes, are what Actor.Call calls by name.
// Like Register it must run before Init in every process and panics on misuse.
func RegisterActor(name string, ctor any) {
	if name == "" {
		panic("client.RegisterActor: empty actor type name")
	}
	v := reflect.ValueOf(ctor)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		panic(fmt.Sprintf("client.RegisterActor(%q): want a non-nil constructor function, got %T", name, ctor))
	}
	sig, err := newSignature(v.Type())
	if err != nil {
		panic(fmt.Sprintf("client.RegisterActor(%q): %v", name, err))
	}
	if !sig.val {
		panic(fmt.Sprintf("client.RegisterActor(%q): the constructor %s returns no actor value; return (*T, error) or *T", name, v.Type()))
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.actors[name] != nil {
		panic(fmt.Sprintf("client.RegisterActor(%q): an actor type is already registered under this name", name))
	}
	registry.actors[name] = &actorType{name: name, id: fnID("actor", name), ctor: v, sig: sig, typ: v.Type().Out(0)}
}

func lookupFunc(name string) *function {
	registry.RLock()
	defer registry.RUnlock()
	return registry.fns[name]
}

func lookupActor(name string) *actorType {
	registry.RLock()
	defer registry.RUnlock()
	return registry.actors[name]
}

// methodSignature returns the signature of typ's exported method name.
func methodSignature(typ reflect.Type, name string) (*signature, error) {
	m, ok := typ.MethodByName(name)
	if !ok || !m.IsExported() {
		return nil, fmt.Errorf("%s has no exported method %q", typ, name)
	}
	// m.Type has the receiver first (for interface types it does not).
	t := m.Type
	if typ.Kind() != reflect.Interface {
		in := make([]reflect.Type, 0, t.NumIn()-1)
		for i := 1; i < t.NumIn(); i++ {
			in = append(in, t.In(i))
		}
		out := make([]reflect.Type, t.NumOut())
		for i := range out {
			out[i] = t.Out(i)
		}
		t = reflect.FuncOf(in, out, t.IsVariadic())
	}
	sig, err := newSignature(t)
	if err != nil {
		return nil, fmt.Errorf("method %s.%s: %w", typ, name, err)
	}
	return sig, nil
}
