package wire

// TStateList asks the head node's agent for one table of the state API (ray.util.state's
// list_*, `shoal list`; docs/ray-introspection.md): the body is StateList, the OK reply a
// StateListReply whose Data is JSON {"rows": [...], "total": N, "columns": [...]}. A member
// agent answers ERROR{code:"no_head"}; an unknown kind, column or predicate is ERROR
// {code:"bad_request"} naming what is accepted.
const TStateList Type = 47

// The tables a STATE_LIST may name.
const (
	StateActors          = "actors"
	StateTasks           = "tasks"
	StateNodes           = "nodes"
	StateObjects         = "objects"
	StatePlacementGroups = "placement_groups"
	StateWorkers         = "workers"
	StateJobs            = "jobs"
)

// StateList is the body of STATE_LIST. Filters are [column, predicate, value] triples,
// predicate "=" or "!=", compared as strings (case-insensitive), as Ray's state API does.
// Limit 0 means no limit.
type StateList struct {
	Kind    string     `msgpack:"kind"`
	Filters [][]string `msgpack:"filters,omitempty"`
	Limit   int        `msgpack:"limit,omitempty"`
}

// StateListReply answers STATE_LIST.
type StateListReply struct {
	Data []byte `msgpack:"data"`
}

// TContext asks the agent who the connection is, for get_runtime_context(): no body; the OK
// reply is a ContextReply. A driver learns its job and worker id this way (a worker has them
// in its environment too).
const TContext Type = 48

// ContextReply answers CONTEXT: the connection's job, the node it runs on (a driver's is the
// agent's node; a worker's the node it was started on) and its worker id (a driver's is
// "driver-" and its job id). Empty fields: the connection has none (a CLI).
type ContextReply struct {
	Job    string `msgpack:"job"`
	Node   string `msgpack:"node"`
	Worker string `msgpack:"worker"`
}
