package wire

// Liveness between the head node's agent and its members (docs/protocol.md, "Liveness").
const (
	// THeartbeat goes both ways on a member's connection: the member sends one every period
	// (at most HeartbeatMS) with its NodeStats, and the head node's agent answers each with
	// one, with no body, carrying the same seq. Each side declares the other lost after the
	// timeout without one (no FIN needed: a cut link or a stopped process is noticed too).
	THeartbeat Type = 65
)

// NodeJoinReply is the body of the OK that answers NODE_JOIN: how often the member must send
// HEARTBEAT, and after how long without one either side gives the other up. Zero (a head that
// checks no liveness): the member sends none and checks none.
type NodeJoinReply struct {
	HeartbeatMS int64 `msgpack:"heartbeat_ms"`
	TimeoutMS   int64 `msgpack:"timeout_ms"`
	// LocalTasks: the member runs the plain tasks its own workers submit (wire/local.go).
	LocalTasks bool `msgpack:"local_tasks,omitempty"`
}

// HeartbeatReply is the head's answer to a member's HEARTBEAT (and, with seq 0, a word it
// sends a member that asked for leases): how many CPUs are free on the other nodes, as of its
// last look (every 200 ms), for the member's choice to run a task or spill it (wire/local.go).
type HeartbeatReply struct {
	FreeElsewhere float64 `msgpack:"free_elsewhere"`
}
