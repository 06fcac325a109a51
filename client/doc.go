// Package client is shoal's Go SDK: a Go program registers functions and actor types by name,
// connects to its node agent, and submits tasks, creates actors, and puts and gets objects.
// The program's own binary is its worker: the agent starts workers for a Go driver by exec'ing
// the driver's executable with SHOAL_WORKER_ID set, and Init in such a process serves tasks
// instead of returning.
//
//	func main() {
//		client.Register("square", func(x int) (int, error) { return x * x, nil })
//		client.RegisterActor("Counter", NewCounter) // func(start int) (*Counter, error)
//		c, err := client.Init() // a worker never returns from here
//		if err != nil { ... }
//		defer c.Close()
//		ref, err := c.Submit("square", 7)
//		var out int
//		err = c.Get(ctx, ref, &out)
//	}
//
// # Contract
//
//   - Register and RegisterActor must run before Init, in every process, in the same way: the
//     worker finds a function by the name the driver submitted. Call Init early in main; what
//     main does before Init also runs in every worker. They panic on a programmer error (an
//     empty or duplicate name, a value that is not a function of a supported shape).
//   - A function takes any number of MessagePack-encodable arguments, optionally preceded by a
//     context.Context (whose FromContext gives the worker's Client, for tasks that submit
//     tasks), and returns (T, error), T, error or nothing. Actor methods follow the same rules
//     and are found by name on the value the constructor returned, so they must be exported.
//   - A Client is safe for concurrent use. Submit, Call and Put return at once; Get, GetAll and
//     Wait block until the values are ready, ctx is done or the connection is lost.
//   - Errors from remote code come back as *TaskError (errors.As), with the remote message;
//     its kind also matches the sentinels ErrWorkerDied, ErrActorDied, ErrObjectLost,
//     ErrStoreFull, ErrInfeasible and ErrCancelled (errors.Is). A ctx that ends first gives an
//     error wrapping ctx.Err(). A lost connection gives an error wrapping ErrDisconnected.
//   - References: the agent counts references per connection. Each ObjectRef that Submit,
//     Call or Put returns holds one; ObjectRef.Release gives it back (and drops the value this
//     client caches for it), and Close drops all of them. There are no finalizers: a program
//     that makes many objects releases what it no longer needs.
//
// # Encoding
//
// Values are MessagePack (object format 2, wire.FmtMsgpack), encoded and decoded with
// github.com/vmihailenco/msgpack/v5: structs travel as maps keyed by field name (or the
// `msgpack` tag). A task's arguments travel as one MessagePack array in the task spec's args,
// or, when that array is 100 KiB (wire.InlineMax) or more, as an object named by argobj.
//
// Two MessagePack extension types carry references:
//
//   - Dependency placeholder, ext type 0x53 ('S'), 4 bytes: a big-endian uint32 index into the
//     task spec's deps. An ObjectRef given as a top-level argument is replaced by this
//     placeholder and its id goes into deps; the agent runs the task only when the object is
//     ready, and the worker substitutes the object's value (its MessagePack bytes, or raw bytes
//     of format 0 as a MessagePack bin) for the placeholder before decoding the argument into
//     the parameter's type. So a parameter of type int receives the int that a ref points to.
//   - Object reference, ext type 0x52 ('R'), 16 bytes: the object id. An ObjectRef nested in a
//     value (a field, a slice element) travels as this; its id is listed in the spec's or the
//     object's refs, so the agent pins it while the task or the containing object lives. A
//     decoded nested ObjectRef is borrowed: Get works on it, Release does nothing. Decode
//     such values into ObjectRef-typed fields; decoding ext 0x52 into an interface{} fails.
//
// Error objects (format 3, wire.FmtError) are the MessagePack map {kind, msg}; a Go function's
// error becomes {kind:"task_error", msg:"NAME: ERROR"}, and a panic becomes a task_error whose
// message holds the panic value and the worker's stack. Objects of format 0 (raw bytes) decode
// into *[]byte, *string or *any; Python objects (format 1) cannot be read from Go.
//
// Objects under 100 KiB travel inline (PUT, DONE); larger ones are written into the node's
// arena (CREATE, a shared mmap of the returned file range, SEAL) and read by mapping that range
// read-only, decoding, unmapping and sending RELEASE.
//
// # Not yet
//
// Cancellation and passing actor handles inside arguments (pass the actor's name and use
// GetActor) are not part of this SDK yet. Placement groups are: NewPlacementGroup reserves the
// bundles (waiting until all are placed), and the InBundle option puts a task or an actor in
// one of them.
package client
