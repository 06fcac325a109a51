// Package coll runs collectives (allreduce, allgather, reduce-scatter, broadcast, barrier,
// send/recv) among the ranks of a group, over the transports of package rdma.
//
// A group forms by rendezvous through the cluster's key-value store (the head node's agent):
// every rank listens on each backend it can run, publishes the addresses under
// "coll/<group>/<rank>", and reads the others'. Connections are made when an algorithm first
// needs them, shared memory between ranks of one node and the network between nodes
// (rdma.Choose). Large messages take bandwidth-optimal rings; small ones latency-optimal
// recursive doubling; a group spanning nodes reduces inside each node first (hierarchical).
//
// Every operation runs under the group's timeout. Any failure (a peer that died, a closed
// connection, a timeout) aborts the group: its connections close, so the other ranks' pending
// operations fail too, promptly, instead of hanging. An aborted group returns ErrAborted
// (wrapping the first cause) from every later call; make a new group to go on.
//
// A Group is not safe for concurrent use: call its collectives from one goroutine, in the same
// order on every rank.
package coll

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/rdma"
)

// KV is the rendezvous store: client.Client implements it.
type KV interface {
	KVPut(ctx context.Context, key string, value []byte) (host string, err error)
	KVGet(ctx context.Context, key string, wait time.Duration) ([]byte, bool, error)
	KVDelete(ctx context.Context, key string) (bool, error)
}

// ErrAborted is returned by every operation of a group that failed before.
var ErrAborted = errors.New("collective group aborted")

// Options configure a group.
type Options struct {
	// Cluster and Secret are the cluster's id and secret (SHOAL_CLUSTER_ID, SHOAL_SECRET).
	Cluster, Secret string
	// OwnKV: the group owns its KV connection and closes it (an io.Closer) in Close, after its
	// last collective counts (stats.go) went out on it.
	OwnKV bool
	// Node is this rank's node id (SHOAL_NODE_ID); ranks with the same one use shared memory.
	Node string
	// Backend is "auto" (default: shm inside a node, ucx where it runs and the node has an
	// RDMA port, else tcp), or one backend name for every connection ("tcp", "shm", ...).
	Backend string
	// Host is the address other nodes reach this rank on; "" takes the one the rendezvous
	// store sees.
	Host string
	// Timeout bounds every operation, group formation included (0 = 60 s).
	Timeout time.Duration
	// SmallMax is the largest message (bytes) for latency-optimal algorithms (0 = 64 KiB).
	SmallMax int
	// Hierarchical: 0 = when the group spans nodes and a node has several ranks, 1 = always,
	// -1 = never.
	Hierarchical int
	// Insecure runs the data plane in clear (--insecure-data-plane; also set by
	// SHOAL_INSECURE_DATA_PLANE=1, which the agent gives the workers of such a cluster): TCP
	// without TLS, and ucx may be chosen. Every rank of a group must agree.
	Insecure bool
	// Log receives debug messages; nil logs nothing.
	Log hclog.Logger
}

// record is what a rank publishes.
type record struct {
	Rank  int               `json:"rank"`
	Node  string            `json:"node"`
	Addrs map[string]string `json:"addrs"` // backend -> listener address
	Token string            `json:"token"` // this incarnation; a stale record has another
}

// parseRecord reads rank r's published record (outside input: any process of the cluster can
// write the store).
func parseRecord(v []byte, r int) (record, error) {
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return record{}, fmt.Errorf("rank %d published a bad record %q: %w", r, v, err)
	}
	if rec.Rank != r {
		return record{}, fmt.Errorf("the record of rank %d names rank %d", r, rec.Rank)
	}
	if len(rec.Addrs) == 0 {
		return record{}, fmt.Errorf("rank %d published no address", r)
	}
	if len(rec.Token) < 24 {
		return record{}, fmt.Errorf("rank %d published a token of %d characters, want 24", r, len(rec.Token))
	}
	return rec, nil
}

// Group is one rank's membership in a collective group.
type connRef struct{ c rdma.Conn }

type Group struct {
	name       string
	rank, size int
	opts       Options
	log        hclog.Logger
	kv         KV

	trs   map[string]rdma.Transport
	lns   map[string]rdma.Listener
	recs  []record
	token string
	id    [32]byte // hash of name and size: the connection handshake checks it

	mu       sync.Mutex
	conns    []rdma.Conn
	live     []atomic.Pointer[connRef] // conns, readable without mu (the per-operation path)
	failed   atomic.Bool               // abortErr is set
	making   []sync.Mutex              // one per peer: a connection is made once, by one goroutine
	accepted []chan rdma.Conn
	abortErr error
	closed   bool
	done     chan struct{}

	stats      stats // collectives run, for the head's /metrics (stats.go)
	scratchBuf []byte
	dctx       deadlineCtx // the running collective's context (a Group runs one at a time)
	dctxBusy   atomic.Bool // dctx is in use (a Send and a Recv may run at once)
	forming    bool        // in NewGroup: records may still be replaced

	world *comm
	local *comm // ranks of this node (hierarchical), nil when not used
	inter *comm // one rank per node (hierarchical), nil on non-leaders
}

// Rank returns this rank; Size the number of ranks.
func (g *Group) Rank() int { return g.rank }

// Size returns the number of ranks.
func (g *Group) Size() int { return g.size }

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Backends returns the backend used to reach each other rank so far (for logs and tests).
func (g *Group) Backends() map[int]string {
	out := map[int]string{}
	for r := range g.size {
		if r != g.rank {
			out[r] = g.choose(r)
		}
	}
	return out
}

func groupKey(name string, rank int) string { return fmt.Sprintf("coll/%s/%d", name, rank) }

// NewGroup joins group name as rank of size ranks, waiting (up to opts.Timeout) for every
// rank to publish itself. Every rank must call it with the same name and size.
func NewGroup(ctx context.Context, kv KV, name string, rank, size int, opts Options) (*Group, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("join collective group %q: rank %d of %d: want 0 <= rank < size", name, rank, size)
	}
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("join collective group %q: the name must be non-empty, without '/' or spaces", name)
	}
	if opts.Secret == "" {
		return nil, fmt.Errorf("join collective group %q: no cluster secret (SHOAL_SECRET)", name)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.SmallMax <= 0 {
		opts.SmallMax = 64 << 10
	}
	if opts.Backend == "" {
		opts.Backend = "auto"
	}
	if opts.Cluster == "" {
		opts.Cluster = "local"
	}
	if rdma.InsecureFromEnv() {
		opts.Insecure = true
	}
	if !opts.Insecure && opts.Backend != "auto" && !rdma.Encrypted(opts.Backend) {
		return nil, fmt.Errorf("join collective group %q: backend %q does not encrypt its traffic between nodes and the data plane is encrypted; use backend \"auto\" or \"tcp\", or run the cluster with an insecure data plane (%s)", name, opts.Backend, rdma.InsecureHint)
	}
	log := opts.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	g := &Group{name: name, rank: rank, size: size, opts: opts, log: log.With("group", name, "rank", rank), kv: kv,
		trs: map[string]rdma.Transport{}, lns: map[string]rdma.Listener{}, conns: make([]rdma.Conn, size), live: make([]atomic.Pointer[connRef], size), making: make([]sync.Mutex, size),
		accepted: make([]chan rdma.Conn, size), done: make(chan struct{})}
	for i := range g.accepted {
		g.accepted[i] = make(chan rdma.Conn, 1)
	}
	g.id = sha256.Sum256([]byte(fmt.Sprintf("shoal coll %s %d", name, size)))
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := g.join(ctx); err != nil {
		g.closeAll()
		return nil, fmt.Errorf("join collective group %q as rank %d of %d: %w", name, rank, size, err)
	}
	return g, nil
}

func (g *Group) join(ctx context.Context) error {
	key := groupKey(g.name, g.rank)
	host := g.opts.Host
	if g.kv != nil {
		// clears a record a dead earlier incarnation left, and tells this rank its address
		if _, err := g.kv.KVDelete(ctx, key); err != nil {
			return err
		}
		if host == "" {
			h, err := g.kv.KVPut(ctx, key+"/probe", nil)
			if err != nil {
				return err
			}
			g.kv.KVDelete(ctx, key+"/probe")
			host = h
		}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	cfg := rdma.Config{Secret: g.opts.Secret, Cluster: g.opts.Cluster, Host: host, Insecure: g.opts.Insecure}
	names := rdma.Names()
	if g.opts.Backend != "auto" {
		names = []string{g.opts.Backend}
	}
	for _, n := range names {
		if !g.opts.Insecure && !rdma.Encrypted(n) {
			g.log.Debug("backend not offered: it does not encrypt and the data plane is encrypted", "backend", n)
			continue
		}
		tr, err := rdma.New(n, cfg)
		if err != nil {
			if errors.Is(err, rdma.ErrNotSupported) || g.opts.Backend == "auto" {
				g.log.Debug("backend unavailable", "backend", n, "error", err)
				if g.opts.Backend == "auto" {
					continue
				}
			}
			return err
		}
		ln, err := tr.Listen(ctx)
		if err != nil {
			if g.opts.Backend == "auto" {
				g.log.Debug("backend cannot listen", "backend", n, "error", err)
				continue
			}
			return err
		}
		g.trs[n], g.lns[n] = tr, ln
		go g.acceptLoop(ln)
	}
	if len(g.trs) == 0 {
		return errors.New("no transport can run here")
	}
	g.token = fmt.Sprintf("%x-%d", sha256.Sum256([]byte(fmt.Sprint(time.Now().UnixNano(), g.rank, host))), g.rank)[:24]
	me := record{Rank: g.rank, Node: g.opts.Node, Addrs: map[string]string{}, Token: g.token}
	for n, ln := range g.lns {
		me.Addrs[n] = ln.Addr()
	}
	g.recs = make([]record, g.size)
	g.recs[g.rank] = me
	if g.size > 1 {
		if g.kv == nil {
			return errors.New("a group of more than one rank needs a rendezvous store")
		}
		b, _ := json.Marshal(me)
		if _, err := g.kv.KVPut(ctx, key, b); err != nil {
			return err
		}
		for r := range g.size {
			if r == g.rank {
				continue
			}
			for {
				left := time.Until(deadline(ctx))
				v, ok, err := g.kv.KVGet(ctx, groupKey(g.name, r), left)
				if err != nil {
					return err
				}
				if !ok {
					return g.missing(ctx, r)
				}
				rec, err := parseRecord(v, r)
				if err != nil {
					return err
				}
				g.recs[r] = rec
				break
			}
		}
	}
	g.setupComms()
	g.forming = true
	defer func() { g.forming = false }()
	// every rank has read every record once all pass this barrier; then records can go
	if err := g.Barrier(ctx); err != nil {
		return err
	}
	if g.kv != nil && g.size > 1 {
		g.kv.KVDelete(ctx, key)
	}
	g.log.Debug("group formed", "backends", g.Backends())
	return nil
}

// missing names the ranks that never published.
func (g *Group) missing(ctx context.Context, first int) error {
	miss := []string{fmt.Sprint(first)}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for r := first + 1; r < g.size; r++ {
		if r == g.rank {
			continue
		}
		if _, ok, err := g.kv.KVGet(qctx, groupKey(g.name, r), 0); err == nil && !ok {
			miss = append(miss, fmt.Sprint(r))
		}
	}
	return fmt.Errorf("ranks %s did not join within %v (did every rank call init_group with the same group name and world size?): %w",
		strings.Join(miss, ", "), g.opts.Timeout, context.DeadlineExceeded)
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Hour)
}

// hello is the first message on every connection: group id (32), rank (4), token (24).
const helloLen = 32 + 4 + 24

func (g *Group) acceptLoop(ln rdma.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-g.done; cancel() }()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
			defer hcancel()
			var h [helloLen]byte
			if err := c.Recv(hctx, h[:]); err != nil {
				c.Close()
				return
			}
			r := int(binary.LittleEndian.Uint32(h[32:]))
			if [32]byte(h[:32]) != g.id || r < 0 || r >= g.size || r == g.rank {
				g.log.Debug("refused a connection for another group or rank", "rank", r)
				c.Close()
				return
			}
			// answer with our token, so a dialer that read a stale record finds out
			var ack [24]byte
			copy(ack[:], g.token)
			if err := c.Send(hctx, ack[:]); err != nil {
				c.Close()
				return
			}
			select {
			case g.accepted[r] <- c:
			default:
				c.Close() // a second connection from the same rank: not ours to use
			}
		}()
	}
}

// choose names the backend for the connection to rank r.
func (g *Group) choose(r int) string {
	if g.opts.Backend != "auto" {
		return g.opts.Backend
	}
	var mine, theirs []string
	for n := range g.recs[g.rank].Addrs {
		mine = append(mine, n)
	}
	for n := range g.recs[r].Addrs {
		theirs = append(theirs, n)
	}
	same := g.recs[r].Node == g.recs[g.rank].Node && g.recs[r].Node != ""
	if g.opts.Node == "" && g.recs[r].Node == "" {
		same = true // no node ids: a one-node setting (tests, shoal bench)
	}
	return rdma.Choose(same, mine, theirs, "", g.opts.Insecure)
}

// conn returns the connection to rank r, making it on first use: the lower rank dials.
func (g *Group) conn(ctx context.Context, r int) (rdma.Conn, error) {
	if p := g.live[r].Load(); p != nil && !g.failed.Load() {
		return p.c, nil
	}
	g.mu.Lock()
	if g.abortErr != nil {
		err := g.abortErr
		g.mu.Unlock()
		return nil, err
	}
	c := g.conns[r]
	g.mu.Unlock()
	if c != nil {
		return c, nil
	}
	g.making[r].Lock()
	defer g.making[r].Unlock()
	g.mu.Lock()
	c = g.conns[r]
	g.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if g.rank < r {
		var err error
		for {
			c, err = g.dial(ctx, r)
			if err == nil || !g.forming || g.kv == nil || ctx.Err() != nil {
				break
			}
			// the record may be a dead earlier incarnation's that the rank has replaced since
			time.Sleep(20 * time.Millisecond)
			v, ok, gerr := g.kv.KVGet(ctx, groupKey(g.name, r), time.Until(deadline(ctx)))
			if gerr != nil || !ok {
				break
			}
			rec, perr := parseRecord(v, r)
			if perr != nil {
				break
			}
			g.recs[r] = rec
		}
		if err != nil {
			return nil, err
		}
	} else {
		t := time.NewTimer(time.Until(deadline(ctx)))
		defer t.Stop()
		select {
		case c = <-g.accepted[r]:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for rank %d to connect: %w", r, ctx.Err())
		case <-t.C:
			return nil, fmt.Errorf("wait for rank %d to connect: %w", r, context.DeadlineExceeded)
		case <-g.done:
			return nil, g.err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.abortErr != nil {
		c.Close()
		return nil, g.abortErr
	}
	g.conns[r] = c
	g.live[r].Store(&connRef{c})
	return c, nil
}

// dial connects to rank r and checks that it is the incarnation whose record this rank read.
func (g *Group) dial(ctx context.Context, r int) (rdma.Conn, error) {
	n := g.choose(r)
	tr := g.trs[n]
	addr := g.recs[r].Addrs[n]
	if tr == nil || addr == "" {
		return nil, fmt.Errorf("rank %d offers no %s address (it offers %v)", r, n, g.recs[r].Addrs)
	}
	c, err := tr.Dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("connect to rank %d over %s: %w", r, n, err)
	}
	var h [helloLen]byte
	copy(h[:32], g.id[:])
	binary.LittleEndian.PutUint32(h[32:], uint32(g.rank))
	copy(h[36:], g.token)
	var ack [24]byte
	if err := c.Send(ctx, h[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("greet rank %d: %w", r, err)
	}
	if err := c.Recv(ctx, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("greet rank %d: %w", r, err)
	}
	if string(ack[:]) != g.recs[r].Token[:min(24, len(g.recs[r].Token))] {
		c.Close()
		return nil, fmt.Errorf("rank %d at %s is another incarnation of the group (stale record)", r, addr)
	}
	return c, nil
}

func (g *Group) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.abortErr != nil {
		return g.abortErr
	}
	return fmt.Errorf("group %q: %w", g.name, net.ErrClosed)
}

// abort fails the group with cause and closes every connection, so that peers blocked on
// this rank fail too.
func (g *Group) abort(cause error) error {
	g.mu.Lock()
	if g.abortErr == nil {
		g.abortErr = fmt.Errorf("%w: rank %d of group %q: %w", ErrAborted, g.rank, g.name, cause)
		g.failed.Store(true)
		g.log.Debug("group aborted", "error", cause)
		g.mu.Unlock()
		g.closeAll()
		g.mu.Lock()
	}
	err := g.abortErr
	g.mu.Unlock()
	return err
}

func (g *Group) closeAll() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.done)
	conns := append([]rdma.Conn(nil), g.conns...)
	g.mu.Unlock()
	for _, ln := range g.lns {
		ln.Close()
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	for _, ch := range g.accepted {
		select {
		case c := <-ch:
			c.Close()
		default:
		}
	}
}

// Close leaves the group: connections and listeners close. Peers' later operations fail.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.abortErr == nil {
		g.abortErr = fmt.Errorf("%w: group %q was closed (destroy_group)", ErrAborted, g.name)
		g.failed.Store(true)
	}
	g.mu.Unlock()
	g.stats.flush(g) // obs: what is left of the counts, to the head
	g.closeAll()
	if c, ok := g.kv.(io.Closer); ok && g.opts.OwnKV {
		c.Close()
	}
	return nil
}

// run runs one collective (of n bytes, for the metrics) under the group's timeout, aborting
// the group when it fails.
func (g *Group) run(ctx context.Context, what string, n int, f func(ctx context.Context) error) error {
	if g.failed.Load() {
		return g.err()
	}
	g.stats.count(g, what, n) // obs: stats.go
	// one context value per group, reused: a collective allocates nothing for its deadline, and
	// reads the clock only once it waits (see deadlineCtx). A Send and a Recv that run at once
	// (two goroutines) each need their own: the second gets a fresh one.
	dc := &g.dctx
	if g.dctxBusy.CompareAndSwap(false, true) {
		defer g.dctxBusy.Store(false)
	} else {
		dc = &deadlineCtx{}
	}
	if d, ok := ctx.Deadline(); !ok {
		dc.Context, dc.timeout = ctx, g.opts.Timeout
		dc.dl.Store(0)
		ctx = dc
	} else if dl := time.Now().Add(g.opts.Timeout); dl.Before(d) {
		dc.Context, dc.timeout = ctx, 0
		dc.dl.Store(dl.UnixNano())
		ctx = dc
	}
	if err := f(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, g.abort(err))
	}
	return nil
}

// deadlineCtx is ctx with a deadline timeout after the operation began but, unlike
// context.WithDeadline, no timer: every blocking step of the transports checks Deadline and Err
// itself. The clock is read when a step first asks (a shm wait asks once it has spun for a few
// microseconds, a socket before it blocks), so an operation that never waits never reads it;
// the timeout then counts from that first wait, a few microseconds after the start at most.
type deadlineCtx struct {
	context.Context
	timeout time.Duration
	dl      atomic.Int64 // unix ns; 0 until first asked
}

func (c *deadlineCtx) deadline() time.Time {
	v := c.dl.Load()
	if v == 0 {
		c.dl.CompareAndSwap(0, time.Now().Add(c.timeout).UnixNano())
		v = c.dl.Load()
	}
	return time.Unix(0, v)
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline(), true }

func (c *deadlineCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if c.dl.Load() == 0 {
		return nil // nobody has waited yet: the operation began a moment ago
	}
	if !time.Now().Before(c.deadline()) {
		return context.DeadlineExceeded
	}
	return nil
}

// setupComms builds the world communicator and, when the group spans nodes with several
// ranks on some node, the hierarchical ones.
func (g *Group) setupComms() {
	all := make([]int, g.size)
	for i := range all {
		all[i] = i
	}
	g.world = &comm{g: g, ranks: all, me: g.rank}
	byNode := map[string][]int{}
	for r, rec := range g.recs {
		byNode[rec.Node] = append(byNode[rec.Node], r)
	}
	multi := false
	for _, rs := range byNode {
		if len(rs) > 1 {
			multi = true
		}
	}
	use := g.opts.Hierarchical == 1 || (g.opts.Hierarchical == 0 && len(byNode) > 1 && multi)
	if !use || g.opts.Hierarchical == -1 {
		return
	}
	mine := byNode[g.recs[g.rank].Node]
	g.local = newComm(g, mine)
	var leaders []int
	for _, rs := range byNode {
		leaders = append(leaders, rs[0])
	}
	sort.Ints(leaders)
	if mine[0] == g.rank {
		g.inter = newComm(g, leaders)
	}
}
