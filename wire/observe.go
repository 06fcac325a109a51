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
	// TLogQuery (head node's agent -> member agent) asks for a page of the lines the member's
	// ring keeps: the answer is LOG_PAGE with the query's seq.
	TLogQuery Type = 67
	// TLogPage (member agent -> head node's agent) answers LOG_QUERY.
	TLogPage Type = 68
	// TLogConfig (head node's agent -> member agent, no answer) sets the bound of the member's
	// ring and says which jobs' lines the head wants in LOG frames (their drivers print them).
	TLogConfig Type = 69
)

// HeartbeatMS is the longest period of a member's HEARTBEAT, which carries its NodeStats: at
// least once a second, also where the head checks no liveness or allows a longer period.
const HeartbeatMS = 1000

// What an OBSERVE asks for.
const (
	ObserveDashboard = "dashboard" // {"url": ..., "token": ...}
	ObserveTimeline  = "timeline"  // Chrome trace events
	ObserveReport    = "report"    // the end-of-job report so far
	// ObserveLogs asks for workers' lines of every node (or of Node only) after Cursor that
	// match Job, Task, Actor (id prefix or name) and Worker, merged by time: {"lines": [...],
	// "next": {node: seq}, "more": bool, "dropped": {node: n}, "gone": {node: why}}. The head
	// asks each member agent (LOG_QUERY); Max bounds each node's page.
	ObserveLogs = "logs"
	// ObserveDriverLogs asks for the lines waiting at the head for Job's driver (one that
	// registered with LogToDriver) after Since: {"lines": [...], "next": seq}.
	ObserveDriverLogs = "driver_logs"
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
	// Cursor is where an ObserveLogs reader is in each node's ring (the "next" of its last
	// answer); none: from each ring's oldest line.
	Cursor map[string]uint64 `msgpack:"cursor,omitempty"`
}

// LogQuery is the body of LOG_QUERY: the lines after Since that match the filter (Task and
// Actor: hex id prefixes), at most Max of them and about MaxBytes of text.
type LogQuery struct {
	Job      string `msgpack:"job,omitempty"`
	Task     string `msgpack:"task,omitempty"`
	Actor    string `msgpack:"actor,omitempty"`
	Worker   string `msgpack:"worker,omitempty"`
	Since    uint64 `msgpack:"since,omitempty"`
	Max      int    `msgpack:"max,omitempty"`
	MaxBytes int    `msgpack:"max_bytes,omitempty"`
}

// LogPage is the body of LOG_PAGE: Next is the cursor to ask from next time, More says the
// page stopped at its bound, Dropped counts the lines after Since the ring dropped for its
// bound before they were asked for.
type LogPage struct {
	Lines   []LogLine `msgpack:"lines"`
	Next    uint64    `msgpack:"next"`
	More    bool      `msgpack:"more,omitempty"`
	Dropped uint64    `msgpack:"dropped,omitempty"`
}

// LogConfig is the body of LOG_CONFIG: the bound of the member's ring (0: its default) and,
// by job, whether the head wants the job's lines in LOG frames (true: its driver prints them)
// or not (false: its driver registered without log_to_driver). A job not named: LOG frames
// (its driver registered nothing, and the head echoes its lines).
type LogConfig struct {
	MaxLines int             `msgpack:"max_lines,omitempty"`
	MaxBytes int             `msgpack:"max_bytes,omitempty"`
	Jobs     map[string]bool `msgpack:"jobs,omitempty"`
}

// LogLine is one line a worker wrote (LOG).
type LogLine struct {
	Seq    uint64 `msgpack:"seq,omitempty"` // in its node's ring (LOG_PAGE)
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
	// the node's ring of its workers' lines: lines and bytes kept, lines dropped for its bound
	LogLines   int    `msgpack:"log_lines,omitempty"`
	LogBytes   int    `msgpack:"log_bytes,omitempty"`
	LogDropped uint64 `msgpack:"log_dropped,omitempty"`
}
