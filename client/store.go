package client

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/shoal-hpc/shoal/wire"
)

// storeConn is a worker's connection to its own node's object store, on a node other than
// the head node (SHOAL_STORE_ADDRESS, docs/object-transfer.md): objects are created in and
// mapped from that store, while everything else goes to the head node's agent. Requests are
// answered in order, one at a time.
type storeConn struct {
	mu      sync.Mutex
	conn    *wire.Conn
	welcome *wire.Welcome
	seq     uint64
}

// dialStore connects to the node's store when the worker was started with one.
func dialStore(secret, role, workerID string) (*storeConn, error) {
	addr := os.Getenv("SHOAL_STORE_ADDRESS")
	if addr == "" || role != "worker" {
		return nil, nil
	}
	conn, w, err := wire.Dial(addr, secret, wire.Auth{Role: role, Lang: "go", PID: os.Getpid(), WorkerID: workerID, Path: []string{}})
	if err != nil {
		return nil, fmt.Errorf("connect to this node's object store at %s: %w", addr, err)
	}
	return &storeConn{conn: conn, welcome: w}, nil
}

func (s *storeConn) call(t wire.Type, body, reply any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.conn.Call(t, s.seq, body, reply)
}

func (s *storeConn) close() {
	if s != nil {
		s.conn.Close()
	}
}

// createHere writes an object into this node's store (CREATE, the bytes, SEAL, each answered)
// and records it with the head node's agent (PUT_AT).
func (c *Client) createHere(id wire.ID, data []byte, refs []wire.ID) error {
	var r wire.CreateReply
	if err := c.nodeStore.call(wire.TCreate, &wire.Create{ID: id, Fmt: wire.FmtMsgpack, Size: int64(len(data)), Refs: refs}, &r); err != nil {
		return fmt.Errorf("reserve room in this node's object store: %w", err)
	}
	werr := writeAt(r.Path, r.Offset, data)
	// sealed before the head hears of it, so that another node's pull finds it
	if err := c.nodeStore.call(wire.TSeal, &wire.One{ID: id}, nil); err != nil {
		return fmt.Errorf("seal object %s in this node's object store: %w", id, err)
	}
	if werr != nil {
		return fmt.Errorf("write %d bytes into the object store: %w", len(data), werr)
	}
	return c.send(wire.TPutAt, &wire.PutAt{ID: id, Fmt: wire.FmtMsgpack, Size: int64(len(data)), Refs: refs})
}

// localize turns an object that lives on another node ({id, fmt, size, loc}) into one mapped
// from this node's store, which pulls it first (FETCH). It returns the object and a function
// that gives its use back.
func (c *Client) localize(ctx context.Context, o wire.Obj) (wire.Obj, func(), error) {
	var r wire.Obj
	m := &wire.Fetch{ID: o.ID, Fmt: o.Fmt, Size: o.Size, Loc: o.Loc}
	var err error
	release := func() { c.send(wire.TRelease, &wire.IDs{IDs: []wire.ID{o.ID}}) }
	if c.nodeStore != nil {
		err = c.nodeStore.call(wire.TFetch, m, &r)
		release = func() { c.nodeStore.conn.Send(wire.TRelease, 0, &wire.IDs{IDs: []wire.ID{o.ID}}) }
	} else {
		err = c.request(ctx, wire.TFetch, m, &r)
	}
	if err != nil {
		return o, nil, fmt.Errorf("fetch object %s from another node: %w", o.ID, err)
	}
	if r.Path == "" {
		return r, func() {}, nil // an error object (say, object_lost)
	}
	return r, release, nil
}
