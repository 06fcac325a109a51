package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/internal/privdir"
	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/wire"
)

// headOwner holds a member store's copy of an object for the head node's agent, which keeps
// the cluster's references: the copy goes when OBJ_FREE says so (or the store closes).
const headOwner = uint64(1) << 61

// StoreConfig gives a member agent an object store of its own (docs/object-transfer.md).
type StoreConfig struct {
	ClusterID string
	// Dir is the store's directory under /dev/shm; its name must include the node's name,
	// since the network namespaces of a test cluster share one /dev/shm.
	Dir string
	// SessionDir holds the store's Unix socket and spill directory: made (with its parent, the
	// per-user base, when missing) as a private session directory (internal/privdir) that it
	// must not exist, locked while the store lives, removed at the end.
	SessionDir string
	// Memory is the arena size in bytes.
	Memory int64
	// Transport moves objects between nodes (nil: TCP on the member's address).
	Transport rdma.Transport
	// InsecureDataPlane: that TCP moves object bytes in clear (default: inside TLS 1.3).
	InsecureDataPlane bool
}

// memberStore is a member node's object store: local workers create and map objects through
// its Unix socket, and its agent pulls the objects they need from other nodes.
type memberStore struct {
	log     hclog.Logger
	secret  string
	cluster string
	node    string
	dir     string
	sess    *privdir.Session
	sock    string
	mu      sync.Mutex
	store   *objstore.Store
	xfer    *xfer
	ln      net.Listener
	gate    *wire.Gate // connections in their handshake
	closing bool       // set by close: a handshake that ends later is closed at once
	next    uint64
	conns   map[uint64]*wire.Conn
	wg      sync.WaitGroup
	once    sync.Once
	// local runs the plain tasks this node's workers submit (memberlocal.go); nil: none
	local *memberLocal
}

func newMemberStore(log hclog.Logger, secret, node, host string, cfg StoreConfig) (s *memberStore, err error) {
	if cfg.ClusterID == "" || cfg.Dir == "" || cfg.SessionDir == "" {
		return nil, errors.New("[internal error] a member store needs a cluster id, a store directory and a session directory")
	}
	base, err := privdir.Make(filepath.Dir(cfg.SessionDir), privdir.BaseHint)
	if err != nil {
		return nil, err
	}
	sess, err := privdir.NewSession(log.Named("session"), base, filepath.Base(cfg.SessionDir))
	if err != nil {
		return nil, fmt.Errorf("make the store's session directory: %w", err)
	}
	s = &memberStore{log: log, secret: secret, cluster: cfg.ClusterID, node: node, dir: cfg.SessionDir, sess: sess,
		sock: filepath.Join(cfg.SessionDir, "store.sock"), conns: map[uint64]*wire.Conn{}, gate: wire.NewGate(wire.MaxPending)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	// the next start removes it should this agent be killed
	if err := sess.Note(cfg.Dir); err != nil {
		return s, err
	}
	if s.store, err = objstore.New(log.Named("objstore"), cfg.Dir, filepath.Join(cfg.SessionDir, "spill"), cfg.Memory); err != nil {
		return s, err
	}
	tr := cfg.Transport
	if tr == nil {
		if tr, err = rdma.NewTCP(rdma.TCPConfig{Secret: secret, Host: host, Insecure: cfg.InsecureDataPlane}); err != nil {
			return s, err
		}
	}
	if s.xfer, err = newXfer(log.Named("transfer"), tr, &s.mu, s.store); err != nil {
		return s, err
	}
	if s.ln, err = net.Listen("unix", s.sock); err != nil {
		return s, fmt.Errorf("listen on %s: %w", s.sock, err)
	}
	os.Chmod(s.sock, 0o600)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address local workers reach the store at (SHOAL_STORE_ADDRESS).
func (s *memberStore) Addr() string { return "unix:" + s.sock }

// close ends every connection and transfer and removes the store's files.
func (s *memberStore) close() { s.once.Do(s.doClose) }

func (s *memberStore) doClose() {
	if s.ln != nil {
		s.ln.Close()
	}
	s.gate.Close()
	if s.xfer != nil {
		s.xfer.close()
	}
	s.mu.Lock()
	s.closing = true
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.store != nil {
		s.mu.Lock()
		if err := s.store.Close(); err != nil {
			s.log.Warn("remove the object store", "error", err)
		}
		s.mu.Unlock()
	}
	if err := s.sess.Close(); err != nil {
		s.log.Warn("remove the store's session directory", "error", err)
	}
}

// useStored maps object id, sealed here, for client cid (memberlocal.go's LOCAL_GET): a use
// the client RELEASEs.
func (s *memberStore) useStored(id wire.ID, cid uint64) (wire.Obj, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.store.Lookup(id)
	if o == nil || o.State != objstore.Sealed || o.Freed() {
		return wire.Obj{}, false
	}
	s.store.Use(o, cid)
	return o.Obj(), true
}

// free drops the copies the head node's agent freed.
func (s *memberStore) free(ids []wire.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.store.Decref(id, headOwner)
	}
}

func (s *memberStore) stats() wire.StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.Stats()
}

func (s *memberStore) accept() {
	defer s.wg.Done()
	for {
		nc, err := wire.AcceptBackoff(s.ln, func(err error) {
			s.log.Warn("accept failed; waiting before the next", "error", err)
		})
		if err != nil {
			return
		}
		ticket := s.gate.Admit(nc)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(nc, ticket)
		}()
	}
}

// serveConn serves one connection of the store's Unix socket, admitted to the gate with ticket.
func (s *memberStore) serveConn(nc net.Conn, ticket *wire.Ticket) {
	conn, au, err := wire.AcceptGated(nc, ticket, s.secret, s.cluster, func(au *wire.Auth) (*wire.Welcome, error) {
		if au.Role != "worker" && au.Role != "driver" && au.Role != "cli" {
			return nil, fmt.Errorf("unknown client role %q for a node's object store; want worker, driver or cli", au.Role)
		}
		return &wire.Welcome{Node: s.node, Client: newPrefix(), Arena: s.store.ArenaPath(), ArenaSize: s.store.Capacity()}, nil
	})
	if err != nil {
		s.log.Debug("store handshake failed", "error", err)
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.next++
	id := s.next
	s.conns[id] = conn
	s.mu.Unlock()
	conn.SetLimits(wire.Limits{}, func(err error) { // as the head's agent does (sendqueue.go)
		s.log.Warn("disconnecting a client that does not read its messages", "client", id, "role", au.Role, "pid", au.PID, "error", err)
	})
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, id)
		s.store.DropOwner(id)
		s.mu.Unlock()
		if s.local != nil {
			s.local.closedConn(id)
		}
	}()
	for {
		f, err := conn.Read()
		if err != nil {
			return
		}
		if err := s.handle(conn, id, au.WorkerID, f); err != nil {
			conn.SendError(f.Seq, "bad_request", err.Error())
			if errors.Is(err, wire.ErrCorruptFrame) {
				return
			}
		}
	}
}

func (s *memberStore) handle(conn *wire.Conn, cid uint64, worker string, f wire.Frame) error {
	switch f.Type {
	case wire.TLocalSubmit:
		var m wire.Task
		if err := f.Decode(&m); err != nil {
			return err
		}
		r := wire.LocalSubmitReply{Why: "this node runs no tasks of its own"}
		if s.local != nil && worker != "" {
			r = s.local.submit(cid, worker, &m)
		}
		return conn.Send(wire.TOK, f.Seq, &r)
	case wire.TLeaseNext:
		var m wire.LeaseNext
		if err := f.Decode(&m); err != nil {
			return err
		}
		if s.local == nil || worker == "" {
			return conn.Send(wire.TOK, f.Seq, &wire.LeaseEnd{End: true})
		}
		return s.local.next(conn, cid, f.Seq, worker, &m)
	case wire.TLocalGet:
		var m wire.LocalGet
		if err := f.Decode(&m); err != nil {
			return err
		}
		if s.local == nil {
			return conn.Send(wire.TOK, f.Seq, &wire.LocalGetReply{Objs: make([]wire.Obj, len(m.IDs))})
		}
		return s.local.get(conn, cid, f.Seq, &m)
	case wire.TLocalCancel:
		var m wire.LocalCancel
		if err := f.Decode(&m); err != nil {
			return err
		}
		r := wire.LocalCancelReply{}
		if s.local != nil {
			r = s.local.cancel(&m)
		}
		return conn.Send(wire.TOK, f.Seq, &r)
	case wire.TLocalForget:
		var m wire.IDs
		if err := f.Decode(&m); err != nil {
			return err
		}
		if s.local != nil {
			s.local.forget(cid, m.IDs)
		}
		return nil
	case wire.TCreate:
		var m wire.Create
		if err := f.Decode(&m); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// the head node's agent holds the references; this copy lives until OBJ_FREE. An
		// object larger than the whole arena goes to a spill file, as pulled copies do.
		o, err := s.store.CreateAny(m.ID, m.Fmt, m.Size, headOwner, cid)
		if err != nil {
			if errors.Is(err, objstore.ErrFull) {
				return conn.SendError(f.Seq, "store_full", err.Error())
			}
			return err
		}
		return conn.Send(wire.TOK, f.Seq, &wire.CreateReply{Path: o.Path, Offset: o.Offset})
	case wire.TSeal:
		var m wire.One
		if err := f.Decode(&m); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, err := s.store.Seal(m.ID, cid); err != nil {
			return err
		}
		if f.Seq != 0 { // answered, so that the client tells the head only once it is readable
			return conn.Send(wire.TOK, f.Seq, nil)
		}
		return nil
	case wire.TRelease:
		var m wire.IDs
		if err := f.Decode(&m); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range m.IDs {
			s.store.Release(id, cid)
		}
		return nil
	case wire.TFetch:
		var m wire.Fetch
		if err := f.Decode(&m); err != nil {
			return err
		}
		s.fetch(conn, cid, f.Seq, &m)
		return nil
	case wire.TInfo:
		return conn.Send(wire.TOK, f.Seq, &wire.InfoReply{Cluster: s.cluster, Objects: s.stats()})
	}
	return fmt.Errorf("%w: message type %d is not served by a node's object store (send it to the head node's agent)", wire.ErrCorruptFrame, f.Type)
}

// fetch answers FETCH: the object mapped from this node's store, pulled from m.Loc first when
// it is not here.
func (s *memberStore) fetch(conn *wire.Conn, cid, seq uint64, m *wire.Fetch) {
	s.mu.Lock()
	if o := s.store.Lookup(m.ID); o != nil && o.State == objstore.Sealed && !o.Freed() {
		s.store.Use(o, cid)
		conn.Send(wire.TOK, seq, o.Obj())
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	id := m.ID
	p := s.xfer.pull(id, m.Loc, m.Size, func(owner uint64) (string, int64, error) {
		if o := s.store.Lookup(id); o != nil {
			if o.State == objstore.Sealed && !o.Freed() {
				return "", 0, errAlreadyHere
			}
			return "", 0, fmt.Errorf("object %s is being written here by a client", id)
		}
		o, err := s.store.CreateAny(id, m.Fmt, m.Size, headOwner, owner)
		if err != nil {
			return "", 0, err
		}
		return o.Path, o.Offset, nil
	}, func(owner uint64, err error) {
		if err != nil {
			s.log.Warn("pull object", "object", id.String(), "from", m.Loc, "error", err)
			s.store.Abort(id)
			return
		}
		s.store.Seal(id, owner)
	})
	go func() {
		<-p.done
		s.mu.Lock()
		defer s.mu.Unlock()
		o := s.store.Lookup(id)
		if p.err == nil && o != nil && o.State == objstore.Sealed && !o.Freed() {
			s.store.Use(o, cid)
			conn.Send(wire.TOK, seq, o.Obj())
			return
		}
		kind, msg := "object_freed", "object "+id.String()+" was freed while it was pulled to node "+s.node
		if p.err != nil {
			kind, msg = "object_lost", "could not pull object "+id.String()+" to node "+s.node+": "+p.err.Error()
		}
		conn.Send(wire.TOK, seq, wire.Obj{ID: id, Fmt: wire.FmtError, Data: errorData(kind, msg)})
	}()
}
