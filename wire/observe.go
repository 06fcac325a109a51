package wire

// Observability messages (docs/protocol.md "Observability"): the CLI and the SDKs ask the head
// node's agent for what its recorder holds, and member agents report their node's figures.
const (
	// TObserve (client -> head node's agent) asks for a recording: the answer is OK with an
	// ObserveReply whose Data is the JSON document What names.
	TObserve Type = 43
	// TNodeStats (member agent -> head node's agent) is a member's heartbeat: its node's
	// object store use, transfer bytes, load and workers, every HeartbeatMS.
	TNodeStats Type = 65
)

// HeartbeatMS is how often a member agent sends NODE_STATS.
const HeartbeatMS = 1000

// What an OBSERVE asks for.
const (
	ObserveDashboard = "dashboard" // {"url": ..., "token": ...}
	ObserveTimeline  = "timeline"  // Chrome trace events
	ObserveReport    = "report"    // the end-of-job report so far
)

// Observe is the body of OBSERVE.
type Observe struct {
	What string `msgpack:"what"`
}

// ObserveReply answers OBSERVE.
type ObserveReply struct {
	Data []byte `msgpack:"data"`
}

// NodeStats is the body of NODE_STATS.
type NodeStats struct {
	Store    StoreStats `msgpack:"store"`
	Sent     int64      `msgpack:"sent"`
	Received int64      `msgpack:"received"`
	Load1    float64    `msgpack:"load1"`
}
