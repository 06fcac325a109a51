package sched

// Event is something that happened, fed to Core.Step.
type Event interface{ event() }

// Events.
type (
	// Tick advances the core's clock to Now (ms since any fixed origin; never backwards).
	Tick struct{ Now int64 }
	// NodeJoined adds a node with its total resources and GPU indices. A node lost before may
	// join again under its name: it gets a new NodeID.
	NodeJoined struct {
		Name  string
		Total Resources
		GPUs  []int
		// MaxWorkers caps its worker processes (0: Config.MaxWorkersPerNode, or 4x its CPUs).
		MaxWorkers int
		// Labels are the node's labels for label selectors (strategy.go).
		Labels map[string]string
	}
	// NodeLost marks a node dead (its connection closed, or its heartbeats stopped): its
	// workers are gone, their tasks retried and their actors restarted elsewhere.
	NodeLost struct {
		Node NodeID
		Why  string
	}
	// JobStarted registers a driver's job; Driver is the node it runs on.
	JobStarted struct {
		Job    JobID
		Driver NodeID
		// Prestart task workers on the driver's node, ready before the first task (a Python
		// driver's imports take a while); at most the node's pool limit.
		Prestart int
	}
	// JobEnded ends a job: its queued tasks fail, its workers are killed.
	JobEnded struct{ Job JobID }
	// Submitted is a task (or an actor's creation) whose dependencies are ready.
	Submitted struct {
		Task    TaskID
		Job     JobID
		Kind    Kind
		Name    string
		Res     Resources
		Group   GroupID // 0: none
		Bundle  int     // -1: any bundle of Group
		Retries int     // tasks: retries after a worker died (-1: forever); actors: restarts
		Parent  TaskID  // the task that submitted it (0: a driver), for recursive cancel
		Origin  NodeID  // the node of the submitter (NoNode: unknown)
		Args    []ObjectID
		// Policy is its scheduling strategy outside placement groups (nil: DEFAULT).
		Policy *Policy
		// Env is the key (a content hash) of the task's runtime environment, "" for none:
		// tasks and actors of different keys never share a worker process (poolKey).
		Env string
	}
	// WorkerConnected: a started worker connected and is ready for work.
	WorkerConnected struct{ Worker WorkerID }
	// WorkerStartFailed: a worker could not be started, or exited before it connected.
	// Stderr is the end of what it wrote, for the error a task gets.
	WorkerStartFailed struct {
		Worker WorkerID
		Why    string
		Stderr string
	}
	// WorkerExited: a connected worker's process exited or its connection closed.
	WorkerExited struct {
		Worker WorkerID
		Why    string
		// OOM: the memory monitor stopped it for using more than its task's memory=
		// request (memory.go); Why says what it used.
		OOM bool
	}
	// TaskFinished: the worker running Task answered it. For an actor's creation, Failed says
	// the constructor raised (the actor is then dead); otherwise the actor lives.
	TaskFinished struct {
		Task   TaskID
		Failed bool
		// Retry: the task raised an exception its retry_exceptions names; it runs again
		// while retries are left (CanRetry), else it ends as it answered.
		Retry bool
		// WorkerExits: the worker leaves after this task (max_calls); it is not reused.
		WorkerExits bool
	}
	// WorkerBlocked and WorkerUnblocked: a worker waits in get/wait inside a task, so its
	// task's resources are lent out until it returns.
	WorkerBlocked   struct{ Worker WorkerID }
	WorkerUnblocked struct{ Worker WorkerID }
	// Cancel a task as Ray's ray.cancel does: a queued task never runs; a running one is
	// interrupted (Force: its worker is killed); Recursive also cancels the tasks it submitted.
	Cancel struct {
		Task      TaskID
		Force     bool
		Recursive bool
	}
	// KillActor kills an actor's process; NoRestart keeps it dead.
	KillActor struct {
		Task      TaskID // the actor's creation task
		NoRestart bool
	}
	// GroupCreate asks to place a placement group's bundles.
	GroupCreate struct {
		Group    GroupID
		Job      JobID
		Strategy Strategy
		Bundles  []Resources
	}
	// GroupRemove removes a placement group; its actors die, its running tasks keep their
	// resources (given back to the node when they end).
	GroupRemove struct{ Group GroupID }
	// ObjectAt records a copy of an object of Size bytes on Node; ObjectGone forgets it.
	ObjectAt struct {
		Object ObjectID
		Node   NodeID
		Size   int64
	}
	ObjectGone struct{ Object ObjectID }
)

func (Tick) event()              {}
func (NodeJoined) event()        {}
func (NodeLost) event()          {}
func (JobStarted) event()        {}
func (JobEnded) event()          {}
func (Submitted) event()         {}
func (WorkerConnected) event()   {}
func (WorkerStartFailed) event() {}
func (WorkerExited) event()      {}
func (TaskFinished) event()      {}
func (WorkerBlocked) event()     {}
func (WorkerUnblocked) event()   {}
func (Cancel) event()            {}
func (KillActor) event()         {}
func (GroupCreate) event()       {}
func (GroupRemove) event()       {}
func (ObjectAt) event()          {}
func (ObjectGone) event()        {}

// Action is something the caller must do, returned by Core.Ready in order.
type Action interface{ action() }

// Error kinds that Fail carries (the SDKs map them to exceptions).
const (
	ErrKindInfeasible   = "infeasible"
	ErrKindWorkerDied   = "worker_died"
	ErrKindStartFailed  = "worker_start_failed"
	ErrKindCancelled    = "cancelled"
	ErrKindActorDied    = "actor_died"
	ErrKindTooManyProcs = "too_many_workers"
	ErrKindJobEnded     = "job_ended"
)

// Actions.
type (
	// StartWorker: start worker process Worker for Job on Node, owning GPUs.
	StartWorker struct {
		Worker WorkerID
		Job    JobID
		Node   NodeID
		GPUs   []int
		Env    string // the runtime environment key of the tasks it will run ("" for none)
	}
	// Run: send Task to Worker (on Node, with GPUs; its resources came from Group's Bundle,
	// or the node's when Bundle is -1). Attempt counts from 0.
	Run struct {
		Task    TaskID
		Worker  WorkerID
		Node    NodeID
		GPUs    []int
		Group   GroupID
		Bundle  int
		Attempt int
	}
	// Fail: seal Task's return values with an error of Kind; the core has forgotten it.
	Fail struct {
		Task TaskID
		Kind string
		Msg  string
	}
	// Retry: Task's worker died and it will run again (for logs; a Run follows later).
	Retry struct {
		Task    TaskID
		Attempt int
		Why     string
	}
	// KillWorker: kill a worker's process (the core already counts it gone).
	KillWorker struct {
		Worker WorkerID
		Why    string
	}
	// Interrupt: raise TaskCancelledError in Task, running on Worker.
	Interrupt struct {
		Task   TaskID
		Worker WorkerID
	}
	// ActorRestarting: the actor's worker died and it will be created again; ActorDied: it
	// is dead for good (its creation task is forgotten).
	ActorRestarting struct {
		Task TaskID
		Why  string
	}
	ActorDied struct {
		Task TaskID
		Why  string
	}
	// GroupPlaced: the group's bundles were placed, bundle i on Nodes[i]. GroupFailed: it
	// never can be (Kind infeasible) or it was removed before it was placed (cancelled).
	GroupPlaced struct {
		Group GroupID
		Nodes []NodeID
	}
	GroupFailed struct {
		Group GroupID
		Kind  string
		Msg   string
	}
)

func (StartWorker) action()     {}
func (Run) action()             {}
func (Fail) action()            {}
func (Retry) action()           {}
func (KillWorker) action()      {}
func (Interrupt) action()       {}
func (ActorRestarting) action() {}
func (ActorDied) action()       {}
func (GroupPlaced) action()     {}
func (GroupFailed) action()     {}
