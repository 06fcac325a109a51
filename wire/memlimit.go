package wire

// The memory monitor (nodeagent/memmon.go; docs/reliability.md "Memory").
const (
	// TMemLimit (head node's agent -> member agent) sets the memory limit of one of the
	// member's workers: the memory= request of the task or actor it now runs.
	TMemLimit Type = 54
)

// MemLimit is the body of MEM_LIMIT. Bytes 0 lifts the worker's limit. IntervalMs is how often
// the member's monitor looks (the head node's --memory-monitor-interval; 0: it is off).
type MemLimit struct {
	Worker     string `msgpack:"worker"`
	Bytes      uint64 `msgpack:"bytes"`
	Task       string `msgpack:"task"`
	IntervalMs int64  `msgpack:"interval_ms"`
}
