package client

import (
	"errors"
	"fmt"
)

// Sentinels matched by errors.Is against the errors this package returns.
var (
	// ErrWorkerDied: the worker running a task died and no retries were left.
	ErrWorkerDied = errors.New("worker died")
	// ErrActorDied: the actor is dead (killed, crashed, its constructor failed, or its job ended).
	ErrActorDied = errors.New("actor died")
	// ErrObjectLost: the object was freed before it was read.
	ErrObjectLost = errors.New("object lost")
	// ErrStoreFull: the object is larger than the node's object store.
	ErrStoreFull = errors.New("object store full")
	// ErrInfeasible: the task asks for more resources than the cluster has.
	ErrInfeasible = errors.New("task infeasible")
	// ErrCancelled: the task was cancelled.
	ErrCancelled = errors.New("task cancelled")
	// ErrNotFound: no live actor has the name given to GetActor.
	ErrNotFound = errors.New("not found")
	// ErrDisconnected: the connection to the agent was lost.
	ErrDisconnected = errors.New("disconnected from the shoal agent")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("shoal client closed")
)

// Error object kinds (the kind field of a format-3 object).
const (
	KindTaskError  = "task_error"
	KindWorkerDied = "worker_died"
	// KindStartFailed: the task's workers could not start (errors.Is matches ErrWorkerDied).
	KindStartFailed = "worker_start_failed"
	KindActorDied   = "actor_died"
	KindObjectLost  = "object_lost"
	// KindObjectFreed: every reference to the object was dropped (or its writer exited)
	// before the get; errors.Is matches ErrObjectLost, as Ray's ObjectFreedError is an
	// ObjectLostError.
	KindObjectFreed = "object_freed"
	KindStoreFull   = "store_full"
	KindInfeasible  = "infeasible"
	KindCancelled   = "cancelled"
)

// TaskError is an error object read from the cluster: the remote function failed (Kind
// "task_error", Msg holds its error), or the system could not produce the value (the other
// kinds, which errors.Is matches against the package's sentinels).
type TaskError struct {
	Kind string
	Msg  string
}

var kindPrefix = map[string]string{
	KindTaskError:   "remote task failed",
	KindWorkerDied:  "worker died",
	KindStartFailed: "worker could not start",
	KindActorDied:   "actor died",
	KindObjectLost:  "object lost",
	KindObjectFreed: "object freed",
	KindStoreFull:   "object store full",
	KindInfeasible:  "task is infeasible",
	KindCancelled:   "task cancelled",
}

func (e *TaskError) Error() string {
	p := kindPrefix[e.Kind]
	if p == "" {
		p = "remote error (" + e.Kind + ")"
	}
	return p + ": " + e.Msg
}

// Is matches the sentinel of e's kind.
func (e *TaskError) Is(target error) bool {
	switch e.Kind {
	case KindWorkerDied, KindStartFailed:
		return target == ErrWorkerDied
	case KindActorDied:
		return target == ErrActorDied
	case KindObjectLost, KindObjectFreed:
		return target == ErrObjectLost
	case KindStoreFull:
		return target == ErrStoreFull
	case KindInfeasible:
		return target == ErrInfeasible
	case KindCancelled:
		return target == ErrCancelled
	}
	return false
}

// AgentError is an ERROR answer of the agent to a request.
type AgentError struct {
	Code string
	Msg  string
}

func (e *AgentError) Error() string { return fmt.Sprintf("agent answered %s: %s", e.Code, e.Msg) }

// Is matches ErrNotFound and ErrStoreFull by the error's code.
func (e *AgentError) Is(target error) bool {
	switch e.Code {
	case "not_found":
		return target == ErrNotFound
	case "store_full":
		return target == ErrStoreFull
	}
	return false
}
