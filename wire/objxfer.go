package wire

// Object transfer between nodes (types 80-89; docs/protocol.md "Object transfer between
// nodes"). Every node runs its own object store; the head node's agent keeps the directory of
// which node holds which object, and agents pull object bytes from each other in chunks over
// the rdma transport (rdma.Transport), not through these frames.
const (
	// TFetch (client -> its own node's agent) asks for a stored object to be made readable in
	// this node's store, pulling it from the agent at Loc when it is not here yet.
	TFetch Type = 80
	// TPutAt (client -> head node's agent) records an object sealed in another node's store.
	TPutAt Type = 81
	// TObjFree (head node's agent -> member agent) drops the member's copies of objects.
	TObjFree Type = 82
	// TNodeStore (member agent -> head node's agent) publishes the member's transfer address.
	TNodeStore Type = 83
)

// Fetch is the body of FETCH. The answer is OK with an Obj: {id, fmt, path, offset, size}
// (one use counted, given back with RELEASE on the same connection), or an error object.
type Fetch struct {
	ID   ID     `msgpack:"id"`
	Fmt  int    `msgpack:"fmt"`
	Size int64  `msgpack:"size"`
	Loc  string `msgpack:"loc"` // transfer address of an agent that holds the bytes
}

// PutAt is the body of PUT_AT: the object is sealed in the store of the node whose agent
// serves transfers at Loc. Like PUT it gives the sender a reference (none for a worker's own
// task return value).
type PutAt struct {
	ID   ID     `msgpack:"id"`
	Fmt  int    `msgpack:"fmt"`
	Size int64  `msgpack:"size"`
	Refs []ID   `msgpack:"refs"`
	Loc  string `msgpack:"loc"`
}

// NodeStore is the body of NODE_STORE: the member's object store serves transfers at Loc.
type NodeStore struct {
	Loc string `msgpack:"loc"`
}
