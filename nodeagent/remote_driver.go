package nodeagent

import (
	"errors"
	"fmt"

	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/wire"
)

// Objects of any size for a client without a store of its own: a driver outside the
// allocation (docs/remote-drivers.md), connected over TCP to the head node's agent. It cannot
// map the store, and one message holds at most wire.MaxFrame bytes, so:
//
//   - a put of more than partsAbove bytes arrives in PUT_PART messages in order: the first
//     (offset 0) creates the object, each is written at its offset, the last seals it; a store
//     that has no room makes it a store_full error object, as a PUT does, and drops the rest;
//   - a get of a stored object of more than partsAbove bytes answers a descriptor with Parts
//     set and counts a use by the client (the object stays put, as a mapped one does); the
//     client reads it with READ_PART requests and then RELEASEs it.
//
// Both run in the connection's own order under the agent's lock like PUT and GET; reading the
// bytes of a part happens outside it.

// partsAbove: larger objects travel in parts to and from a client without a store; maxPart
// bounds one part (the SDK sends 64 MiB).
const (
	partsAbove = 64 << 20
	maxPart    = 128 << 20
)

// inParts describes o, stored here, to client c, which reads it in parts.
func (a *Agent) inParts(c *client, o *objstore.Object) wire.Obj {
	a.store.Use(o, c.id)
	return wire.Obj{ID: o.ID, Fmt: o.Fmt, Size: o.Size, Parts: true}
}

func (a *Agent) handleParts(c *client, f wire.Frame) error {
	if !c.remote || storeNode(c) != nil {
		return fmt.Errorf("message %d is for clients without a store of their own (connected over TCP); this one maps the store", f.Type)
	}
	switch f.Type {
	case wire.TPutPart:
		var m wire.PutPart
		if err := f.Decode(&m); err != nil {
			return err
		}
		if m.Size <= 0 || m.Off < 0 || int64(len(m.Data)) > maxPart || m.Off+int64(len(m.Data)) > m.Size {
			return fmt.Errorf("PUT_PART of object %s: %d bytes at offset %d of %d (at most %d a part, within the object)", m.ID, len(m.Data), m.Off, m.Size, maxPart)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if m.Off == 0 {
			_, err := a.store.Create(m.ID, m.Fmt, m.Size, m.Refs, c.id, c.id)
			if errors.Is(err, objstore.ErrFull) {
				if o := a.store.PutInline(m.ID, wire.FmtError, errorData("store_full", err.Error()), nil, c.id); o != nil {
					a.storedFor(o, m.Fmt, c.id)
				}
				return nil
			}
			if err != nil {
				return err
			}
		}
		o := a.store.Lookup(m.ID)
		if o == nil || o.Freed() || o.State == objstore.Sealed {
			return nil // it became a store_full error object, or every reference went
		}
		if o.Size != m.Size {
			return fmt.Errorf("PUT_PART of object %s says %d bytes, created with %d", m.ID, m.Size, o.Size)
		}
		if err := writeStored(o.Path, o.Offset+m.Off, m.Data); err != nil {
			a.store.Abort(m.ID)
			return err
		}
		if !m.Last {
			return nil
		}
		return a.seal(m.ID, c.id)
	case wire.TReadPart:
		var m wire.ReadPart
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		o := a.store.Lookup(m.ID)
		if o == nil || o.Freed() || !o.Local() || !o.Stored() || o.State != objstore.Sealed {
			a.mu.Unlock()
			return c.conn.SendError(f.Seq, "not_found", fmt.Sprintf("object %s is not stored on this node to be read in parts; get it again", m.ID))
		}
		if m.Off < 0 || m.Len <= 0 || m.Len > maxPart || m.Off+m.Len > o.Size {
			a.mu.Unlock()
			return fmt.Errorf("READ_PART of object %s: %d bytes at offset %d of %d (at most %d a part)", m.ID, m.Len, m.Off, o.Size, maxPart)
		}
		path, off := o.Path, o.Offset
		a.mu.Unlock()
		b, err := readStored(path, off+m.Off, m.Len)
		if err != nil {
			return c.conn.SendError(f.Seq, "object_lost", err.Error())
		}
		return c.conn.Send(wire.TOK, f.Seq, &wire.PartReply{Data: b})
	}
	return fmt.Errorf("%w: unknown message type %d", wire.ErrCorruptFrame, f.Type)
}
