package wire

// Observability messages (docs/protocol.md "Observability"): the CLI and the SDKs ask the head
// node's agent for what its recorder holds, and member agents report their node's figures.
const (
	// TObserve (client -> head node's agent) asks for a recording: the answer is OK with an
	// ObserveReply whose Data is the JSON document What names.
	TObserve Type = 46
	// TLog (member agent -> head node's agent) carries lines its workers wrote.
	TLog Type = 44
	// TCollStats (a collective rank's KV connection -> head node's agent, no answer) counts the
	// collective operations and bytes of a group's rank since its last report.
	TCollStats Type = 45
)

// HeartbeatMS is the longest period of a member's HEARTBEAT, which carries its NodeStats: at
// least once a second, also where the head checks no liveness or allows a longer period.
const HeartbeatMS = 1000

// What an OBSERVE asks for.
const (
	ObserveDashboard = "dashboard" // {"url": ..., "token": ...}
	ObserveTimeline  = "timeline"  // Chrome trace events
	ObserveReport    = "report"    // the end-of-job report so far
	// ObserveLogs asks for workers' lines after Since that match Job, Task, Actor (id prefix
	// or name), Node and Worker: {"lines": [...], "next": seq}.
	ObserveLogs = "logs"
	// ObserveDriver, on a driver's own connection, registers its job: LogToDriver says whether
	// the driver prints its workers' lines itself (polling ObserveLogs); either way the agent no
	// longer echoes them. The answer is {"job": id}.
	ObserveDriver = "driver"
)

// Observe is the body of OBSERVE.
type Observe struct {
	What        string `msgpack:"what"`
	Job         string `msgpack:"job,omitempty"`
	Task        string `msgpack:"task,omitempty"`
	Actor       string `msgpack:"actor,omitempty"`
	Node        string `msgpack:"node,omitempty"`
	Worker      string `msgpack:"worker,omitempty"`
	Since       uint64 `msgpack:"since,omitempty"`
	Max         int    `msgpack:"max,omitempty"`
	LogToDriver bool   `msgpack:"log_to_driver,omitempty"`
}

// LogLine is one line a worker wrote (LOG).
type LogLine struct {
	TimeNS int64  `msgpack:"t"`
	Job    string `msgpack:"job"`
	Worker string `msgpack:"worker"`
	PID    int    `msgpack:"pid"`
	Stream string `msgpack:"stream"`
	Task   string `msgpack:"task"`
	Actor  string `msgpack:"actor"`
	Name   string `msgpack:"name"`
	Text   string `msgpack:"text"`
}

// LogLines is the body of LOG.
type LogLines struct {
	Lines []LogLine `msgpack:"lines"`
}

// ObserveReply answers OBSERVE.
type ObserveReply struct {
	Data []byte `msgpack:"data"`
}

// CollStats is the body of COLL_STATS: operations and bytes by operation (allreduce,
// allgather, reducescatter, broadcast, barrier, send, recv).
type CollStats struct {
	Ops   map[string]uint64 `msgpack:"ops"`
	Bytes map[string]uint64 `msgpack:"bytes"`
}

// NodeStats is the body of a member's HEARTBEAT (wire/heartbeat.go): its node's object store
// use, the object bytes its agent served and pulled, and its load.
type NodeStats struct {
	Store    StoreStats `msgpack:"store"`
	Sent     int64      `msgpack:"sent"`
	Received int64      `msgpack:"received"`
	Load1    float64    `msgpack:"load1"`
}
