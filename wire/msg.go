package wire

import (
	"encoding/hex"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ID is a 16-byte identifier of a task, object, actor or placement group. It travels as
// MessagePack bin; nil decodes to the zero ID, which means "none".
type ID [16]byte

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// String returns the hex form of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Index returns the id's last four bytes as a big-endian number (return index + 1 for returns).
func (id ID) Index() uint32 {
	return uint32(id[12])<<24 | uint32(id[13])<<16 | uint32(id[14])<<8 | uint32(id[15])
}

// WithIndex returns id with its last four bytes set to i.
func (id ID) WithIndex(i uint32) ID {
	id[12], id[13], id[14], id[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return id
}

// EncodeMsgpack writes id as bin 16, or nil for the zero ID.
func (id ID) EncodeMsgpack(e *msgpack.Encoder) error {
	if id.IsZero() {
		return e.EncodeNil()
	}
	return e.EncodeBytes(id[:])
}

// DecodeMsgpack reads a bin of 16 bytes or nil.
func (id *ID) DecodeMsgpack(d *msgpack.Decoder) error {
	b, err := d.DecodeBytes()
	if err != nil {
		return err
	}
	if b == nil {
		*id = ID{}
		return nil
	}
	if len(b) != 16 {
		return fmt.Errorf("id is %d bytes, want 16", len(b))
	}
	copy(id[:], b)
	return nil
}

// Object formats.
const (
	FmtRaw     = 0
	FmtPython  = 1
	FmtMsgpack = 2
	FmtError   = 3
)

// Task kinds.
const (
	KindTask        = 0
	KindActorCreate = 1
	KindActorMethod = 2
)

// Error is the body of an ERROR message.
type Error struct {
	Code string `msgpack:"code"`
	Msg  string `msgpack:"msg"`
}

func (e *Error) Error() string { return e.Msg }

// Hello opens the handshake.
type Hello struct {
	Proto   int    `msgpack:"proto"`
	Nonce   []byte `msgpack:"nonce"`
	Cluster string `msgpack:"cluster"`
}

// Auth answers Hello. Nonce is the client's; Proof is Proof(secret, ClientLabel, Nonce, the
// server's nonce, the channel binding). Accept returns it with both cleared.
type Auth struct {
	Proto    int      `msgpack:"proto"`
	Nonce    []byte   `msgpack:"nonce"`
	Proof    []byte   `msgpack:"proof"`
	Role     string   `msgpack:"role"`
	Lang     string   `msgpack:"lang"`
	PID      int      `msgpack:"pid"`
	Exe      string   `msgpack:"exe"`
	Path     []string `msgpack:"path"`
	Cwd      string   `msgpack:"cwd"`
	WorkerID string   `msgpack:"worker_id"`
	Job      string   `msgpack:"job"`
	NS       string   `msgpack:"ns,omitempty"` // a driver's namespace, which its workers get (SHOAL_NAMESPACE)
}

// Welcome closes the handshake. Proof is Proof(secret, ServerLabel, the client's nonce, the
// server's nonce, the channel binding).
type Welcome struct {
	Node      string             `msgpack:"node"`
	Client    []byte             `msgpack:"client"`
	Job       string             `msgpack:"job"`
	Proof     []byte             `msgpack:"proof"`
	Arena     string             `msgpack:"arena"`
	ArenaSize int64              `msgpack:"arena_size"`
	Resources map[string]float64 `msgpack:"resources"`
}

// Put stores a small sealed object inline.
type Put struct {
	ID   ID     `msgpack:"id"`
	Fmt  int    `msgpack:"fmt"`
	Data []byte `msgpack:"data"`
	Refs []ID   `msgpack:"refs"`
}

// Create reserves room for an object in the arena.
type Create struct {
	ID   ID    `msgpack:"id"`
	Fmt  int   `msgpack:"fmt"`
	Size int64 `msgpack:"size"`
	Refs []ID  `msgpack:"refs"`
}

// CreateReply says where to write the object's bytes.
type CreateReply struct {
	Path   string `msgpack:"path"`
	Offset int64  `msgpack:"offset"`
}

// One carries one id (SEAL, PG_REMOVE, CANCEL).
type One struct {
	ID ID `msgpack:"id"`
}

// IDs carries ids (DECREF, INCREF, RELEASE).
type IDs struct {
	IDs []ID `msgpack:"ids"`
}

// Get asks for objects.
type Get struct {
	IDs       []ID  `msgpack:"ids"`
	TimeoutMS int64 `msgpack:"timeout_ms"`
}

// Obj describes a ready object: inline (Path empty) or stored in a file at Offset.
type Obj struct {
	ID     ID     `msgpack:"id"`
	Fmt    int    `msgpack:"fmt"`
	Data   []byte `msgpack:"data"` // nil: stored (read Path, or GET it when Path is empty)
	Path   string `msgpack:"path,omitempty"`
	Offset int64  `msgpack:"offset,omitempty"`
	Size   int64  `msgpack:"size,omitempty"`
	// Loc, on a stored object whose bytes are not in this node's store, is the transfer
	// address of an agent that holds them: FETCH it from your own node's agent.
	Loc string `msgpack:"loc,omitempty"`
	// Parts: the bytes are too many for one answer to a client without a store of its own;
	// it reads them with READ_PART, then RELEASEs the object.
	Parts bool `msgpack:"parts,omitempty"`
}

// PutPart is one part of an object a client without a store of its own puts in parts: the
// first (Off 0) creates the object of Size bytes, Last seals it.
type PutPart struct {
	ID   ID     `msgpack:"id"`
	Fmt  int    `msgpack:"fmt"`
	Size int64  `msgpack:"size"`
	Refs []ID   `msgpack:"refs"`
	Off  int64  `msgpack:"off"`
	Data []byte `msgpack:"data"`
	Last bool   `msgpack:"last"`
}

// ReadPart asks for Len bytes of a stored object from Off; answered with PartReply.
type ReadPart struct {
	ID  ID    `msgpack:"id"`
	Off int64 `msgpack:"off"`
	Len int64 `msgpack:"len"`
}

// PartReply carries the bytes ReadPart asked for.
type PartReply struct {
	Data []byte `msgpack:"data"`
}

// GetReply answers Get.
type GetReply struct {
	Objs    []Obj `msgpack:"objs"`
	Timeout bool  `msgpack:"timeout"`
}

// Wait asks for num of ids to be ready.
type Wait struct {
	IDs       []ID  `msgpack:"ids"`
	Num       int   `msgpack:"num"`
	TimeoutMS int64 `msgpack:"timeout_ms"`
}

// WaitReply answers Wait.
type WaitReply struct {
	Ready []int `msgpack:"ready"`
}

// Ready pushes finished return values to their submitter.
type Ready struct {
	Objs []Obj `msgpack:"objs"`
}

// Task is a task spec (SUBMIT and EXEC).
type Task struct {
	Task     ID                 `msgpack:"task"`
	Kind     int                `msgpack:"kind"`
	Fn       ID                 `msgpack:"fn"`
	Fnb      []byte             `msgpack:"fnb,omitempty"`
	Name     string             `msgpack:"name"`
	Lang     string             `msgpack:"lang"`
	Args     []byte             `msgpack:"args"`
	ArgObj   ID                 `msgpack:"argobj"`
	Deps     []ID               `msgpack:"deps"`
	Refs     []ID               `msgpack:"refs"`
	Nret     int                `msgpack:"nret"`
	Res      map[string]float64 `msgpack:"res"`
	Retries  int                `msgpack:"retries"`
	Actor    ID                 `msgpack:"actor"`
	Method   string             `msgpack:"method"`
	Restarts int                `msgpack:"restarts"`
	AName    string             `msgpack:"aname"`
	NS       string             `msgpack:"ns"`
	Meta     []byte             `msgpack:"meta"`
	PG       ID                 `msgpack:"pg"`
	Bundle   int                `msgpack:"bundle"`
	Depv     []Obj              `msgpack:"depv,omitempty"`
	Attempt  int                `msgpack:"attempt"`
	GPUs     []int              `msgpack:"gpus,omitempty"` // EXEC: the GPUs the task was given
	// Conc is an actor creation's max_concurrency over all its concurrency groups (0 or 1:
	// its calls run one at a time, in submission order); Detached: it outlives its driver.
	Conc     int  `msgpack:"conc,omitempty"`
	Detached bool `msgpack:"detached,omitempty"`
	// Group is an actor call's concurrency group when the caller chose one (.options).
	Group string `msgpack:"cg,omitempty"`
	// task features beyond a plain call (docs/ray-tasks.md)
	Gen      int        `msgpack:"gen,omitempty"`       // GenNone, GenStreaming or GenDynamic
	RetryExc bool       `msgpack:"rexc,omitempty"`      // retry_exceptions: an exception may be retried
	RetryOn  []byte     `msgpack:"rexc_on,omitempty"`   // the SDK's list of exception classes to retry (opaque)
	MaxCalls int        `msgpack:"max_calls,omitempty"` // the worker exits after this many calls of Fn
	Strategy string     `msgpack:"strategy,omitempty"`  // "", "DEFAULT", "SPREAD" or "NODE_AFFINITY"
	Node     string     `msgpack:"node,omitempty"`      // NODE_AFFINITY: the node's id
	Soft     bool       `msgpack:"soft,omitempty"`      // NODE_AFFINITY: may run elsewhere
	Selector []LabelReq `msgpack:"labels,omitempty"`    // label_selector, every requirement must hold
	// Renv is the task's runtime environment as the SDK prepared it (JSON, passed to the
	// worker), RenvKey its content key: the core keys worker pools by it (runtime_env.go).
	Renv    []byte `msgpack:"renv,omitempty"`
	RenvKey string `msgpack:"renvk,omitempty"`
}

// ActorExit is a worker's word that its actor ends on purpose (exit_actor(),
// __ray_terminate__, or a TERMINATE it was sent): the actor is not restarted, and Why is what
// its callers' ActorDiedError says.
type ActorExit struct {
	Why string `msgpack:"why"`
}

// Ret is one return value in Done.
type Ret struct {
	ID     ID     `msgpack:"id"`
	Fmt    int    `msgpack:"fmt"`
	Data   []byte `msgpack:"data"`
	Refs   []ID   `msgpack:"refs"`
	Stored bool   `msgpack:"stored"`
	// Size is a stored value's size, for a task run by a member's agent (wire/local.go).
	Size int64 `msgpack:"size,omitempty"`
}

// Done reports a finished task.
type Done struct {
	Task ID    `msgpack:"task"`
	Rets []Ret `msgpack:"rets"`
	Err  bool  `msgpack:"err"`
	// Retry: the task raised an exception its retry_exceptions names (retried while
	// max_retries allow; else Rets stand). Exit: the worker exits after this answer (max_calls).
	Retry bool `msgpack:"retry,omitempty"`
	Exit  bool `msgpack:"exit,omitempty"`
}

// Kill kills an actor.
type Kill struct {
	Actor     ID   `msgpack:"actor"`
	NoRestart bool `msgpack:"no_restart"`
}

// GetActor looks up a named actor.
type GetActor struct {
	Name string `msgpack:"name"`
	NS   string `msgpack:"ns"`
}

// GetActorReply answers GetActor.
type GetActorReply struct {
	Actor ID     `msgpack:"actor"`
	Meta  []byte `msgpack:"meta"`
}

// PGCreate creates a placement group.
type PGCreate struct {
	PG       ID                   `msgpack:"pg"`
	Bundles  []map[string]float64 `msgpack:"bundles"`
	Strategy string               `msgpack:"strategy"`
	Name     string               `msgpack:"name"`
}

// NodeInfo describes one node in Info.
type NodeInfo struct {
	ID        string             `msgpack:"id" json:"id"`
	Addr      string             `msgpack:"addr" json:"addr"`
	Alive     bool               `msgpack:"alive" json:"alive"`
	Total     map[string]float64 `msgpack:"total" json:"total"`
	Available map[string]float64 `msgpack:"available" json:"available"`
	// GPUs are the node's GPUs as its agent found them (NVML), or plain indices from Slurm.
	GPUs []GPU `msgpack:"gpus,omitempty" json:"gpus,omitempty"`
	// Labels are the node's labels, ray.io/node-id included (docs/ray-tasks.md).
	Labels map[string]string `msgpack:"labels,omitempty" json:"labels,omitempty"`
	// IP is the address other nodes reach the node at (its listener's or transfer address's
	// host; 127.0.0.1 for a cluster of this machine alone): ray.nodes()' NodeManagerAddress.
	IP string `msgpack:"ip,omitempty" json:"ip,omitempty"`
}

// StoreStats describes a node's object store.
type StoreStats struct {
	Objects      int   `msgpack:"objects" json:"objects"`
	Bytes        int64 `msgpack:"bytes" json:"bytes"`
	Capacity     int64 `msgpack:"capacity" json:"capacity"`
	Spilled      int   `msgpack:"spilled" json:"spilled"`
	SpilledBytes int64 `msgpack:"spilled_bytes" json:"spilled_bytes"`
}

// InfoReply answers Info.
type InfoReply struct {
	Cluster   string             `msgpack:"cluster" json:"cluster"`
	Nodes     []NodeInfo         `msgpack:"nodes" json:"nodes"`
	Total     map[string]float64 `msgpack:"total" json:"total"`
	Available map[string]float64 `msgpack:"available" json:"available"`
	Objects   StoreStats         `msgpack:"objects" json:"objects"`
	Workers   int                `msgpack:"workers" json:"workers"`
	Actors    int                `msgpack:"actors" json:"actors"`
	Jobs      int                `msgpack:"jobs" json:"jobs"`
}

// NodeJoin is a member agent announcing its node to the head node's agent.
type NodeJoin struct {
	Node      string             `msgpack:"node"`
	Addr      string             `msgpack:"addr"`
	Resources map[string]float64 `msgpack:"resources"`
	GPUs      []int              `msgpack:"gpus"` // the GPU indices the node offers
	// CUDA, when set, holds for each of GPUs the index CUDA sees on that node (Slurm's
	// ConstrainDevices renumbers a step's GPUs from 0); workers get these in
	// CUDA_VISIBLE_DEVICES. Absent: the GPU indices themselves.
	CUDA []int `msgpack:"cuda,omitempty"`
	// Devices describe GPUs (topology from the member's NVML) so the head node places tasks
	// on one NUMA node and NVLink-connected GPUs there too; absent when the member has no NVML.
	Devices []GPU `msgpack:"devices,omitempty"`
	// Labels are the node's labels (--labels), for label_selector (docs/ray-tasks.md).
	Labels map[string]string `msgpack:"labels,omitempty"`
}

// GPU is what a member tells the head about one of its GPUs.
type GPU struct {
	Index       int      `msgpack:"index" json:"index"`
	UUID        string   `msgpack:"uuid" json:"uuid,omitempty"`
	Name        string   `msgpack:"name" json:"name,omitempty"`
	MemoryBytes uint64   `msgpack:"memory_bytes" json:"memory_bytes,omitempty"`
	NUMANode    int      `msgpack:"numa_node" json:"numa_node"`
	CPUs        []int    `msgpack:"cpus" json:"cpus,omitempty"`
	NVLinkPeers []string `msgpack:"nvlink_peers" json:"nvlink_peers,omitempty"`
}

// Spawn asks a member agent to start a worker process.
type Spawn struct {
	Worker string   `msgpack:"worker"`
	Argv   []string `msgpack:"argv"`
	Env    []string `msgpack:"env"`
	Cwd    string   `msgpack:"cwd"`
	// GPUs are the GPU indices the worker owns: the member confines it to them and pins it to
	// their CPUs.
	GPUs []int `msgpack:"gpus,omitempty"`
}

// WorkerExit reports a member's worker process that ended (or failed to start).
type WorkerExit struct {
	Worker string `msgpack:"worker"`
	Msg    string `msgpack:"msg"`
	// Signal, in KILL_WORKER only: 2 (SIGINT) interrupts the worker's task (a cancel); any
	// other value, or none, kills its process group.
	Signal int `msgpack:"sig,omitempty"`
	// Stderr, in WORKER_EXIT only: the end of what the worker wrote to stderr (at most 2 KiB),
	// for the error of a task whose worker could not start.
	Stderr string `msgpack:"stderr,omitempty"`
	// OOM, in WORKER_EXIT only: the memory monitor stopped the worker for using more memory
	// than its task asked for; Msg says what it used (nodeagent/memmon.go).
	OOM bool `msgpack:"oom,omitempty"`
}

// Cancel cancels the task that returns Object, as ray.cancel does: a task that has not run
// never will; a running one gets TaskCancelledError (Force: its worker is killed); Recursive
// also cancels the tasks it submitted.
type Cancel struct {
	Object    ID   `msgpack:"object"`
	Force     bool `msgpack:"force"`
	Recursive bool `msgpack:"recursive"`
}

// Stop ends a member agent: its workers are killed and it exits with Code.
type Stop struct {
	Code int    `msgpack:"code"`
	Msg  string `msgpack:"msg"`
}

// Body returns a new value of the type a receiver decodes a message of type t into, or nil for
// a type without a body of its own (OK answers carry the reply type of their request; INFO and
// SHUTDOWN have none). The fuzz targets decode every type through it.
func Body(t Type) any {
	switch t {
	case TError:
		return &Error{}
	case THello:
		return &Hello{}
	case TAuth:
		return &Auth{}
	case TWelcome:
		return &Welcome{}
	case TPut:
		return &Put{}
	case TPutPart:
		return &PutPart{}
	case TReadPart:
		return &ReadPart{}
	case TCreate:
		return &Create{}
	case TSeal, TPGRemove:
		return &One{}
	case TCancel:
		return &Cancel{}
	case TGet:
		return &Get{}
	case TWait:
		return &Wait{}
	case TDecref, TIncref, TRelease, TObjFree:
		return &IDs{}
	case TReady:
		return &Ready{}
	case TSubmit, TExec:
		return &Task{}
	case TDone:
		return &Done{}
	case TActorExit:
		return &ActorExit{}
	case TKill:
		return &Kill{}
	case TGetActor:
		return &GetActor{}
	case TPGCreate:
		return &PGCreate{}
	case TNodeJoin:
		return &NodeJoin{}
	case TSpawn:
		return &Spawn{}
	case TWorkerExit, TKillWorker:
		return &WorkerExit{}
	case TStop:
		return &Stop{}
	case TKVPut:
		return &KVPut{}
	case TKVGet:
		return &KVGet{}
	case TKVDelete:
		return &KVKey{}
	case TKVReply:
		return &KVReply{}
	case TFetch:
		return &Fetch{}
	case TPutAt:
		return &PutAt{}
	case TNodeStore:
		return &NodeStore{}
	case TGenItem:
		return &GenItem{}
	case TTaskCancel:
		return &TaskCancel{}
	case TMemLimit:
		return &MemLimit{}
	case TLocalSubmit:
		return &Task{}
	case TLeaseNext:
		return &LeaseNext{}
	case TExpect:
		return &Expect{}
	case TLeaseRequest:
		return &LeaseRequest{}
	case TLocalDone:
		return &LocalDone{}
	case TLocalGet:
		return &LocalGet{}
	case TBlock:
		return &Block{}
	case TLocalCancel:
		return &LocalCancel{}
	case TLocalForget:
		return &IDs{}
	case TLeaseFailed:
		return &LeaseFailed{}
	case TLocalSpill:
		return &LocalSpill{}
	}
	return nil
}
