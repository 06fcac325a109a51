package wire

// Messages of task features beyond a plain call (docs/ray-tasks.md): streamed generator
// returns and the cancellation of a call that runs on an actor.
const (
	// TGenItem (worker→agent) reports one value a generator task yielded (GenItem); the
	// agent stores it and pushes it to the task's submitter in READY.
	TGenItem Type = 34
	// TTaskCancel (agent→worker) tells a worker that the actor call it runs was cancelled
	// (TaskCancel): an async call's asyncio task is cancelled, a streaming generator stops
	// at its next yield; a sync call finishes and its result becomes TaskCancelledError.
	TTaskCancel Type = 35
)

// Generator modes of a task (Task.Gen).
const (
	GenNone      = 0 // a plain call (a generator function with a static num_returns is one)
	GenStreaming = 1 // num_returns="streaming": each yield is reported as it is made
	GenDynamic   = 2 // num_returns="dynamic": one return value holding the refs of the yields
)

// GenItem is one yielded value of a streaming generator task: Index counts from 0, in order;
// Ret's id is the task's return id of index Index+2 (index 1 is the end-of-stream object).
type GenItem struct {
	Task  ID  `msgpack:"task"`
	Index int `msgpack:"index"`
	Ret   Ret `msgpack:"ret"`
}

// TaskCancel names the cancelled call (its task id).
type TaskCancel struct {
	Task ID `msgpack:"task"`
}

// LabelReq is one requirement of a label selector: the node's label Key must (Op "in") or
// must not (Op "!in") have one of Values.
type LabelReq struct {
	Key    string   `msgpack:"key"`
	Op     string   `msgpack:"op"`
	Values []string `msgpack:"values"`
}
