package client

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/wire"
)

// Worker loop:
//
//	Init (SHOAL_WORKER_ID set) ──> connect as worker ──> EXEC ──> run ──> DONE ──┐
//	                                                      ^                        │
//	                                                      └────────────────────────┘
//	                               connection closed ──> process exits 0
//
// One task runs at a time. An actor creation makes this worker that actor's for the rest of
// its life; its method calls arrive as EXEC in order and run in that order.

type ctxKey struct{}

// FromContext returns the Client of the worker running the task that ctx was given to, so
// that a task can submit tasks and get their results. A function receives such a ctx when
// its first parameter is a context.Context.
func FromContext(ctx context.Context) (*Client, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Client)
	return c, ok
}

// workerState is what a worker keeps between tasks: the actor it became, if any.
type workerState struct {
	actor   reflect.Value
	typ     *actorType
	methods map[string]*signature
}

// serve runs tasks until the connection is gone.
func (c *Client) serve() {
	st := &workerState{methods: map[string]*signature{}}
	for {
		t, ok := c.nextExec()
		if !ok {
			c.log.Debug("connection closed; worker exits", "reason", c.failure())
			return
		}
		c.execute(st, t)
	}
}

func (c *Client) nextExec() (*wire.Task, bool) {
	for {
		c.mu.Lock()
		if len(c.execq) > 0 {
			t := c.execq[0]
			c.execq[0] = nil
			c.execq = c.execq[1:]
			c.mu.Unlock()
			return t, true
		}
		c.mu.Unlock()
		select {
		case <-c.execSig:
		case <-c.dead:
			return nil, false
		}
	}
}

// execute runs t and answers DONE with its return value, or with an error object for each
// return value when it failed.
func (c *Client) execute(st *workerState, t *wire.Task) {
	nret := t.Nret
	if nret < 1 {
		nret = 1
	}
	ids := make([]wire.ID, nret)
	for i := range ids {
		ids[i] = t.Task.WithIndex(uint32(i + 1))
	}
	var err error
	var val any
	if nret != 1 {
		err = fmt.Errorf("it was submitted with %d return values; a Go function returns one", t.Nret)
	} else {
		val, err = c.run(st, t)
	}
	var ret wire.Ret
	if err == nil {
		ret, err = c.result(ids[0], val)
	}
	if err == nil {
		c.send(wire.TDone, &wire.Done{Task: t.Task, Rets: []wire.Ret{ret}})
		return
	}
	data := errorData(KindTaskError, t.Name+": "+err.Error())
	var te *TaskError
	if errors.As(err, &te) && err == error(te) && te.Kind != KindTaskError {
		// an argument's error object, passed on as it is (the agent does so before EXEC too)
		data = errorData(te.Kind, te.Msg)
	}
	rets := make([]wire.Ret, nret)
	for i, id := range ids {
		rets[i] = wire.Ret{ID: id, Fmt: wire.FmtError, Data: data, Refs: []wire.ID{}}
	}
	c.log.Debug("task failed", "task", t.Name, "error", err)
	c.send(wire.TDone, &wire.Done{Task: t.Task, Rets: rets, Err: true})
}

// result encodes a return value: inline when small, written into the store otherwise.
func (c *Client) result(id wire.ID, v any) (wire.Ret, error) {
	data, refs, err := encodeValue(v)
	if err != nil {
		return wire.Ret{}, fmt.Errorf("encode the result: %w", err)
	}
	if refs == nil {
		refs = []wire.ID{}
	}
	if len(data) < wire.InlineMax {
		return wire.Ret{ID: id, Fmt: wire.FmtMsgpack, Data: data, Refs: refs}, nil
	}
	if err := c.create(id, data, refs); err != nil {
		return wire.Ret{}, fmt.Errorf("store the %d-byte result: %w", len(data), err)
	}
	return wire.Ret{ID: id, Fmt: wire.FmtMsgpack, Refs: refs, Stored: true}, nil
}

// run calls what t names; a panic becomes an error holding the panic value and the stack.
func (c *Client) run(st *workerState, t *wire.Task) (val any, err error) {
	defer func() {
		if r := recover(); r != nil {
			val, err = nil, fmt.Errorf("panic: %v\n\n%s", r, debug.Stack())
		}
	}()
	ctx := context.WithValue(context.Background(), ctxKey{}, c)
	switch t.Kind {
	case wire.KindTask:
		fn := lookupFunc(t.Name)
		if fn == nil {
			return nil, fmt.Errorf("no function is registered under this name in the worker; register it before client.Init, in every run of the program")
		}
		in, err := c.args(ctx, t, fn.sig)
		if err != nil {
			return nil, err
		}
		return fn.sig.results(fn.fn.Call(in))
	case wire.KindActorCreate:
		at := lookupActor(t.Name)
		if at == nil {
			return nil, fmt.Errorf("no actor type is registered under this name in the worker; register it before client.Init, in every run of the program")
		}
		if st.actor.IsValid() {
			return nil, fmt.Errorf("[internal error] this worker already holds an actor of type %s", st.typ.name)
		}
		in, err := c.args(ctx, t, at.sig)
		if err != nil {
			return nil, err
		}
		v, err := at.sig.results(at.ctor.Call(in))
		if err != nil {
			return nil, err
		}
		rv := reflect.ValueOf(v)
		if !rv.IsValid() || (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) && rv.IsNil() {
			return nil, fmt.Errorf("the constructor returned a nil %s and no error", at.typ)
		}
		st.actor, st.typ = rv, at
		return nil, nil
	case wire.KindActorMethod:
		if !st.actor.IsValid() {
			return nil, fmt.Errorf("[internal error] a method call reached a worker that holds no actor")
		}
		m := st.actor.MethodByName(t.Method)
		if !m.IsValid() {
			return nil, fmt.Errorf("%s has no exported method %q", st.actor.Type(), t.Method)
		}
		sig := st.methods[t.Method]
		if sig == nil {
			var err error
			if sig, err = newSignature(m.Type()); err != nil {
				return nil, err
			}
			st.methods[t.Method] = sig
		}
		in, err := c.args(ctx, t, sig)
		if err != nil {
			return nil, err
		}
		return sig.results(m.Call(in))
	}
	return nil, fmt.Errorf("unknown task kind %d", t.Kind)
}

// args decodes t's arguments for sig: the array in args (or in the argument object, the last
// of depv), with each dependency placeholder replaced by the dependency's value. Stored
// dependencies are mapped while decoding and their uses given back afterwards.
func (c *Client) args(ctx context.Context, t *wire.Task, sig *signature) ([]reflect.Value, error) {
	depv := t.Depv
	data := make([][]byte, len(depv))
	var maps [][]byte
	var uses []wire.ID
	defer func() {
		for _, m := range maps {
			unix.Munmap(m)
		}
		if len(uses) > 0 {
			c.send(wire.TRelease, &wire.IDs{IDs: uses})
		}
	}()
	for i, o := range depv {
		if o.Loc != "" {
			lo, release, err := c.localize(ctx, o)
			if err != nil {
				return nil, fmt.Errorf("read argument object %s: %w", o.ID, err)
			}
			defer release()
			if lo.Path == "" {
				data[i] = lo.Data
				continue
			}
			o = lo
		} else if o.Path == "" {
			data[i] = o.Data
			continue
		} else {
			uses = append(uses, o.ID)
		}
		if o.Size == 0 {
			continue
		}
		b, m, err := mapRange(o.Path, o.Offset, o.Size, false)
		if err != nil {
			return nil, fmt.Errorf("read argument object %s: %w", o.ID, err)
		}
		maps = append(maps, m)
		data[i] = b
	}
	argData := t.Args
	if !t.ArgObj.IsZero() {
		if len(depv) == 0 || depv[len(depv)-1].ID != t.ArgObj {
			return nil, fmt.Errorf("[internal error] the arguments object %s is not the last of the %d dependency objects", t.ArgObj, len(depv))
		}
		last := depv[len(depv)-1]
		if last.Fmt != wire.FmtMsgpack {
			return nil, decodeObject(last.ID, last.Fmt, data[len(depv)-1], nil)
		}
		argData = data[len(depv)-1]
		depv, data = depv[:len(depv)-1], data[:len(depv)-1]
	}
	raws, err := splitArray(argData)
	if err != nil {
		return nil, err
	}
	if err := sig.checkArgs("it", len(raws)); err != nil {
		return nil, err
	}
	in := make([]reflect.Value, 0, len(raws)+1)
	if sig.ctx {
		in = append(in, reflect.ValueOf(ctx))
	}
	for i, raw := range raws {
		if k, ok := depIndex(raw); ok {
			if k >= len(depv) {
				return nil, fmt.Errorf("argument %d refers to dependency %d of %d", i+1, k, len(depv))
			}
			if raw, err = asMsgpack(depv[k].ID, depv[k].Fmt, data[k]); err != nil {
				return nil, err
			}
		}
		typ := sig.argType(i)
		v, err := decodeArg(raw, typ)
		if err != nil {
			return nil, fmt.Errorf("decode argument %d into %s: %w", i+1, typ, err)
		}
		in = append(in, v)
	}
	return in, nil
}
