package wire

// Rendezvous key-value messages (types 70-79): a small store in the agent that the ranks of a
// collective group use to find each other. Every connection of the cluster, on any node, talks
// to the head node's agent, so the store is cluster-wide; keys are not shared between clusters.
const (
	TKVPut    Type = 70 // KVPut -> KVReply
	TKVGet    Type = 71 // KVGet -> KVReply (after up to WaitMs for the key to appear)
	TKVDelete Type = 72 // KVKey -> KVReply
	TKVReply  Type = 73
)

// KVMaxKey and KVMaxValue bound what the store accepts.
const (
	KVMaxKey   = 512
	KVMaxValue = 64 << 10
	KVMaxWait  = 10 * 60 * 1000
)

// KVPut stores Value under Key, replacing what was there, and wakes the KVGets waiting on it.
type KVPut struct {
	Key   string `msgpack:"key"`
	Value []byte `msgpack:"value"`
}

// KVGet asks for Key's value, waiting up to WaitMs milliseconds for a KVPut when it is absent.
type KVGet struct {
	Key    string `msgpack:"key"`
	WaitMs int64  `msgpack:"wait_ms"`
}

// KVKey names one key.
type KVKey struct {
	Key string `msgpack:"key"`
}

// KVReply answers the KV requests. Found says whether Key had a value (for KVGet; for KVPut
// and KVDelete whether it had one before). Peer is the caller's host as the agent sees it: the
// remote address of a TCP connection, or the agent's own TCP host for a local socket; a rank
// listens on it so that ranks on other nodes can reach it.
type KVReply struct {
	Found bool   `msgpack:"found"`
	Value []byte `msgpack:"value"`
	Peer  string `msgpack:"peer"`
}
