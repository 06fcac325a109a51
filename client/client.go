package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

// Client is a connection to a node agent, as a driver or (inside a worker) as the worker's
// connection. It is safe for concurrent use. One goroutine reads the connection and hands
// answers to the requests waiting for them, keeps the values that READY pushes, and queues
// EXEC messages for the worker loop.
type Client struct {
	conn      *wire.Conn
	log       hclog.Logger
	welcome   *wire.Welcome
	prefix    [8]byte
	worker    bool
	nodeStore *storeConn // this node's object store, when it is not the head node's (store.go)

	counter atomic.Uint32
	seq     atomic.Uint64

	mu       sync.Mutex
	calls    map[uint64]*call
	slots    map[wire.ID]*slot // objects this client holds a reference to
	readyGen chan struct{}     // closed (and replaced) whenever a READY arrives
	execq    []*wire.Task
	execSig  chan struct{} // one token when execq became non-empty
	err      error         // why the connection is gone; set before dead is closed
	lastErr  string        // the last ERROR the agent sent outside any request

	dead       chan struct{}
	readerDone chan struct{}
	closeOnce  sync.Once
}

// call is a request waiting for its answer.
type call struct {
	typ       wire.Type
	ch        chan wire.Frame // buffered; gets the answer
	abandoned bool            // the caller gave up (ctx); the reader cleans up the answer
}

// slot is an object this client holds a reference to: a return value of its own task (ready
// when READY arrives) or an object it put (ready at once).
type slot struct {
	ready chan struct{} // closed when obj is set
	obj   wire.Obj
}

// stored reports whether the object's bytes are in the store rather than in obj.Data.
func (s *slot) stored() bool { return objStored(s.obj) }

func objStored(o wire.Obj) bool { return o.Path != "" || (o.Data == nil && o.Size > 0) }

// InitOption configures Init.
type InitOption func(*initConfig)

type initConfig struct {
	log     hclog.Logger
	addr    string
	secret  string
	noServe bool
}

// WithLogger gives the client a logger (the default logs nothing in a driver, and warnings to
// stderr in a worker).
func WithLogger(l hclog.Logger) InitOption { return func(c *initConfig) { c.log = l } }

// WithAddress connects to addr ("unix:/path" or "tcp:host:port") with secret instead of
// SHOAL_ADDRESS and SHOAL_SECRET. It also makes Init a driver even where SHOAL_WORKER_ID is
// set.
func WithAddress(addr, secret string) InitOption {
	return func(c *initConfig) { c.addr, c.secret, c.noServe = addr, secret, true }
}

// Init connects this process to its shoal cluster.
//
// In a worker (SHOAL_WORKER_ID is set, and WithAddress was not given) it serves the tasks and
// actor calls the agent sends, one at a time, and never returns: the process exits with status
// 0 when the agent closes the connection, and 1, after a message on stderr, when it cannot
// connect.
//
// In a driver it connects to SHOAL_ADDRESS with SHOAL_SECRET (set by `shoal run`, `shoal
// launch` or `eval $(shoal up)`) and returns the Client; the caller closes it.
func Init(opts ...InitOption) (*Client, error) {
	var cfg initConfig
	for _, o := range opts {
		o(&cfg)
	}
	if wid := os.Getenv("SHOAL_WORKER_ID"); wid != "" && !cfg.noServe {
		if cfg.log == nil {
			cfg.log = hclog.New(&hclog.LoggerOptions{Name: "shoal-worker", Level: hclog.Warn, Output: os.Stderr})
		}
		c, err := dial(cfg.log, os.Getenv("SHOAL_ADDRESS"), os.Getenv("SHOAL_SECRET"), "worker", wid)
		if err != nil {
			fmt.Fprintf(os.Stderr, "shoal worker %s: %v\n", wid, err)
			os.Exit(1)
		}
		c.serve()
		os.Exit(0)
	}
	if cfg.log == nil {
		cfg.log = hclog.NewNullLogger()
	}
	if cfg.addr == "" {
		cfg.addr, cfg.secret = os.Getenv("SHOAL_ADDRESS"), os.Getenv("SHOAL_SECRET")
	}
	if cfg.addr == "" {
		return nil, errors.New("connect to shoal: SHOAL_ADDRESS is not set; run the program inside a cluster (shoal run -- PROGRAM) or after eval $(shoal up)")
	}
	if cfg.secret == "" {
		return nil, fmt.Errorf("connect to shoal at %s: SHOAL_SECRET is not set (it is in the session directory's secret file)", cfg.addr)
	}
	return dial(cfg.log, cfg.addr, cfg.secret, "driver", "")
}

func dial(log hclog.Logger, addr, secret, role, workerID string) (*Client, error) {
	if addr == "" || secret == "" {
		return nil, errors.New("connect to shoal: SHOAL_ADDRESS and SHOAL_SECRET must both be set")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program's executable (workers run it): %w", err)
	}
	cwd, _ := os.Getwd()
	conn, w, err := wire.Dial(addr, secret, wire.Auth{Role: role, Lang: "go", PID: os.Getpid(), Exe: exe,
		Cwd: cwd, WorkerID: workerID, Path: []string{}})
	if err != nil {
		return nil, fmt.Errorf("connect to shoal as %s: %w", role, err)
	}
	if len(w.Client) != 8 {
		conn.Close()
		return nil, fmt.Errorf("connect to shoal at %s: %w: the agent gave a client prefix of %d bytes, want 8", addr, wire.ErrCorruptFrame, len(w.Client))
	}
	st, err := dialStore(secret, role, workerID)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &Client{conn: conn, log: log.With("node", w.Node), welcome: w, worker: role == "worker", nodeStore: st,
		calls: map[uint64]*call{}, slots: map[wire.ID]*slot{}, readyGen: make(chan struct{}),
		execSig: make(chan struct{}, 1), dead: make(chan struct{}), readerDone: make(chan struct{})}
	copy(c.prefix[:], w.Client)
	go c.readLoop()
	return c, nil
}

// NodeID returns the id of the node this client is connected to.
func (c *Client) NodeID() string { return c.welcome.Node }

// Close drops every reference this client holds and closes the connection; requests in
// progress fail with ErrClosed. It is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.fail(ErrClosed)
		c.conn.Close()
		<-c.readerDone
		c.nodeStore.close()
	})
	return nil
}

// fail records why the connection is unusable and wakes everybody waiting on it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.dead)
}

// failure returns why the connection is gone.
func (c *Client) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// newID returns a fresh id: the client prefix, a counter and tail (see docs/protocol.md).
func (c *Client) newID(tail uint32) wire.ID {
	var id wire.ID
	copy(id[:8], c.prefix[:])
	binary.BigEndian.PutUint32(id[8:12], c.counter.Add(1))
	binary.BigEndian.PutUint32(id[12:], tail)
	return id
}

// Id tails of docs/protocol.md.
const (
	tailPut   = 0xFFFFFFFF
	tailActor = 0xFFFFFFFE
)

func (c *Client) readLoop() {
	defer close(c.readerDone)
	for {
		f, err := c.conn.Read()
		if err != nil {
			c.mu.Lock()
			last := c.lastErr
			c.mu.Unlock()
			if last != "" {
				err = fmt.Errorf("%w (the agent said: %s)", err, last)
			}
			c.fail(fmt.Errorf("%w: %v", ErrDisconnected, err))
			return
		}
		c.dispatch(f)
	}
}

func (c *Client) dispatch(f wire.Frame) {
	switch {
	case f.Seq != 0:
		c.mu.Lock()
		cl := c.calls[f.Seq]
		delete(c.calls, f.Seq)
		if cl != nil && !cl.abandoned {
			cl.ch <- f
		}
		c.mu.Unlock()
		if cl == nil {
			c.log.Debug("answer to no request", "seq", f.Seq, "type", f.Type)
		} else if cl.abandoned {
			c.discard(cl.typ, f)
		}
	case f.Type == wire.TReady:
		var m wire.Ready
		if err := f.Decode(&m); err != nil {
			c.log.Warn("ignoring a READY message", "error", err)
			return
		}
		c.mu.Lock()
		for _, o := range m.Objs {
			c.readyLocked(o) // objects.go
		}
		close(c.readyGen)
		c.readyGen = make(chan struct{})
		c.mu.Unlock()
	case f.Type == wire.TExec:
		t := new(wire.Task)
		if err := f.Decode(t); err != nil {
			c.log.Error("ignoring an EXEC message", "error", err)
			return
		}
		c.mu.Lock()
		c.execq = append(c.execq, t)
		c.mu.Unlock()
		select {
		case c.execSig <- struct{}{}:
		default:
		}
	case f.Type == wire.TError:
		var e wire.Error
		f.Decode(&e)
		c.log.Warn("the agent reported an error", "code", e.Code, "error", e.Msg)
		c.mu.Lock()
		c.lastErr = e.Code + ": " + e.Msg
		c.mu.Unlock()
	default:
		c.log.Debug("ignoring a message", "type", f.Type)
	}
}

// discard cleans up after an answer nobody waits for any more: a GET answer counts a use of
// each stored object it names, which must be given back.
func (c *Client) discard(t wire.Type, f wire.Frame) {
	if t != wire.TGet || f.Type != wire.TOK {
		return
	}
	var r wire.GetReply
	if f.Decode(&r) != nil {
		return
	}
	var ids []wire.ID
	for _, o := range r.Objs {
		if o.Path != "" {
			ids = append(ids, o.ID)
		}
	}
	if len(ids) > 0 {
		c.conn.Send(wire.TRelease, 0, &wire.IDs{IDs: ids})
	}
}

// send sends a one-way message.
func (c *Client) send(t wire.Type, body any) error {
	if err := c.failure(); err != nil {
		return err
	}
	if err := c.conn.Send(t, 0, body); err != nil {
		if e := c.failure(); e != nil {
			return e
		}
		return fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	return nil
}

// request sends a request and waits for its answer, ctx or the end of the connection. An
// ERROR answer is an *AgentError; a ctx that ends first gives ctx.Err().
func (c *Client) request(ctx context.Context, t wire.Type, body, reply any) error {
	if err := ctx.Err(); err != nil {
		return err // a request given up at once would still leave work behind in the agent
	}
	seq := c.seq.Add(1)
	cl := &call{typ: t, ch: make(chan wire.Frame, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.calls[seq] = cl
	c.mu.Unlock()
	if err := c.conn.Send(t, seq, body); err != nil {
		c.mu.Lock()
		delete(c.calls, seq)
		c.mu.Unlock()
		if e := c.failure(); e != nil {
			return e
		}
		return err
	}
	select {
	case f := <-cl.ch:
		if f.Type == wire.TError {
			var e wire.Error
			if err := f.Decode(&e); err != nil {
				return err
			}
			return &AgentError{Code: e.Code, Msg: e.Msg}
		}
		if reply == nil {
			return nil
		}
		return f.Decode(reply)
	case <-c.dead:
		return c.failure()
	case <-ctx.Done():
		c.mu.Lock()
		if _, waiting := c.calls[seq]; waiting {
			cl.abandoned = true
			c.mu.Unlock()
		} else {
			c.mu.Unlock()
			select {
			case f := <-cl.ch: // answered meanwhile
				c.discard(t, f)
			default:
			}
		}
		return ctx.Err()
	}
}
