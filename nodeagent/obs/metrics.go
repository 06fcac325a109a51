package obs

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-hpc/shoal/wire"
)

// Source is the agent whose state the gauges, the page and the report read. Snapshot is
// called without the recorder's lock; it takes the agent's.
type Source interface {
	Snapshot() Snapshot
}

// Snapshot is the cluster's state at one moment.
type Snapshot struct {
	Cluster string    `json:"cluster"`
	Time    time.Time `json:"time"`
	Nodes   []Node    `json:"nodes"`
	Actors  []Actor   `json:"actors"`
	Groups  []Group   `json:"placement_groups"`
	Workers []Worker  `json:"workers"`
	Jobs    int       `json:"jobs"`
}

// Node is one node of the cluster.
type Node struct {
	ID        string             `json:"id"`
	Addr      string             `json:"addr"`
	Alive     bool               `json:"alive"`
	Head      bool               `json:"head"`
	Joined    time.Time          `json:"joined"`
	Total     map[string]float64 `json:"total"`
	Available map[string]float64 `json:"available"`
	GPUs      []int              `json:"gpus"`
	GPUsUsed  []int              `json:"gpus_used"`
	Load1     float64            `json:"load1"` // the node's 1-minute load average, where known
	Store     Store              `json:"store"`
	// SentBytes and ReceivedBytes are object bytes the node's agent served to and pulled
	// from other nodes.
	SentBytes     int64     `json:"sent_bytes"`
	ReceivedBytes int64     `json:"received_bytes"`
	Heartbeats    uint64    `json:"heartbeats"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// LogLines, LogBytes and LogDropped are the figures of the node's own ring of its
	// workers' lines (kept by its agent; a member's come with its heartbeats).
	LogLines   int    `json:"log_lines"`
	LogBytes   int    `json:"log_bytes"`
	LogDropped uint64 `json:"log_dropped"`
}

// Store is a node's object store use.
type Store struct {
	Objects      int   `json:"objects"`
	Bytes        int64 `json:"bytes"`
	Capacity     int64 `json:"capacity"`
	Spilled      int   `json:"spilled"`
	SpilledBytes int64 `json:"spilled_bytes"`
}

// Actor is one actor.
type Actor struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Class    string `json:"class"`
	State    string `json:"state"`
	Node     string `json:"node"`
	Worker   string `json:"worker"`
	Restarts int    `json:"restarts"`
	Job      string `json:"job"`
}

// Group is one placement group.
type Group struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Strategy string   `json:"strategy"`
	State    string   `json:"state"`
	Nodes    []string `json:"nodes"`
}

// Worker is one worker process.
type Worker struct {
	ID    string `json:"id"`
	Node  string `json:"node"`
	Job   string `json:"job"`
	PID   int    `json:"pid"`
	Task  string `json:"task"`  // the function it runs now
	Actor string `json:"actor"` // the actor it hosts
	GPUs  []int  `json:"gpus"`
}

// metrics are the recorder's own series; the collector adds the state gauges at scrape time.
type metrics struct {
	submitted [3]prometheus.Counter
	finished  [3]prometheus.Counter
	failed    [3]prometheus.Counter
	retried   [3]prometheus.Counter
	live      [3][2]prometheus.Gauge // [kind][Submitted|Running]
	queue     [3]prometheus.Observer
	run       [3]prometheus.Observer
	collOps   *prometheus.CounterVec
	collBytes *prometheus.CounterVec
}

// latencyBuckets reach from 100 µs (an inline task's round trip) to 20 minutes.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 4, 12)

func newMetrics(reg *prometheus.Registry) metrics {
	submitted := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_tasks_submitted_total",
		Help: "Tasks, actor creations and actor calls submitted."}, []string{"kind"})
	completed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_tasks_completed_total",
		Help: "Tasks, actor creations and actor calls that ended, by outcome (finished or failed)."}, []string{"kind", "outcome"})
	retried := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_tasks_retried_total",
		Help: "Task attempts retried after their worker died."}, []string{"kind"})
	live := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shoal_tasks",
		Help: "Tasks now pending (waiting for arguments, resources or a worker) or running."}, []string{"kind", "state"})
	queue := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shoal_task_queue_seconds",
		Help: "Time from submission to the first start on a worker.", Buckets: latencyBuckets}, []string{"kind"})
	run := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shoal_task_run_seconds",
		Help: "Time on a worker, from start to end (each attempt).", Buckets: latencyBuckets}, []string{"kind"})
	collOps := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_collective_operations_total",
		Help: "Collective operations run by the ranks of every group, counted per rank (rdma/coll)."}, []string{"op"})
	collBytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_collective_bytes_total",
		Help: "Bytes of the buffers of collective operations, counted per rank (allgather: the gathered output; reducescatter: the input)."}, []string{"op"})
	reg.MustRegister(submitted, completed, retried, live, queue, run, collOps, collBytes)
	m := metrics{collOps: collOps, collBytes: collBytes}
	for k := range kindNames {
		n := kindNames[k]
		m.submitted[k] = submitted.WithLabelValues(n)
		m.finished[k] = completed.WithLabelValues(n, "finished")
		m.failed[k] = completed.WithLabelValues(n, "failed")
		m.retried[k] = retried.WithLabelValues(n)
		m.live[k][Submitted] = live.WithLabelValues(n, "pending")
		m.live[k][Running] = live.WithLabelValues(n, "running")
		m.queue[k] = queue.WithLabelValues(n)
		m.run[k] = run.WithLabelValues(n)
	}
	for _, op := range []string{"allreduce", "allgather", "reducescatter", "broadcast", "barrier", "send", "recv"} {
		collOps.WithLabelValues(op) // every op from the start, at 0
		collBytes.WithLabelValues(op)
	}
	return m
}

// knownOps bounds the op label to the operations rdma/coll counts, so that a rank cannot grow
// the series without end.
var knownOps = map[string]bool{"allreduce": true, "allgather": true, "reducescatter": true, "broadcast": true,
	"barrier": true, "send": true, "recv": true}

// Collectives adds a rank's COLL_STATS.
func (r *Recorder) Collectives(s wire.CollStats) {
	if r == nil {
		return
	}
	for op, n := range s.Ops {
		if knownOps[op] {
			r.m.collOps.WithLabelValues(op).Add(float64(n))
			r.m.collBytes.WithLabelValues(op).Add(float64(s.Bytes[op]))
		}
	}
}

// collector turns a Snapshot into gauges and counters at scrape time, so that the agent's hot
// paths pay nothing for them.
type collector struct {
	src Source
	r   *Recorder
}

var (
	descNodeUp       = prometheus.NewDesc("shoal_node_up", "1 while the node is in the cluster and alive.", []string{"node"}, nil)
	descResTotal     = prometheus.NewDesc("shoal_node_resource_capacity", "Resources the node offers (CPU, GPU, memory in bytes, custom).", []string{"node", "resource"}, nil)
	descResAvail     = prometheus.NewDesc("shoal_node_resource_available", "Resources of the node not held by tasks, actors or placement groups.", []string{"node", "resource"}, nil)
	descLoad         = prometheus.NewDesc("shoal_node_load1", "The node's 1-minute load average.", []string{"node"}, nil)
	descWorkers      = prometheus.NewDesc("shoal_workers", "Worker processes on the node.", []string{"node"}, nil)
	descStoreUsed    = prometheus.NewDesc("shoal_object_store_used_bytes", "Bytes of objects in the node's object store (shared memory and inline).", []string{"node"}, nil)
	descStoreCap     = prometheus.NewDesc("shoal_object_store_capacity_bytes", "Size of the node's object store arena.", []string{"node"}, nil)
	descStoreObjs    = prometheus.NewDesc("shoal_object_store_objects", "Objects in the node's object store.", []string{"node"}, nil)
	descSpilled      = prometheus.NewDesc("shoal_object_store_spilled_objects_total", "Objects spilled to disk because the arena was full.", []string{"node"}, nil)
	descSpilledBytes = prometheus.NewDesc("shoal_object_store_spilled_bytes_total", "Bytes spilled to disk because the arena was full.", []string{"node"}, nil)
	descSent         = prometheus.NewDesc("shoal_object_transfer_sent_bytes_total", "Object bytes the node's agent sent to other nodes.", []string{"node"}, nil)
	descRecv         = prometheus.NewDesc("shoal_object_transfer_received_bytes_total", "Object bytes the node's agent pulled from other nodes.", []string{"node"}, nil)
	descBeats        = prometheus.NewDesc("shoal_node_heartbeats_total", "Heartbeats the head node's agent received from the node's member agent.", []string{"node"}, nil)
	descLogLines     = prometheus.NewDesc("shoal_log_lines", "Worker output lines the node's agent keeps (its own ring).", []string{"node"}, nil)
	descLogBytes     = prometheus.NewDesc("shoal_log_bytes", "Bytes of worker output text the node's agent keeps.", []string{"node"}, nil)
	descLogDropped   = prometheus.NewDesc("shoal_log_dropped_lines_total", "Worker output lines the node's agent dropped for its bound (--log-lines, --log-bytes).", []string{"node"}, nil)
	descHeadLogLines = prometheus.NewDesc("shoal_head_log_lines", "Worker output lines held in the head node's agent, by the node that wrote them: its own ring, and lines waiting for drivers.", []string{"node"}, nil)
	descActors       = prometheus.NewDesc("shoal_actors", "Actors by state.", []string{"state"}, nil)
	descGroups       = prometheus.NewDesc("shoal_placement_groups", "Placement groups by state.", []string{"state"}, nil)
	descJobs         = prometheus.NewDesc("shoal_jobs", "Drivers connected.", nil, nil)
	descUptime       = prometheus.NewDesc("shoal_cluster_uptime_seconds", "Seconds since the cluster started.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogLines, descLogBytes, descLogDropped, descHeadLogLines, descNodeUp, descResTotal, descResAvail, descLoad, descWorkers, descStoreUsed,
		descStoreCap, descStoreObjs, descSpilled, descSpilledBytes, descSent, descRecv, descBeats, descActors,
		descGroups, descJobs, descUptime} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	c.r.notePeak(&s)
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ctr := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	workers := map[string]int{}
	for _, w := range s.Workers {
		workers[w.Node]++
	}
	for _, n := range s.Nodes {
		up := 0.0
		if n.Alive {
			up = 1
		}
		g(descNodeUp, up, n.ID)
		for _, k := range sortedKeys(n.Total) {
			g(descResTotal, n.Total[k], n.ID, k)
			g(descResAvail, n.Available[k], n.ID, k)
		}
		g(descLoad, n.Load1, n.ID)
		g(descWorkers, float64(workers[n.ID]), n.ID)
		g(descStoreUsed, float64(n.Store.Bytes), n.ID)
		g(descStoreCap, float64(n.Store.Capacity), n.ID)
		g(descStoreObjs, float64(n.Store.Objects), n.ID)
		ctr(descSpilled, float64(n.Store.Spilled), n.ID)
		ctr(descSpilledBytes, float64(n.Store.SpilledBytes), n.ID)
		ctr(descSent, float64(n.SentBytes), n.ID)
		ctr(descRecv, float64(n.ReceivedBytes), n.ID)
		if !n.Head {
			ctr(descBeats, float64(n.Heartbeats), n.ID)
		}
		g(descLogLines, float64(n.LogLines), n.ID)
		g(descLogBytes, float64(n.LogBytes), n.ID)
		ctr(descLogDropped, float64(n.LogDropped), n.ID)
	}
	held := c.r.DriverLines()
	for _, n := range s.Nodes {
		if n.Head {
			held[n.ID] += c.r.LogStats().Lines
		}
	}
	for _, n := range s.Nodes {
		g(descHeadLogLines, float64(held[n.ID]), n.ID)
	}
	actors := map[string]int{"PENDING": 0, "ALIVE": 0, "RESTARTING": 0, "DEAD": 0}
	for _, a := range s.Actors {
		actors[a.State]++
	}
	for _, k := range sortedKeys(actors) {
		g(descActors, float64(actors[k]), k)
	}
	groups := map[string]int{"PENDING": 0, "CREATED": 0, "REMOVED": 0}
	for _, p := range s.Groups {
		groups[p.State]++
	}
	for _, k := range sortedKeys(groups) {
		g(descGroups, float64(groups[k]), k)
	}
	g(descJobs, float64(s.Jobs))
	g(descUptime, s.Time.Sub(c.r.start).Seconds())
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
