package nodeagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/wire"
)

// Object transfer between the stores of two nodes (docs/object-transfer.md).
//
// Every agent (the head node's and each member) serves its store's sealed objects on a
// listener of an rdma.Transport, and pulls objects it lacks from the agent that holds them:
//
//	FETCH ──> pull(id) ──> wait for room ──> reserve (arena, or spill) ──> pieces of 8 MiB:
//	      pullLanes pooled connections to the holder, each with up to pullDepth requests
//	      REQ{id, off, len} in flight ──> HDR{size, fmt} + the bytes, straight into the mapping
//	      ──> seal here ──> answer every FETCH of id that waited
//
// Several objects are pulled at once (up to pullSlots); a second FETCH of an object already on
// its way waits for the same pull. Flow control against the store's free memory: a pull
// reserves its room before any byte moves; when the object does not fit the arena's free room
// while other pulls are in flight, it waits for one of them to end, and then the store spills
// least recently used objects (or, failing that, the object goes to a spill file). Only then
// are pieces requested, so every byte in flight has its place, and at most pullWindow pieces
// are in flight on the whole node (pullWindow x 8 MiB of socket buffers and holder reads). A
// pull never fails for lack of room, and a failed one says why.
//
// On a connection (fixed sizes, big-endian): REQ is the 16-byte id, off (int64) and len
// (int64); the answer is HDR, size (int64, -1 when the object is not here) and fmt (int64),
// then, when 0 <= off < off+len <= size, the len bytes as one message; otherwise nothing more. Requests on one connection are
// answered in order, so a puller keeps several in flight. The transport authenticates both
// ends with the cluster secret.

const (
	// pullSlots is how many objects one node pulls at the same time.
	pullSlots = 4
	// pullLanes is how many connections one object is pulled over: each is striped over the
	// transport's streams (4 for TCP), and independent connections keep one slow stream from
	// holding up the others at the end of every piece.
	pullLanes = 2
	// pullDepth is how many requests one connection keeps in flight, so the holder starts the
	// next piece while the last bytes of the one before are still on their way.
	pullDepth = 2
	// pullWindow is how many pieces may be in flight on one node, over all its pulls.
	pullWindow = 8
	// defaultPiece is the size of one request (and of the message that answers it).
	defaultPiece = 8 << 20
	// popBlock is the unit in which the arena's pages are faulted in before a pull writes them.
	popBlock = 2 << 20
	// xferOwnerBase numbers the store uses of transfers, apart from connection ids.
	xferOwnerBase = uint64(1) << 62
	// pullTries and pullRetryFor bound how a pull whose connection failed (a lossy or briefly
	// cut link: a handshake past its timeout, a reset) is tried again: pullTries in all, the
	// n-th after n*pullRetryWait, none begun pullRetryFor after the first (chaos seed 2076:
	// 27 % packet loss for 8 s made two handshakes miss their 10 s, and the object was taken
	// for lost while its holder was alive).
	pullTries     = 4
	pullRetryWait = 500 * time.Millisecond
	pullRetryFor  = 20 * time.Second
)

// pullFinal is an answer of the holder that another try would not change (it no longer holds
// the object, or holds another size).
type pullFinal struct{ error }

// errAlreadyHere is returned by a reserve function when the object arrived meanwhile.
var errAlreadyHere = errors.New("object already here")

// xfer serves and pulls one store's objects.
type xfer struct {
	log    hclog.Logger
	tr     rdma.Transport
	ln     rdma.Listener
	mu     *sync.Mutex // guards store (the agent's lock)
	store  *objstore.Store
	piece  int64
	slots  chan struct{}
	window chan struct{} // one token per piece in flight
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	owner  atomic.Uint64

	pmu   sync.Mutex
	pulls map[wire.ID]*pull
	idle  map[string][]rdma.Conn
	conns map[rdma.Conn]bool // open connections, closed on close
	room  chan struct{}      // closed (and replaced) when a pull ends
	nbusy int                // pulls holding reserved room

	arenaPath string
	arena     []byte // the whole arena, mapped once (see view)
	popMu     sync.Mutex
	populated []uint64 // bit i: the arena's pages of block i (popBlock bytes) are faulted in

	sent, received atomic.Int64 // object bytes served to and pulled from other agents (obs)
}

// pull is one object on its way here; done is closed when err is final.
type pull struct {
	done chan struct{}
	err  error
}

// newXfer starts serving store on a listener of tr.
func newXfer(log hclog.Logger, tr rdma.Transport, mu *sync.Mutex, store *objstore.Store) (*xfer, error) {
	ctx, stop := context.WithCancel(context.Background())
	ln, err := tr.Listen(ctx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("listen for object transfers over %s: %w", tr.Name(), err)
	}
	x := &xfer{log: log, tr: tr, ln: ln, mu: mu, store: store, piece: defaultPiece,
		slots: make(chan struct{}, pullSlots), window: make(chan struct{}, pullWindow), ctx: ctx, stop: stop,
		pulls: map[wire.ID]*pull{}, idle: map[string][]rdma.Conn{}, conns: map[rdma.Conn]bool{},
		room: make(chan struct{})}
	x.arenaPath = store.ArenaPath()
	if n := store.Capacity(); n > 0 {
		if x.arena, err = mapFile(x.arenaPath, 0, n, true); err != nil {
			ln.Close()
			stop()
			return nil, fmt.Errorf("map the object store arena for transfers: %w", err)
		}
		x.populated = make([]uint64, (n+popBlock-1)/popBlock/64+1)
	}
	x.wg.Add(1)
	go x.accept()
	return x, nil
}

// Loc is the address other agents pull this store's objects from.
func (x *xfer) Loc() string { return x.tr.Name() + ":" + x.ln.Addr() }

// close stops serving, fails pulls in flight and closes every connection.
func (x *xfer) close() {
	x.pmu.Lock()
	x.stop() // under pmu: no pull starts after this
	x.pmu.Unlock()
	x.ln.Close()
	x.pmu.Lock()
	for c := range x.conns {
		c.Close()
	}
	x.idle = map[string][]rdma.Conn{}
	x.pmu.Unlock()
	x.wg.Wait()
	if x.arena != nil {
		unix.Munmap(x.arena)
		x.arena = nil
	}
}

func (x *xfer) track(c rdma.Conn, open bool) bool {
	x.pmu.Lock()
	defer x.pmu.Unlock()
	if open && x.ctx.Err() != nil {
		c.Close()
		return false
	}
	if open {
		x.conns[c] = true
	} else {
		delete(x.conns, c)
	}
	return true
}

func (x *xfer) accept() {
	defer x.wg.Done()
	for {
		c, err := x.ln.Accept(x.ctx)
		if err != nil {
			if x.ctx.Err() == nil {
				x.log.Warn("object transfer listener stopped", "error", err)
			}
			return
		}
		if !x.track(c, true) {
			return
		}
		x.wg.Add(1)
		go x.serve(c)
	}
}

// serve answers pull requests on c, one after the other, until the peer closes it.
func (x *xfer) serve(c rdma.Conn) {
	defer x.wg.Done()
	defer x.track(c, false)
	defer c.Close()
	req := make([]byte, 32)
	hdr := make([]byte, 16)
	for {
		if err := c.Recv(x.ctx, req); err != nil {
			return
		}
		id, roff, rlen, err := parseXferReq(req)
		if err != nil {
			return
		}
		owner := xferOwnerBase + x.owner.Add(1)
		size, format, path, off := int64(-1), 0, "", int64(0)
		x.mu.Lock()
		if o := x.store.Lookup(id); o != nil && !o.Freed() && o.State == objstore.Sealed && o.Stored() && o.Local() {
			x.store.Use(o, owner)
			size, format, path, off = o.Size, o.Fmt, o.Path, o.Offset
		}
		x.mu.Unlock()
		binary.BigEndian.PutUint64(hdr, uint64(size))
		binary.BigEndian.PutUint64(hdr[8:], uint64(format))
		err = c.Send(x.ctx, hdr)
		if err == nil && xferRange(size, roff, rlen) {
			err = x.sendBytes(c, path, off+roff, rlen)
		}
		if size >= 0 {
			x.mu.Lock()
			x.store.Release(id, owner)
			x.mu.Unlock()
		}
		if err != nil {
			x.log.Debug("serve object transfer", "object", id.String(), "error", err)
			return
		}
	}
}

// xferReqLen is the size of a pull request: the object's id, the offset and the length.
const xferReqLen = 32

// parseXferReq reads a pull request (from an authenticated agent of the cluster, but still
// outside input to this one).
func parseXferReq(req []byte) (id wire.ID, off, n int64, err error) {
	if len(req) != xferReqLen {
		return id, 0, 0, fmt.Errorf("object transfer request of %d bytes, want %d", len(req), xferReqLen)
	}
	copy(id[:], req)
	return id, int64(binary.BigEndian.Uint64(req[16:])), int64(binary.BigEndian.Uint64(req[24:])), nil
}

// xferRange reports whether a request for n bytes at off lies inside an object of size bytes
// (size -1: not here); only then are bytes sent.
func xferRange(size, off, n int64) bool {
	return size >= 0 && off >= 0 && n > 0 && off <= size && n <= size-off
}

// mapFile maps size bytes of path at off (page aligned).
func mapFile(path string, off, size int64, write bool) ([]byte, error) {
	flag, prot := os.O_RDONLY, unix.PROT_READ
	if write {
		flag, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), off, int(size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes of %s at %d: %w", size, path, off, err)
	}
	return m, nil
}

func (x *xfer) sendBytes(c rdma.Conn, path string, off, size int64) error {
	m, _, done, err := x.view(path, off, size, false)
	if err != nil {
		return err
	}
	defer done()
	err = c.Send(x.ctx, m)
	if err == nil {
		x.sent.Add(size)
	}
	return err
}

// pull brings object id of size bytes here from the agent at loc, or joins the pull of it
// already in flight. reserve (called with x.mu held, given a use owner) makes room and returns
// where to write, or errAlreadyHere; finish (with x.mu held) seals or drops the room. The
// caller waits on the result's done.
func (x *xfer) pull(id wire.ID, loc string, size int64,
	reserve func(owner uint64) (path string, off int64, err error), finish func(owner uint64, err error)) *pull {
	x.pmu.Lock()
	if p := x.pulls[id]; p != nil {
		x.pmu.Unlock()
		return p
	}
	p := &pull{done: make(chan struct{})}
	if x.ctx.Err() != nil {
		x.pmu.Unlock()
		p.err = fmt.Errorf("pull object %s: the agent is closing", id)
		close(p.done)
		return p
	}
	x.pulls[id] = p
	x.wg.Add(1) // close waits for the pull: it writes into the arena mapping
	x.pmu.Unlock()
	go func() {
		defer x.wg.Done()
		p.err = x.run(id, loc, size, reserve, finish)
		x.pmu.Lock()
		delete(x.pulls, id)
		x.pmu.Unlock()
		close(p.done)
	}()
	return p
}

func (x *xfer) run(id wire.ID, loc string, size int64,
	reserve func(uint64) (string, int64, error), finish func(uint64, error)) error {
	select {
	case x.slots <- struct{}{}:
	case <-x.ctx.Done():
		return fmt.Errorf("pull object %s: the agent is closing", id)
	}
	defer func() { <-x.slots }()
	owner := xferOwnerBase + x.owner.Add(1)
	// Wait for room: while the object does not fit the arena's free room and other pulls hold
	// theirs, one of them ending may make room without spilling anything.
	var path string
	var off int64
	for {
		x.mu.Lock()
		fits := size <= x.store.Free()
		x.pmu.Lock()
		busy, room := x.nbusy, x.room
		if fits || busy == 0 {
			var err error
			path, off, err = reserve(owner)
			if err == nil {
				x.nbusy++
			}
			x.pmu.Unlock()
			x.mu.Unlock()
			if errors.Is(err, errAlreadyHere) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("make room for object %s of %d bytes: %w", id, size, err)
			}
			break
		}
		x.pmu.Unlock()
		x.mu.Unlock()
		select {
		case <-room:
		case <-x.ctx.Done():
			return fmt.Errorf("pull object %s: the agent is closing", id)
		}
	}
	t0 := time.Now()
	err := x.fetchInto(id, loc, size, path, off)
	for try := 1; err != nil && try < pullTries && !errors.As(err, new(pullFinal)) && time.Since(t0) < pullRetryFor; try++ {
		x.log.Warn("pull object: trying again", "object", id.String(), "from", loc, "try", try+1, "error", err)
		select {
		case <-time.After(time.Duration(try) * pullRetryWait):
		case <-x.ctx.Done():
		}
		if x.ctx.Err() != nil {
			break
		}
		err = x.fetchInto(id, loc, size, path, off)
	}
	if err == nil {
		x.received.Add(size)
		dt := time.Since(t0).Seconds()
		x.log.Debug("pulled object", "object", id.String(), "from", loc, "bytes", size, "seconds", dt, "GB/s", float64(size)/dt/1e9)
	}
	x.mu.Lock()
	finish(owner, err)
	x.mu.Unlock()
	x.pmu.Lock()
	x.nbusy--
	close(x.room)
	x.room = make(chan struct{})
	x.pmu.Unlock()
	return err
}

func (x *xfer) dial(loc string) (rdma.Conn, error) {
	x.pmu.Lock()
	if cs := x.idle[loc]; len(cs) > 0 {
		c := cs[len(cs)-1]
		x.idle[loc] = cs[:len(cs)-1]
		x.pmu.Unlock()
		return c, nil
	}
	x.pmu.Unlock()
	name, addr, ok := strings.Cut(loc, ":")
	if !ok || name != x.tr.Name() {
		return nil, fmt.Errorf("transfer address %q is not a %s address; every node of a cluster must use the same transport", loc, x.tr.Name())
	}
	c, err := x.tr.Dial(x.ctx, addr)
	if err != nil {
		return nil, err
	}
	if !x.track(c, true) {
		return nil, fmt.Errorf("the agent is closing")
	}
	return c, nil
}

func (x *xfer) putIdle(loc string, c rdma.Conn) {
	x.pmu.Lock()
	defer x.pmu.Unlock()
	if x.ctx.Err() != nil || len(x.idle[loc]) >= pullSlots*pullLanes {
		delete(x.conns, c)
		c.Close()
		return
	}
	x.idle[loc] = append(x.idle[loc], c)
}

// fetchInto reads object id from the agent at loc into path at off: its pieces are requested
// over up to pullLanes connections, each keeping up to pullDepth requests in flight.
func (x *xfer) fetchInto(id wire.ID, loc string, size int64, path string, off int64) error {
	var m []byte
	prep, done := func(int64, int64) {}, func() {}
	if size > 0 {
		var err error
		if m, prep, done, err = x.view(path, off, size, true); err != nil {
			return err
		}
	}
	defer done()
	pieces := max(1, (size+x.piece-1)/x.piece)
	lanes := int(min(pullLanes, pieces))
	ctx, cancel := context.WithCancel(x.ctx)
	defer cancel()
	var next atomic.Int64
	errs := make([]error, lanes)
	var wg sync.WaitGroup
	for i := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = x.lane(ctx, id, loc, size, m, prep, &next, pieces); errs[i] != nil {
				cancel() // the other lanes stop at their next piece
			}
		}()
	}
	wg.Wait()
	// the first error that is not another lane's cancellation says what went wrong
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// lane pulls pieces of object id (the next one not taken: next) over one connection to loc
// until none is left. Its sender keeps up to pullDepth requests in flight, each holding a
// token of the node's window until its bytes are here.
func (x *xfer) lane(ctx context.Context, id wire.ID, loc string, size int64, m []byte,
	prep func(a, b int64), next *atomic.Int64, pieces int64) (err error) {
	c, err := x.dial(loc)
	if err != nil {
		return fmt.Errorf("connect to %s to pull object %s: %w", loc, id, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan int64, pullDepth-1) // requests sent (or being sent), oldest first
	serr := make(chan error, 1)
	go func() {
		defer close(sent)
		req := make([]byte, 32)
		copy(req, id[:])
		for {
			p := next.Add(1) - 1
			if p >= pieces {
				serr <- nil
				return
			}
			select {
			case x.window <- struct{}{}:
			case <-ctx.Done():
				serr <- ctx.Err()
				return
			}
			select {
			case sent <- p:
			case <-ctx.Done():
				<-x.window
				serr <- ctx.Err()
				return
			}
			a := p * x.piece
			binary.BigEndian.PutUint64(req[16:], uint64(a))
			binary.BigEndian.PutUint64(req[24:], uint64(min(x.piece, size-a)))
			if err := c.Send(ctx, req); err != nil {
				c.Close() // the receiver waits for no answer to it
				serr <- fmt.Errorf("ask %s for object %s: %w", loc, id, err)
				return
			}
		}
	}()
	defer func() {
		if err != nil {
			cancel()
			c.Close() // ends a Send in flight; its answers are not read
		}
		for range sent {
			<-x.window
		}
		if serr := <-serr; err == nil {
			err = serr
		}
		if err == nil {
			x.putIdle(loc, c)
		} else {
			x.track(c, false)
			c.Close()
		}
	}()
	hdr := make([]byte, 16)
	for p := range sent {
		err := x.recvPiece(ctx, c, hdr, id, loc, size, m, prep, p)
		<-x.window
		if err != nil {
			return err
		}
	}
	return nil
}

// recvPiece reads the answer to the request of piece p into m.
func (x *xfer) recvPiece(ctx context.Context, c rdma.Conn, hdr []byte, id wire.ID, loc string, size int64,
	m []byte, prep func(a, b int64), p int64) error {
	if err := c.Recv(ctx, hdr); err != nil {
		return fmt.Errorf("ask %s for object %s: %w", loc, id, err)
	}
	got := int64(binary.BigEndian.Uint64(hdr))
	if got < 0 {
		return pullFinal{fmt.Errorf("object %s is no longer at %s (freed, or its node lost it)", id, loc)}
	}
	if got != size {
		return pullFinal{fmt.Errorf("object %s at %s has %d bytes, the directory says %d", id, loc, got, size)}
	}
	a, b := p*x.piece, min((p+1)*x.piece, size)
	if a >= b {
		return nil
	}
	prep(a, b)
	if err := c.Recv(ctx, m[a:b]); err != nil {
		return fmt.Errorf("pull object %s from %s: %w", id, loc, err)
	}
	return nil
}

// view returns size bytes of path at off, a function that makes a sub-range [a, b) ready to be
// written (for write views), and a function to call when done with them. Ranges of the arena
// come from one mapping of the whole arena that the agent keeps, so their page tables are made
// once: prep faults in the blocks of the arena no pull has written before, with one call per
// run of them, instead of a fault per page as the copy goes. Other files (spill files) are
// mapped for the call; prep faults in the whole range (each piece is written once).
func (x *xfer) view(path string, off, size int64, write bool) ([]byte, func(a, b int64), func(), error) {
	if x.arena != nil && path == x.arenaPath {
		return x.arena[off : off+size], func(a, b int64) { x.populate(off+a, off+b) }, func() {}, nil
	}
	skip := off % objstore.PageSize // mappings start at a page
	mm, err := mapFile(path, off-skip, size+skip, write)
	if err != nil {
		return nil, nil, nil, err
	}
	if !write {
		unix.Madvise(mm, unix.MADV_POPULATE_READ) // Linux 5.14+; without it the pages fault in one by one
	}
	prep := func(a, b int64) {
		a = (skip + a) / objstore.PageSize * objstore.PageSize
		unix.Madvise(mm[a:skip+b], unix.MADV_POPULATE_WRITE)
	}
	return mm[skip:], prep, func() { unix.Munmap(mm) }, nil
}

// populate faults in the arena's blocks in [a, b) that are not yet.
func (x *xfer) populate(a, b int64) {
	var runs [][2]int64
	x.popMu.Lock()
	for i := a / popBlock; i*popBlock < b; i++ {
		if x.populated[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		x.populated[i/64] |= 1 << (i % 64)
		if n := len(runs); n > 0 && runs[n-1][1] == i {
			runs[n-1][1] = i + 1
		} else {
			runs = append(runs, [2]int64{i, i + 1})
		}
	}
	x.popMu.Unlock()
	for _, r := range runs {
		unix.Madvise(x.arena[r[0]*popBlock:min(r[1]*popBlock, int64(len(x.arena)))], unix.MADV_POPULATE_WRITE)
	}
}
