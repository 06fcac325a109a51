package slurm

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// ErrNotInJob is wrapped by the error ParseEnv returns when a variable that every Slurm job
// has is missing: the process does not run inside an allocation.
var ErrNotInJob = errors.New("not inside a slurm job")

// ErrInvalidEnv is wrapped by the error ParseEnv returns when a variable holds a value Slurm
// never writes.
var ErrInvalidEnv = errors.New("invalid slurm environment")

// MaxHetGroups is the most components a heterogeneous job has (Slurm's
// MAX_HET_JOB_COMPONENTS).
const MaxHetGroups = 128

// Env is what the SLURM_* variables say about the allocation and the task a process runs in.
// Slurm sets them in a batch script, in an salloc shell and in every srun task. Integer fields
// read -1 (identities) or 0 (counts, sizes) and slices nil when their variable is unset.
// An Env is not modified after ParseEnv returns it and is safe for concurrent reads.
type Env struct {
	// JobID is SLURM_JOB_ID (SLURM_JOBID in old scripts): decimal digits. In a heterogeneous
	// job it is the job ID of the first component.
	JobID string
	// StepID is SLURM_STEP_ID (or SLURM_STEPID); empty when Slurm did not set it.
	StepID string
	// NodeList is SLURM_JOB_NODELIST, or SLURM_NODELIST when that is unset, as Slurm wrote
	// it. SLURM_JOB_NODELIST is preferred because inside an srun step SLURM_NODELIST holds
	// the step's nodes, not the allocation's. It is empty in a heterogeneous job that only
	// sets the per-component lists.
	NodeList string
	// NNodes is SLURM_NNODES (or SLURM_JOB_NUM_NODES): the node count of the job, or of the
	// step inside an srun step.
	NNodes int
	// NodeID is SLURM_NODEID, the index of this node among the step's nodes; -1 when unset.
	NodeID int
	// ProcID is SLURM_PROCID, the task's rank in its step; -1 when unset.
	ProcID int
	// LocalID is SLURM_LOCALID, the task's rank on its node; -1 when unset.
	LocalID int
	// NTasks is SLURM_NTASKS (or SLURM_NPROCS).
	NTasks int
	// CPUsOnNode is SLURM_CPUS_ON_NODE, the CPUs of the job on this node.
	CPUsOnNode int
	// JobCPUsPerNode is SLURM_JOB_CPUS_PER_NODE expanded, one value per node of NodeList.
	JobCPUsPerNode []int
	// TasksPerNode is SLURM_TASKS_PER_NODE expanded, one value per node of the job, or of the
	// step inside an srun step.
	TasksPerNode []int
	// MemPerNodeMB is SLURM_MEM_PER_NODE, in megabytes (MiB).
	MemPerNodeMB uint64
	// MemPerCPUMB is SLURM_MEM_PER_CPU, in megabytes (MiB).
	MemPerCPUMB uint64
	// JobGPUs is SLURM_JOB_GPUS, global GPU indices, set in batch and interactive steps.
	JobGPUs []int
	// StepGPUs is SLURM_STEP_GPUS, global GPU indices, set in srun steps.
	StepGPUs []int
	// CUDAVisibleDevices is CUDA_VISIBLE_DEVICES when it is a list of indices. Slurm writes
	// global indices there, or local ones 0..n-1 when cgroup ConstrainDevices is on. Values
	// that are not indices (GPU UUIDs, "NoDevFiles") leave it nil rather than fail ParseEnv,
	// since this variable is not Slurm's alone.
	CUDAVisibleDevices []int
	// SubmitDir is SLURM_SUBMIT_DIR.
	SubmitDir string
	// HetGroups holds one entry per component of a heterogeneous job (SLURM_HET_SIZE of them),
	// read from the variables with the _HET_GROUP_<N> suffix; nil otherwise.
	HetGroups []HetGroup

	nodes    []string
	nodeName string
}

// HetGroupOf returns the index of the heterogeneous job component that node belongs to
// (the first, when several share it), or -1 when the job is not heterogeneous or node is in
// none.
func (e *Env) HetGroupOf(node string) int {
	for i, g := range e.HetGroups {
		for _, n := range g.Nodes {
			if n == node {
				return i
			}
		}
	}
	return -1
}

// HetGroup is one component of a heterogeneous job, read from the variables that end in
// _HET_GROUP_<N>. Fields mean what the Env fields of the same name mean.
type HetGroup struct {
	JobID          string // SLURM_JOB_ID_HET_GROUP_N
	NodeList       string // SLURM_JOB_NODELIST_HET_GROUP_N (or SLURM_NODELIST_HET_GROUP_N)
	Nodes          []string
	NNodes         int    // SLURM_NNODES_HET_GROUP_N (or SLURM_JOB_NUM_NODES_HET_GROUP_N)
	NTasks         int    // SLURM_NTASKS_HET_GROUP_N (or SLURM_NPROCS_HET_GROUP_N)
	JobCPUsPerNode []int  // SLURM_JOB_CPUS_PER_NODE_HET_GROUP_N
	TasksPerNode   []int  // SLURM_TASKS_PER_NODE_HET_GROUP_N
	MemPerNodeMB   uint64 // SLURM_MEM_PER_NODE_HET_GROUP_N
	MemPerCPUMB    uint64 // SLURM_MEM_PER_CPU_HET_GROUP_N
}

// FromOS reads the environment of the current process; see ParseEnv.
func FromOS() (*Env, error) { return ParseEnv(os.Getenv) }

// ParseEnv reads the Slurm variables through getenv, which returns "" for an unset variable
// (os.Getenv, or a map lookup in tests). SLURM_JOB_ID and a node list (SLURM_JOB_NODELIST,
// SLURM_NODELIST, or per component in a heterogeneous job) are required; their absence is an
// error wrapping ErrNotInJob. A variable that is set but not in the form Slurm writes is an
// error wrapping ErrInvalidEnv (and ErrHostlist or ErrCounts where those parsers found it).
func ParseEnv(getenv func(string) string) (*Env, error) {
	r := &envReader{get: getenv}
	e := &Env{NodeID: -1, ProcID: -1, LocalID: -1}

	var ok bool
	if _, e.JobID, ok = r.first("SLURM_JOB_ID", "SLURM_JOBID"); !ok {
		return nil, notInJob("SLURM_JOB_ID is not set; run this inside an sbatch/salloc allocation or under srun")
	}
	if !isDigits(e.JobID) {
		return nil, invalid("SLURM_JOB_ID=%q is not a job ID (decimal digits)", e.JobID)
	}
	_, e.StepID, _ = r.first("SLURM_STEP_ID", "SLURM_STEPID")
	e.nodeName = getenv("SLURMD_NODENAME")
	e.SubmitDir = getenv("SLURM_SUBMIT_DIR")

	var nodesVar string
	nodesVar, e.NodeList, _ = r.first("SLURM_JOB_NODELIST", "SLURM_NODELIST")
	if e.NodeList != "" {
		e.nodes = r.hostlist(nodesVar, e.NodeList)
	}
	e.NNodes = r.count("SLURM_NNODES", "SLURM_JOB_NUM_NODES")
	e.NodeID = r.id("SLURM_NODEID")
	e.ProcID = r.id("SLURM_PROCID")
	e.LocalID = r.id("SLURM_LOCALID")
	e.NTasks = r.count("SLURM_NTASKS", "SLURM_NPROCS")
	e.CPUsOnNode = r.count("SLURM_CPUS_ON_NODE")
	e.JobCPUsPerNode = r.counts("SLURM_JOB_CPUS_PER_NODE")
	e.TasksPerNode = r.counts("SLURM_TASKS_PER_NODE")
	e.MemPerNodeMB = r.megabytes("SLURM_MEM_PER_NODE")
	e.MemPerCPUMB = r.megabytes("SLURM_MEM_PER_CPU")
	e.JobGPUs = r.indices("SLURM_JOB_GPUS")
	e.StepGPUs = r.indices("SLURM_STEP_GPUS")
	if v := getenv("CUDA_VISIBLE_DEVICES"); v != "" {
		e.CUDAVisibleDevices, _ = parseIndices(v) // not Slurm's alone: see the field's doc
	}
	if r.err != nil {
		return nil, r.err
	}
	if e.NodeList != "" && len(e.nodes) == 0 {
		return nil, invalid("%s=%q holds no host names", nodesVar, e.NodeList)
	}

	if v := getenv("SLURM_HET_SIZE"); v != "" {
		n, err := parseCount(v)
		if err != nil || n < 1 || n > MaxHetGroups {
			return nil, invalid("SLURM_HET_SIZE=%q is not a component count from 1 to %d", v, MaxHetGroups)
		}
		e.HetGroups = make([]HetGroup, n)
		for i := range e.HetGroups {
			if err := r.hetGroup(i, n, &e.HetGroups[i]); err != nil {
				return nil, err
			}
		}
	}

	// The batch script of a heterogeneous job sees only component 0 in SLURM_JOB_NODELIST
	// (checked on Slurm 22.05); the job is all of its components. A step (srun --het-group=...)
	// gets its own components' union there, which is right as it is.
	if e.NodeList == "" || (len(e.HetGroups) > 1 && e.StepID == "") {
		e.nodes = nil
		for _, g := range e.HetGroups {
			e.nodes = appendNew(e.nodes, g.Nodes)
		}
	}
	if len(e.nodes) == 0 {
		return nil, notInJob("SLURM_JOB_ID is set but SLURM_JOB_NODELIST is not; run this inside an sbatch/salloc allocation or under srun")
	}
	return e, nil
}

// Nodes returns the allocation's nodes in Slurm's order, from SLURM_JOB_NODELIST, or, in a
// heterogeneous job's batch step (or without SLURM_JOB_NODELIST), the components' nodes in
// component order without repeats. The slice is the caller's to modify.
func (e *Env) Nodes() []string { return append([]string(nil), e.nodes...) }

// HeadNode returns the first node of the allocation, the one a batch script runs on.
func (e *Env) HeadNode() string { return e.nodes[0] }

// NodeName returns SLURMD_NODENAME, the Slurm name of the node this process runs on, or ""
// outside a Slurm task. It is deliberately not os.Hostname: several slurmd may share one
// host (and one UTS namespace), and node names need not be host names.
func (e *Env) NodeName() string { return e.nodeName }

// NodeIndex returns the position of NodeName in Nodes, or -1.
func (e *Env) NodeIndex() int {
	if e.nodeName == "" {
		return -1
	}
	for i, n := range e.nodes {
		if n == e.nodeName {
			return i
		}
	}
	return -1
}

// CPUsOnThisNode returns the CPUs the job holds on this node: SLURM_CPUS_ON_NODE, else this
// node's entry of SLURM_JOB_CPUS_PER_NODE, else 0 (unknown).
func (e *Env) CPUsOnThisNode() int {
	if e.CPUsOnNode > 0 {
		return e.CPUsOnNode
	}
	if i := e.NodeIndex(); i >= 0 && len(e.JobCPUsPerNode) == len(e.nodes) {
		return e.JobCPUsPerNode[i]
	}
	return 0
}

// MemoryBytesOnThisNode returns the memory the job may use on this node, in bytes:
// SLURM_MEM_PER_NODE, else SLURM_MEM_PER_CPU times CPUsOnThisNode, else 0 (unknown, which is
// also what Slurm means when it enforces no memory limit).
func (e *Env) MemoryBytesOnThisNode() uint64 {
	const mib = 1 << 20
	mb := e.MemPerNodeMB
	if mb == 0 && e.MemPerCPUMB > 0 {
		cpus := uint64(e.CPUsOnThisNode())
		if cpus > 0 && e.MemPerCPUMB > math.MaxUint64/cpus {
			return math.MaxUint64
		}
		mb = e.MemPerCPUMB * cpus
	}
	if mb > math.MaxUint64/mib {
		return math.MaxUint64
	}
	return mb * mib
}

// GPUs returns the global indices of the GPUs this process may use: SLURM_STEP_GPUS inside
// an srun step that has GPUs, else SLURM_JOB_GPUS, else CUDA_VISIBLE_DEVICES; nil when none
// is set. Under cgroup ConstrainDevices the devices are renumbered 0..n-1 inside the job;
// use CUDAVisibleDevices for the indices CUDA sees there. The slice is the caller's.
func (e *Env) GPUs() []int {
	switch {
	case e.StepGPUs != nil:
		return append([]int(nil), e.StepGPUs...)
	case e.JobGPUs != nil:
		return append([]int(nil), e.JobGPUs...)
	case e.CUDAVisibleDevices != nil:
		return append([]int(nil), e.CUDAVisibleDevices...)
	}
	return nil
}

// CUDAIndex maps each of GPUs()'s global indices to the index CUDA sees in this step, or
// returns nil when the two are the same. Under cgroup ConstrainDevices=yes Slurm renumbers a
// step's GPUs: SLURM_STEP_GPUS=4,5 comes with CUDA_VISIBLE_DEVICES=0,1, and a worker handed
// CUDA_VISIBLE_DEVICES=4 would see no GPU. Slurm lists both in the same order, so the i-th
// global index is CUDA's i-th device. A CUDA_VISIBLE_DEVICES of another length (set by hand,
// or UUIDs) gives nil: the global indices are used as they are.
func (e *Env) CUDAIndex() map[int]int {
	global := e.StepGPUs
	if global == nil {
		global = e.JobGPUs
	}
	if global == nil || len(e.CUDAVisibleDevices) != len(global) {
		return nil
	}
	m := make(map[int]int, len(global))
	same := true
	for i, g := range global {
		m[g] = e.CUDAVisibleDevices[i]
		same = same && g == e.CUDAVisibleDevices[i]
	}
	if same {
		return nil
	}
	return m
}

// RankVars returns the variables Slurm sets per task or per step, which must not reach a
// process that is not itself a task of that step. A worker that inherits SLURM_PROCID=0,
// SLURM_NTASKS and SLURM_LOCALID from the batch script, or PMI_RANK=0 from an srun task, is
// taken by Lightning, submitit or an MPI library for rank 0 of the step. A name ending in "*"
// stands for every variable with that prefix.
//
// The variables that describe the allocation (SLURM_JOB_*, SLURM_NODELIST, SLURM_NNODES,
// SLURMD_NODENAME, SLURM_CPUS_ON_NODE, SLURM_MEM_*, SLURM_SUBMIT_DIR, the _HET_GROUP_
// variables) stay: they are true for every process on the node, and ParseEnv needs them.
func RankVars() []string {
	return []string{
		"SLURM_PROCID",          // rank in the step
		"SLURM_LOCALID",         // rank on the node
		"SLURM_NODEID",          // node's rank in the step
		"SLURM_GTIDS",           // global task IDs on this node
		"SLURM_TASK_PID",        // PID of the task
		"SLURM_NTASKS",          // step size: Lightning's test for "launched by srun"
		"SLURM_NPROCS",          // old name of SLURM_NTASKS
		"SLURM_NTASKS_PER_NODE", // the step's layout, which Lightning checks against its devices
		"SLURM_TASKS_PER_NODE",  // the step's layout
		"SLURM_STEPID",          // old name of SLURM_STEP_ID
		"SLURM_STEP_*",          // SLURM_STEP_ID, _NODELIST, _NUM_TASKS, _GPUS, _LAUNCHER_PORT...
		"SLURM_SRUN_COMM_*",     // how tasks reach their srun
		"SLURM_LAUNCH_NODE_IPADDR",
		"SLURM_CPU_BIND*", // the task's CPU binding, not the worker's
		"PMI_*",           // PMI-1/PMI-2 rank and size set by srun --mpi
		"PMIX_*",          // PMIx rank and namespace set by srun --mpi=pmix
	}
}

// Scrub returns a copy of env ("KEY=value" entries, as from os.Environ) without the
// variables RankVars names, in the original order. env is not modified.
func Scrub(env []string) []string {
	vars := RankVars()
	out := make([]string, 0, len(env))
	for _, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		if !matchesAny(key, vars) {
			out = append(out, kv)
		}
	}
	return out
}

func matchesAny(key string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(key, prefix) {
				return true
			}
		} else if key == p {
			return true
		}
	}
	return false
}

func notInJob(msg string) error {
	return fmt.Errorf("read slurm environment: %w", &detailError{msg: msg, sentinel: ErrNotInJob})
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("read slurm environment: %w",
		&detailError{msg: fmt.Sprintf(format, args...), sentinel: ErrInvalidEnv})
}

// invalidWrap is invalid for an error from Expand or ExpandCounts, which stays in the chain
// next to ErrInvalidEnv.
func invalidWrap(name string, err error) error {
	return fmt.Errorf("read slurm environment: %w", &causeError{name: name, cause: err})
}

// causeError reads "NAME: cause" and unwraps to both ErrInvalidEnv and its cause.
type causeError struct {
	name  string
	cause error
}

func (e *causeError) Error() string   { return e.name + ": " + e.cause.Error() }
func (e *causeError) Unwrap() []error { return []error{ErrInvalidEnv, e.cause} }

// envReader reads variables and keeps the first error, so that ParseEnv reads like a list.
type envReader struct {
	get func(string) string
	err error
	// used counts the host names, counts and device indices read so far. Each list is
	// bounded on its own, but a heterogeneous job has up to MaxHetGroups of each; the total is
	// held to MaxNames so that no environment makes ParseEnv take gigabytes.
	used int
}

// spend records n more list elements read from name and fails once the total is too large.
func (r *envReader) spend(name string, n int) {
	if r.used += n; r.used > MaxNames {
		r.fail(invalid("%s: the Slurm variables hold more than %d host names, counts and device indices in total", name, MaxNames))
	}
}

// first returns the first of names that is set, with its value.
func (r *envReader) first(names ...string) (name, value string, ok bool) {
	for _, n := range names {
		if v := r.get(n); v != "" {
			return n, v, true
		}
	}
	return names[0], "", false
}

func (r *envReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *envReader) hostlist(name, value string) []string {
	if r.err != nil {
		return nil
	}
	names, err := Expand(value)
	if err != nil {
		r.fail(invalidWrap(name, err))
		return nil
	}
	r.spend(name, len(names))
	return names
}

// count reads a non-negative number (0 when unset).
func (r *envReader) count(names ...string) int {
	name, v, ok := r.first(names...)
	if !ok {
		return 0
	}
	n, err := parseCount(v)
	if err != nil {
		r.fail(invalid("%s=%q is not a number from 0 to 4294967295", name, v))
	}
	return n
}

// id reads a rank or index (-1 when unset).
func (r *envReader) id(name string) int {
	if r.get(name) == "" {
		return -1
	}
	return r.count(name)
}

func (r *envReader) counts(name string) []int {
	v := r.get(name)
	if v == "" || r.err != nil {
		return nil
	}
	c, err := ExpandCounts(v)
	if err != nil {
		r.fail(invalidWrap(name, err))
	}
	r.spend(name, len(c))
	return c
}

func (r *envReader) megabytes(name string) uint64 {
	v := r.get(name)
	if v == "" {
		return 0
	}
	mb, err := strconv.ParseUint(v, 10, 64)
	if err != nil || !isDigits(v) {
		r.fail(invalid("%s=%q is not a size in megabytes (decimal digits)", name, v))
	}
	return mb
}

func (r *envReader) indices(name string) []int {
	v := r.get(name)
	if v == "" || r.err != nil {
		return nil
	}
	idx, err := parseIndices(v)
	if err != nil {
		r.fail(invalid("%s=%q: %v", name, v, err))
	}
	r.spend(name, len(idx))
	return idx
}

func (r *envReader) hetGroup(i, size int, g *HetGroup) error {
	if r.err != nil {
		return r.err
	}
	suffix := "_HET_GROUP_" + strconv.Itoa(i)
	_, g.JobID, _ = r.first("SLURM_JOB_ID" + suffix)
	if g.JobID != "" && !isDigits(g.JobID) {
		r.fail(invalid("SLURM_JOB_ID%s=%q is not a job ID (decimal digits)", suffix, g.JobID))
	}
	name, list, ok := r.first("SLURM_JOB_NODELIST"+suffix, "SLURM_NODELIST"+suffix)
	if !ok {
		return notInJob(fmt.Sprintf("SLURM_HET_SIZE is %d but %s is not set", size, name))
	}
	g.NodeList = list
	g.Nodes = r.hostlist(name, list)
	if r.err == nil && len(g.Nodes) == 0 {
		r.fail(invalid("%s=%q holds no host names", name, list))
	}
	g.NNodes = r.count("SLURM_NNODES"+suffix, "SLURM_JOB_NUM_NODES"+suffix)
	g.NTasks = r.count("SLURM_NTASKS"+suffix, "SLURM_NPROCS"+suffix)
	g.JobCPUsPerNode = r.counts("SLURM_JOB_CPUS_PER_NODE" + suffix)
	g.TasksPerNode = r.counts("SLURM_TASKS_PER_NODE" + suffix)
	g.MemPerNodeMB = r.megabytes("SLURM_MEM_PER_NODE" + suffix)
	g.MemPerCPUMB = r.megabytes("SLURM_MEM_PER_CPU" + suffix)
	return r.err
}

// parseIndices parses a GPU index list such as "0,1,3" (ranges "0-3" are accepted too).
func parseIndices(s string) ([]int, error) {
	out := []int{}
	for _, part := range strings.Split(s, ",") {
		loText, hiText, isRange := strings.Cut(part, "-")
		if !isRange {
			hiText = loText
		}
		lo, err1 := parseCount(loText)
		hi, err2 := parseCount(hiText)
		if err1 != nil || err2 != nil || lo > hi {
			return nil, fmt.Errorf("%q is not a device index or an index range", part)
		}
		if hi-lo >= MaxRange-len(out) {
			return nil, fmt.Errorf("more than %d device indices", MaxRange)
		}
		for v := lo; v <= hi; v++ {
			out = append(out, v)
		}
	}
	return out, nil
}

// appendNew appends the names of add that dst does not hold yet.
func appendNew(dst, add []string) []string {
	seen := make(map[string]bool, len(dst))
	for _, n := range dst {
		seen[n] = true
	}
	for _, n := range add {
		if !seen[n] {
			seen[n] = true
			dst = append(dst, n)
		}
	}
	return dst
}
