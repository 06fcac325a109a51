package client

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/wire"
)

// Option sets an option of a task or an actor. Options may be given to Task.Options, or mixed
// into the arguments of Submit, Task.Remote, NewActor and GetActor: an argument that is an
// Option is applied, not passed.
type Option interface {
	apply(*options) error
}

type scope int

const (
	forTask scope = 1 << iota
	forActor
	forLookup
)

type options struct {
	scope     scope
	res       map[string]float64
	retries   *int
	restarts  int
	name      string
	namespace string
	pg        *PlacementGroup // InBundle
	bundle    int
}

type option struct {
	name  string
	scope scope
	set   func(*options)
}

func (o option) apply(to *options) error {
	if o.scope&to.scope == 0 {
		what := map[scope]string{forTask: "tasks", forActor: "actor creation", forLookup: "GetActor"}[to.scope]
		return fmt.Errorf("option %s does not apply to %s", o.name, what)
	}
	o.set(to)
	return nil
}

func resource(opt, key string, n float64) Option {
	return option{name: opt, scope: forTask | forActor, set: func(o *options) {
		if o.res == nil {
			o.res = map[string]float64{}
		}
		o.res[key] = n
	}}
}

// CPUs sets the CPUs a task (default 1) or an actor (default 0) holds while it runs.
func CPUs(n float64) Option { return resource("CPUs", "CPU", n) }

// GPUs sets the GPUs a task or an actor holds (default 0).
func GPUs(n float64) Option { return resource("GPUs", "GPU", n) }

// Memory sets the memory, in bytes, a task or an actor holds (default 0).
func Memory(bytes int64) Option { return resource("Memory", "memory", float64(bytes)) }

// Resource sets the amount of a custom resource a task or an actor holds.
func Resource(name string, amount float64) Option { return resource("Resource", name, amount) }

// Retries sets how many times a task is rerun when its worker dies (default 3; -1 forever).
// An error returned by the function is not retried.
func Retries(n int) Option {
	return option{name: "Retries", scope: forTask, set: func(o *options) { o.retries = &n }}
}

// MaxRestarts sets how many times an actor is restarted when its process dies (default 0;
// -1 forever).
func MaxRestarts(n int) Option {
	return option{name: "MaxRestarts", scope: forActor, set: func(o *options) { o.restarts = n }}
}

// Name names an actor, so that GetActor finds it; the name must be unique in its namespace
// among live actors.
func Name(name string) Option {
	return option{name: "Name", scope: forActor, set: func(o *options) { o.name = name }}
}

// Namespace sets the namespace of an actor's name (default "").
func Namespace(ns string) Option {
	return option{name: "Namespace", scope: forActor | forLookup, set: func(o *options) { o.namespace = ns }}
}

// splitOptions separates Options from arguments and applies them over base.
func splitOptions(base options, args []any, sc scope) (options, []any, error) {
	o := base
	o.scope = sc
	if base.res != nil {
		o.res = make(map[string]float64, len(base.res))
		for k, v := range base.res {
			o.res[k] = v
		}
	}
	var rest []any
	for _, a := range args {
		if opt, ok := a.(Option); ok {
			if err := opt.apply(&o); err != nil {
				return o, nil, err
			}
			continue
		}
		rest = append(rest, a)
	}
	for k, v := range o.res {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return o, nil, fmt.Errorf("resource %s: %g is not a valid amount; use a finite number >= 0", k, v)
		}
	}
	return o, rest, nil
}

// resources returns the task spec's res: the options' amounts over the default CPUs, zeros
// left out.
func (o options) resources(defaultCPU float64) map[string]float64 {
	res := map[string]float64{}
	if defaultCPU > 0 {
		res["CPU"] = defaultCPU
	}
	for k, v := range o.res {
		res[k] = v
	}
	for k, v := range res {
		if v == 0 {
			delete(res, k)
		}
	}
	return res
}

// Task is a registered function with options, ready to be submitted with Remote.
type Task struct {
	c    *Client
	name string
	opts []Option
}

// Task returns the function registered as name, to be given options and submitted.
func (c *Client) Task(name string) *Task { return &Task{c: c, name: name} }

// Options returns a copy of t with opts added.
func (t *Task) Options(opts ...Option) *Task {
	return &Task{c: t.c, name: t.name, opts: append(append([]Option(nil), t.opts...), opts...)}
}

// Remote submits the task with args and returns a reference to its result at once. It fails
// when the function is not registered in this program, takes another number of arguments,
// or an argument cannot be encoded.
func (t *Task) Remote(args ...any) (ObjectRef, error) {
	all := make([]any, 0, len(t.opts)+len(args))
	for _, o := range t.opts {
		all = append(all, o)
	}
	return t.c.Submit(t.name, append(all, args...)...)
}

// Submit runs the function registered as name with args on a worker, and returns a
// reference to its result at once. ObjectRef arguments are resolved: the function receives
// the values they name. Option arguments set options. See Task.Remote for the errors.
func (c *Client) Submit(name string, args ...any) (ObjectRef, error) {
	fn := lookupFunc(name)
	if fn == nil {
		return ObjectRef{}, fmt.Errorf("submit %s: no function is registered under this name; call client.Register(%q, fn) before client.Init", name, name)
	}
	o, args, err := splitOptions(options{}, args, forTask)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("submit %s: %w", name, err)
	}
	if err := fn.sig.checkArgs(name, len(args)); err != nil {
		return ObjectRef{}, fmt.Errorf("submit: %w", err)
	}
	retries := 3
	if o.retries != nil {
		retries = *o.retries
	}
	spec := &wire.Task{Kind: wire.KindTask, Fn: fn.id, Name: name, Res: o.resources(1), Retries: retries}
	o.placeIn(spec)
	refs, err := c.submit(spec, args, false)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("submit %s: %w", name, err)
	}
	return refs, nil
}

// submit fills in the common fields of spec, sends it and returns the reference to its
// (single) return value. With wait it waits for the agent's OK, to report a refusal.
func (c *Client) submit(spec *wire.Task, args []any, wait bool) (ObjectRef, error) {
	data, deps, refs, err := encodeArgs(args)
	if err != nil {
		return ObjectRef{}, err
	}
	spec.Task = c.newID(0)
	spec.Lang = "go"
	spec.Nret = 1
	if spec.PG.IsZero() {
		spec.Bundle = -1
	}
	spec.Deps, spec.Refs = deps, refs
	if spec.Deps == nil {
		spec.Deps = []wire.ID{}
	}
	if spec.Refs == nil {
		spec.Refs = []wire.ID{}
	}
	if len(data) >= wire.InlineMax {
		spec.ArgObj = c.newID(tailPut)
		if _, err := c.store(spec.ArgObj, data, refs); err != nil {
			return ObjectRef{}, fmt.Errorf("store %d bytes of arguments: %w", len(data), err)
		}
	} else {
		spec.Args = data
	}
	ret := spec.Task.WithIndex(1)
	ref := c.hold(ret, nil)
	if wait {
		err = c.request(context.Background(), wire.TSubmit, spec, nil)
	} else {
		err = c.send(wire.TSubmit, spec)
	}
	if err != nil {
		c.mu.Lock()
		delete(c.slots, ret)
		c.mu.Unlock()
	}
	if !spec.ArgObj.IsZero() {
		// The task pins its argument object from SUBMIT on (messages are handled in order).
		c.send(wire.TDecref, &wire.IDs{IDs: []wire.ID{spec.ArgObj}})
	}
	if err != nil {
		return ObjectRef{}, err
	}
	return ref, nil
}

// Actor is a handle to an actor: a worker that holds the state an actor type's constructor
// made and runs its methods, one at a time, in the order each caller calls them.
type Actor struct {
	c     *Client
	id    wire.ID
	typ   string
	name  string
	ready ObjectRef // the constructor's result; zero for a handle from GetActor
}

// actorMeta is the SDK's opaque handle metadata (the spec's meta), read back by GetActor.
type actorMeta struct {
	Lang string `msgpack:"lang"`
	Type string `msgpack:"type"`
}

// Type returns the actor's registered type name.
func (a *Actor) Type() string { return a.typ }

// Name returns the actor's name ("" for an unnamed actor).
func (a *Actor) Name() string { return a.name }

// ID returns the actor id in hex.
func (a *Actor) ID() string { return a.id.String() }

// NewActor creates an actor of the type registered as typ, passing args to its constructor,
// and returns its handle at once; calls made before the constructor ran wait for it. Options
// among args (Name, Namespace, MaxRestarts, CPUs ...) are applied. With a Name, NewActor
// waits for the agent to accept the name and fails when it is taken.
func (c *Client) NewActor(typ string, args ...any) (*Actor, error) {
	at := lookupActor(typ)
	if at == nil {
		return nil, fmt.Errorf("create actor %s: no actor type is registered under this name; call client.RegisterActor(%q, constructor) before client.Init", typ, typ)
	}
	o, args, err := splitOptions(options{}, args, forActor)
	if err != nil {
		return nil, fmt.Errorf("create actor %s: %w", typ, err)
	}
	if err := at.sig.checkArgs("the constructor of "+typ, len(args)); err != nil {
		return nil, fmt.Errorf("create actor: %w", err)
	}
	meta, err := msgpack.Marshal(&actorMeta{Lang: "go", Type: typ})
	if err != nil {
		return nil, fmt.Errorf("[internal error] encode actor metadata: %w", err)
	}
	aid := c.newID(tailActor)
	spec := &wire.Task{Kind: wire.KindActorCreate, Fn: at.id, Name: typ, Res: o.resources(0), Actor: aid,
		Restarts: o.restarts, AName: o.name, NS: o.namespace, Meta: meta}
	o.placeIn(spec)
	ready, err := c.submit(spec, args, o.name != "")
	if err != nil {
		if o.name != "" {
			return nil, fmt.Errorf("create actor %s named %q in namespace %q: %w", typ, o.name, o.namespace, err)
		}
		return nil, fmt.Errorf("create actor %s: %w", typ, err)
	}
	return &Actor{c: c, id: aid, typ: typ, name: o.name, ready: ready}, nil
}

// Ready waits until the actor's constructor ran; it returns its error, or one wrapping
// ErrActorDied. For a handle from GetActor it returns nil at once.
func (a *Actor) Ready(ctx context.Context) error {
	if a.ready.IsZero() {
		return nil
	}
	return a.c.Get(ctx, a.ready, nil)
}

// Call calls the actor's method with args and returns a reference to its result at once.
// Calls of one caller run in the order they were made. It fails when the actor's type has no
// such exported method (when the type is registered in this program) or the number of
// arguments is wrong.
func (a *Actor) Call(method string, args ...any) (ObjectRef, error) {
	name := a.typ + "." + method
	for _, x := range args {
		if _, ok := x.(Option); ok {
			return ObjectRef{}, fmt.Errorf("call %s: options do not apply to actor method calls", name)
		}
	}
	if at := lookupActor(a.typ); at != nil {
		sig, err := methodSignature(at.typ, method)
		if err != nil {
			return ObjectRef{}, fmt.Errorf("call %s: %w", name, err)
		}
		if err := sig.checkArgs(name, len(args)); err != nil {
			return ObjectRef{}, fmt.Errorf("call: %w", err)
		}
	}
	spec := &wire.Task{Kind: wire.KindActorMethod, Name: name, Res: map[string]float64{}, Actor: a.id, Method: method}
	ref, err := a.c.submit(spec, args, false)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("call %s: %w", name, err)
	}
	return ref, nil
}

// GetActor returns a handle to the live actor named name (in the namespace of a Namespace
// option, default ""). An unknown name is an error wrapping ErrNotFound.
func (c *Client) GetActor(name string, opts ...Option) (*Actor, error) {
	if name == "" {
		return nil, errors.New("get actor: the name is empty")
	}
	args := make([]any, len(opts))
	for i, o := range opts {
		args[i] = o
	}
	o, _, err := splitOptions(options{}, args, forLookup)
	if err != nil {
		return nil, fmt.Errorf("get actor %q: %w", name, err)
	}
	var r wire.GetActorReply
	if err := c.request(context.Background(), wire.TGetActor, &wire.GetActor{Name: name, NS: o.namespace}, &r); err != nil {
		return nil, fmt.Errorf("get actor %q in namespace %q: %w", name, o.namespace, err)
	}
	var m actorMeta
	if err := msgpack.Unmarshal(r.Meta, &m); err != nil || m.Lang != "go" {
		return nil, fmt.Errorf("get actor %q: it is not a Go actor (a Python actor, say); the Go SDK calls Go actors only", name)
	}
	return &Actor{c: c, id: r.Actor, typ: m.Type, name: name}, nil
}

// Kill kills the actor's process and keeps it from restarting; its pending and later calls
// fail with an error wrapping ErrActorDied.
func (c *Client) Kill(a *Actor) error {
	if err := c.request(context.Background(), wire.TKill, &wire.Kill{Actor: a.id, NoRestart: true}, nil); err != nil {
		return fmt.Errorf("kill actor %s (%s): %w", a.typ, a.id, err)
	}
	return nil
}

// ClusterResources returns the cluster's total resources (CPU, GPU, memory, custom).
func (c *Client) ClusterResources() (map[string]float64, error) {
	r, err := c.info()
	if err != nil {
		return nil, err
	}
	return r.Total, nil
}

// AvailableResources returns the resources not held by tasks and actors now.
func (c *Client) AvailableResources() (map[string]float64, error) {
	r, err := c.info()
	if err != nil {
		return nil, err
	}
	return r.Available, nil
}

func (c *Client) info() (*wire.InfoReply, error) {
	var r wire.InfoReply
	if err := c.request(context.Background(), wire.TInfo, map[string]any{}, &r); err != nil {
		return nil, fmt.Errorf("ask the agent for cluster information: %w", err)
	}
	return &r, nil
}
