package wire

// Member-local scheduling (docs/architecture.md "Member-local scheduling"): a worker on a
// member node submits a plain task to its own node's agent, which runs it on a worker the head
// node's agent leased to it, and tells the head its result.
const (
	// TLocalSubmit (worker -> its member's store socket, answered): run this task here.
	// Body: Task, as SUBMIT's. Answer: OK with LocalSubmitReply (Local false: spill it, send
	// it to the head node's agent instead).
	TLocalSubmit Type = 24
	// TLeaseNext (leased worker -> its member's store socket, answered): here is the answer of
	// the last task you gave me (Done, none on the first call); give me the next. Answer: EXEC
	// with the next Task, or OK with LeaseEnd (the lease is over: DONE the lease task).
	TLeaseNext Type = 25
	// TExpect (worker -> head node's agent, one-way): these return values of tasks I submitted
	// to my node's agent will come from node Node; I hold a reference to each, as after
	// SUBMIT.
	TExpect Type = 26
	// TLeaseRequest (member -> head node's agent, one-way): lease N more workers of job Job on
	// this node, each with the resources of one CPU; or (Drop) no longer lease up to Drop of
	// those asked for and not yet given.
	TLeaseRequest Type = 27
	// TLocalDone (member -> head node's agent, one-way): return values of tasks run on this
	// node, inline or in this node's store.
	TLocalDone Type = 28
)

// KindLease is the kind of a lease task: the head node's agent runs it on a worker of the
// member node that asked for it, and the worker then takes its tasks from that node's agent
// until the lease ends (TLeaseNext).
const KindLease = 3

// LocalSubmitReply answers TLocalSubmit.
type LocalSubmitReply struct {
	Local bool   `msgpack:"local"`
	Why   string `msgpack:"why,omitempty"` // why it was not taken (for logs)
}

// LeaseNext is the body of TLeaseNext: Lease is the lease task's id (from its EXEC), Done
// the answer of the last task (nil on the first call).
type LeaseNext struct {
	Lease ID    `msgpack:"lease"`
	Done  *Done `msgpack:"done,omitempty"`
}

// LeaseEnd answers TLeaseNext when the lease is over.
type LeaseEnd struct {
	End bool `msgpack:"end"`
}

// Expect is the body of TExpect.
type Expect struct {
	IDs  []ID   `msgpack:"ids"`
	Node string `msgpack:"node"`
}

// LeaseRequest is the body of TLeaseRequest.
type LeaseRequest struct {
	Job  string `msgpack:"job"`
	N    int    `msgpack:"n"`
	Drop int    `msgpack:"drop,omitempty"`
}

// LocalRet is one return value in LocalDone: inline (Data), or Size bytes in the sending
// node's store (Stored).
type LocalRet struct {
	ID     ID     `msgpack:"id"`
	Fmt    int    `msgpack:"fmt"`
	Data   []byte `msgpack:"data,omitempty"`
	Refs   []ID   `msgpack:"refs,omitempty"`
	Stored bool   `msgpack:"stored,omitempty"`
	Size   int64  `msgpack:"size,omitempty"`
	// Owner is the worker that submitted the task: what it has not EXPECTed when it goes
	// is dropped.
	Owner string `msgpack:"owner,omitempty"`
}

// LocalDone is the body of TLocalDone: the return values, and the tasks that ended (for the
// head's records: the job report, the state API, the timeline).
type LocalDone struct {
	Rets  []LocalRet  `msgpack:"rets"`
	Tasks []LocalTask `msgpack:"tasks"`
}

// LocalTask is a task a member ran: its attempt, and why it failed ("" if it did not).
type LocalTask struct {
	Task    ID     `msgpack:"task"`
	Name    string `msgpack:"name"`
	Job     string `msgpack:"job"`
	Worker  string `msgpack:"worker"`
	Attempt int    `msgpack:"attempt"`
	Failed  string `msgpack:"failed,omitempty"`
}

const (
	// TLocalGet (worker -> its member's store socket, answered): the values of tasks this
	// worker submitted there (LocalGet -> LocalGetReply), waiting up to TimeoutMS for them.
	TLocalGet Type = 29
	// TBlock (worker -> head node's agent, one-way): this worker waits (On) or no longer waits
	// for tasks its node's agent runs; while it waits, its task's resources are lent out, as
	// during a GET the head answers.
	TBlock Type = 36
	// TLocalCancel (worker -> its member's store socket, answered): cancel a task this worker
	// submitted there (LocalCancel -> LocalCancelReply).
	TLocalCancel Type = 37
	// TLocalForget (worker -> its member's store socket, one-way): this worker holds no more
	// references to these values (IDs): its node's agent need not keep them for it.
	TLocalForget Type = 38
	// TLeaseFailed (head node's agent -> member, one-way): a lease it asked for failed before
	// it got a worker (its workers cannot start there, say): LeaseFailed.
	TLeaseFailed Type = 39
	// TLocalSpill (member -> head node's agent, one-way): tasks that its workers submitted to
	// it and that it had queued, handed back because another node has free CPUs and they
	// would wait here longer (LocalSpill). The head runs them as if their submitter had sent
	// SUBMIT; their values no longer come in LOCAL_DONE.
	TLocalSpill Type = 49
)

// LocalSpill is the body of TLocalSpill: queued tasks of job Job, each as its submitter sent
// it (the code of a function in Fnb the first time it goes to the head), and Owners[i] the
// worker that submitted Tasks[i].
type LocalSpill struct {
	Job    string   `msgpack:"job"`
	Tasks  []Task   `msgpack:"tasks"`
	Owners []string `msgpack:"owners"`
}

// LeaseFailed is the body of TLeaseFailed: Kind and Msg are the error the lease failed with.
type LeaseFailed struct {
	Job  string `msgpack:"job"`
	Kind string `msgpack:"kind"`
	Msg  string `msgpack:"msg"`
}

// LocalGet is the body of TLocalGet.
type LocalGet struct {
	IDs       []ID  `msgpack:"ids"`
	TimeoutMS int64 `msgpack:"timeout_ms"`
}

// LocalGetReply answers TLocalGet: Objs[i] answers IDs[i]; a zero ID in it means "not here:
// ask the head node's agent" (a value not run here, or no longer kept), Pending lists the
// indices still running or queued when the timeout came.
type LocalGetReply struct {
	Objs    []Obj `msgpack:"objs"`
	Pending []int `msgpack:"pending,omitempty"`
}

// Block is the body of TBlock.
type Block struct {
	On bool `msgpack:"on"`
}

// LocalCancel is the body of TLocalCancel: as CANCEL's (Force kills the worker running it).
type LocalCancel struct {
	Task      ID   `msgpack:"task"`
	Force     bool `msgpack:"force"`
	Recursive bool `msgpack:"recursive"`
}

// LocalCancelReply answers TLocalCancel: Known is false when the task is not this node's
// (the worker then sends CANCEL to the head node's agent).
type LocalCancelReply struct {
	Known bool `msgpack:"known"`
}
