package nodeagent

import (
	"fmt"
	"net"
	"strings"

	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// The head node's agent is the object directory of the cluster: its store has an entry for
// every object, with the bytes here or, for an object sealed on another node (PUT_AT), the
// transfer address (Loc) of that node's agent. holders remembers every node that may keep a
// copy, so that freeing an object frees it everywhere (OBJ_FREE).

// startXfer serves this node's store to other nodes' agents, on the address of the TCP
// listener (the network the nodes share).
func (a *Agent) startXfer() error {
	if a.lnTCP == nil {
		return nil
	}
	tr := a.cfg.Transport
	if tr == nil {
		host, _, err := net.SplitHostPort(a.lnTCP.Addr().String())
		if err != nil {
			return err
		}
		if tr, err = rdma.NewTCP(rdma.TCPConfig{Secret: a.cfg.Secret, Host: host, Insecure: a.cfg.InsecureDataPlane}); err != nil {
			return err
		}
	}
	x, err := newXfer(a.log.Named("transfer"), tr, &a.mu, a.store)
	if err != nil {
		return err
	}
	a.xfer = x
	return nil
}

func (a *Agent) closeXfer() {
	if a.xfer != nil {
		a.xfer.close()
	}
}

// XferAddr returns the address other agents pull this node's objects from ("" when none).
func (a *Agent) XferAddr() string {
	if a.xfer == nil {
		return ""
	}
	return a.xfer.Loc()
}

// xferLocFor is the address node nd pulls this node's objects from. When the transfer listener
// listens on every interface (--listen 0.0.0.0, or a node name that does not resolve), its own
// address names no host; nd then gets the address its agent reached this one at, which is on
// a network they share.
func (a *Agent) xferLocFor(nd *node) string {
	loc := a.XferAddr()
	if nd == nil || nd.member == nil {
		return loc
	}
	return reachable(loc, nd.member.conn.Net().LocalAddr())
}

// reachable returns transfer address loc ("name:host:port") with, when its host is unspecified
// (0.0.0.0 or ::), the host of seen instead: an address the peer was reached at, or reached
// this agent from.
func reachable(loc string, seen net.Addr) string {
	name, hp, ok := strings.Cut(loc, ":")
	if !ok || seen == nil {
		return loc
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return loc
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return loc
	}
	sh, _, err := net.SplitHostPort(seen.String())
	if err != nil {
		return loc
	}
	return name + ":" + net.JoinHostPort(sh, port)
}

// handleObjXfer handles FETCH, PUT_AT and NODE_STORE.
func (a *Agent) handleObjXfer(c *client, f wire.Frame) error {
	switch f.Type {
	case wire.TNodeStore:
		var m wire.NodeStore
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if c.member == nil {
			return fmt.Errorf("NODE_STORE from a %s connection; only member agents have stores to announce", c.role)
		}
		c.member.loc = reachable(m.Loc, c.conn.Net().RemoteAddr())
		return nil
	case wire.TPutAt:
		var m wire.PutAt
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if m.Loc == "" && c.worker != nil && c.worker.node != nil {
			m.Loc = c.worker.node.loc
		}
		if m.Loc == "" {
			return fmt.Errorf("PUT_AT of object %s names no node: only a worker on a node with its own store may send it without loc", m.ID)
		}
		if m.Refs == nil {
			m.Refs = []wire.ID{}
		}
		owner := c.id
		if c.worker != nil && c.worker.owns(m.ID) {
			owner = 0
		}
		o := a.store.PutRemote(m.ID, m.Fmt, m.Size, m.Refs, owner, m.Loc)
		if o == nil {
			a.freeAt(m.Loc, m.ID) // nobody wants it (or it is sealed already): drop that copy
			return nil
		}
		a.addHolder(m.ID, m.Loc)
		a.sealed(o)
		return nil
	case wire.TFetch:
		var m wire.Fetch
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.fetch(c, f.Seq, m.ID)
		return nil
	}
	return fmt.Errorf("%w: unknown message type %d", wire.ErrCorruptFrame, f.Type)
}

// fetch answers FETCH: the object's bytes made readable here, pulled from the node that holds
// them when needed. Called with a.mu held.
func (a *Agent) fetch(c *client, seq uint64, id wire.ID) {
	o := a.store.Lookup(id)
	if o == nil || o.Freed() {
		c.conn.Send(wire.TOK, seq, lostObj(id))
		return
	}
	if o.Local() {
		c.conn.Send(wire.TOK, seq, a.localObj(c, o))
		return
	}
	if a.xfer == nil {
		c.conn.Send(wire.TOK, seq, wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("object_lost",
			"object "+id.String()+" lives on another node, and this agent does not listen for object transfers (no TCP listener)")})
		return
	}
	p := a.pullHere(o)
	go func() {
		<-p.done
		a.mu.Lock()
		defer a.mu.Unlock()
		o := a.store.Lookup(id)
		switch {
		case o == nil || o.Freed():
			c.conn.Send(wire.TOK, seq, lostObj(id))
		case p.err != nil || !o.Local():
			msg := "could not pull object " + id.String()
			if p.err != nil {
				msg += ": " + p.err.Error()
			}
			c.conn.Send(wire.TOK, seq, wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData("object_lost", msg)})
		default:
			c.conn.Send(wire.TOK, seq, a.localObj(c, o))
		}
	}()
}

// pullHere starts pulling object o (stored on another node) into this node's store, or joins
// the pull of it in flight. Called with a.mu held; a.xfer must be set.
func (a *Agent) pullHere(o *objstore.Object) *pull {
	id := o.ID
	return a.xfer.pull(id, o.Loc, o.Size, func(owner uint64) (string, int64, error) {
		o := a.store.Lookup(id)
		if o == nil || o.Freed() {
			return "", 0, fmt.Errorf("object %s was freed", id)
		}
		if o.Local() {
			return "", 0, errAlreadyHere
		}
		o, err := a.store.FillRemote(id, owner)
		if err != nil {
			return "", 0, err
		}
		return o.Path, o.Offset, nil
	}, func(owner uint64, err error) {
		if err != nil {
			a.log.Warn("pull object", "object", id.String(), "error", err)
		}
		a.store.Filled(id, owner, err == nil)
	})
}

// pullsFor starts pulling, into this node's store, the objects of ids that a client without a
// store of its own (connected over TCP, not a worker of a member node) is about to get but
// that live only on other nodes: this agent then sends their bytes in its answer, as it does
// for the objects of its own store. nil when there is nothing to pull. Called with a.mu held.
func (a *Agent) pullsFor(c *client, ids []wire.ID) map[wire.ID]*pull {
	if !c.remote || storeNode(c) != nil || a.xfer == nil {
		return nil
	}
	var ps map[wire.ID]*pull
	for _, id := range ids {
		o := a.store.Lookup(id)
		if o == nil || o.Freed() || o.Local() || ps[id] != nil { // large ones are read in parts (remote_driver.go)
			continue
		}
		if ps == nil {
			ps = map[wire.ID]*pull{}
		}
		ps[id] = a.pullHere(o)
	}
	return ps
}

// localObj describes an object whose bytes are here for client c, counting a use when c will
// map them.
func (a *Agent) localObj(c *client, o *objstore.Object) wire.Obj {
	if o.Stored() {
		a.store.Use(o, c.id)
	}
	return o.Obj()
}

// remoteObj describes a stored object for a client on another node that has a store of its
// own (a worker of a member node): where to pull it from. The node is remembered as a holder.
func (a *Agent) remoteObj(nd *node, o *objstore.Object) wire.Obj {
	loc := o.Loc
	if o.Local() {
		loc = a.xferLocFor(nd)
	}
	a.addHolder(o.ID, nd.loc)
	return wire.Obj{ID: o.ID, Fmt: o.Fmt, Size: o.Size, Loc: loc}
}

// storeNode is the node of c when c is a worker there and that node has its own store.
func storeNode(c *client) *node {
	if c.worker == nil || c.worker.node == nil || c.worker.node.member == nil || c.worker.node.loc == "" {
		return nil
	}
	return c.worker.node
}

func (a *Agent) addHolder(id wire.ID, loc string) {
	if loc == "" {
		return
	}
	if a.holders == nil {
		a.holders = map[wire.ID]map[string]bool{}
	}
	h := a.holders[id]
	if h == nil {
		h = map[string]bool{}
		a.holders[id] = h
	}
	h[loc] = true
}

// objFreed tells every node that may hold a copy of a freed object to drop it.
func (a *Agent) objFreed(id wire.ID) {
	a.feed(sched.ObjectGone{Object: sched.ObjectID(id)})
	for loc := range a.holders[id] {
		a.freeAt(loc, id)
	}
	delete(a.holders, id)
	a.actorHandleFreed(id) // actors.go: an actor's last handle
}

func (a *Agent) freeAt(loc string, id wire.ID) {
	for _, n := range a.nodes {
		if n.member != nil && n.alive && n.loc == loc {
			n.member.conn.Send(wire.TObjFree, 0, &wire.IDs{IDs: []wire.ID{id}})
			return
		}
	}
}

// located tells the core where a large sealed object lives, for argument locality (the core
// prefers the node that holds a task's large arguments).
func (a *Agent) located(o *objstore.Object) {
	if o.Size < sched.DefaultLocalityBytes || o.Fmt == wire.FmtError {
		return
	}
	nd := a.local
	if o.Loc != "" && o.Path == "" {
		nd = nil
		for _, n := range a.nodes {
			if n.member != nil && n.alive && n.loc == o.Loc {
				nd = n
			}
		}
	}
	if nd != nil {
		a.feed(sched.ObjectAt{Object: sched.ObjectID(o.ID), Node: nd.cid, Size: o.Size})
	}
}
