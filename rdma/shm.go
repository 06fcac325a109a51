package rdma

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/wire"
)

// ShmConfig configures the shared-memory transport.
type ShmConfig struct {
	// Secret is the cluster secret that both ends prove they know. Required.
	Secret string
	// Cluster is the cluster id; it names the rendezvous socket and the shm files, so two
	// clusters on one node never collide. Required.
	Cluster string
	// Dir is where the ring files are made (0 = /dev/shm).
	Dir string
	// Ring is the size of each direction's ring buffer in bytes, a power of two (0 = 4 MiB).
	Ring int
	// SingleCopy moves messages of 256 KiB and more by the receiver reading the sender's
	// memory (process_vm_readv) instead of through the ring. Off by default: on the machine of
	// docs/benchmarks.md the ring's two copies were 3-4x faster than the kernel's one.
	SingleCopy bool
}

// Shm is the shared-memory transport for peers on one node. A connection is a pair of
// single-producer/single-consumer ring buffers in one file of Dir, mapped by both processes;
// bytes move by memcpy into and out of the rings, never through the kernel's socket path.
// Waits spin briefly, yield, then sleep on a futex in the shared page.
//
// The connection is set up over an abstract Unix socket named after the cluster (no file),
// authenticated with the cluster secret. The dialer creates the ring file, passes its
// descriptor over the socket (SCM_RIGHTS) and removes the file at once, so /dev/shm holds it
// for milliseconds and nothing is left behind even when a process is killed. The socket stays
// open for the connection's life: its end-of-file tells a peer that the other died.
type Shm struct{ cfg ShmConfig }

var _ Transport = (*Shm)(nil)

// NewShm returns the shared-memory transport. It returns an error wrapping ErrNotSupported
// when Dir is not a writable directory that can be mapped shared.
func NewShm(cfg ShmConfig) (*Shm, error) {
	if cfg.Secret == "" {
		return nil, errors.New("new shm transport: no cluster secret (set SHOAL_SECRET)")
	}
	if cfg.Cluster == "" {
		return nil, errors.New("new shm transport: no cluster id (set SHOAL_CLUSTER)")
	}
	if cfg.Dir == "" {
		cfg.Dir = "/dev/shm"
	}
	if cfg.Ring <= 0 {
		cfg.Ring = 4 << 20
	}
	if cfg.Ring&(cfg.Ring-1) != 0 || cfg.Ring < 4096 {
		return nil, fmt.Errorf("new shm transport: ring size %d is not a power of two of at least 4096", cfg.Ring)
	}
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("shm transport: %w (needs Linux futexes and abstract sockets)", ErrNotSupported)
	}
	if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("shm transport: directory %s: %w", cfg.Dir, ErrNotSupported)
	}
	return &Shm{cfg: cfg}, nil
}

// Name returns "shm".
func (s *Shm) Name() string { return "shm" }

const (
	shmHdr        = 4096 // per ring: head at 0, tail at 64, waiter flags at 128 and 192
	shmOffHead    = 0
	shmOffTail    = 64
	shmOffRWait   = 128                   // the consumer sleeps on head
	shmOffWWait   = 192                   // the producer sleeps on tail
	shmOffAck     = 256                   // the consumer's answer to a single-copy message (its seq, maybe | shmAckFail)
	shmOffAckWait = 320                   // the producer sleeps on ack
	shmSpinFor    = 50 * time.Microsecond // the most a wait spins before it sleeps
	shmSpinMin    = 500 * time.Nanosecond
	shmCMAMin     = 256 << 10 // messages from this size are read straight from the sender
	shmCMAFlag    = 1 << 63
	shmAckFail    = 1 << 63
	shmYieldFor   = time.Millisecond // after the spin, yield the CPU until then, then sleep
	shmSleepSlice = 10 * time.Millisecond
	shmPiece      = 256 << 10
	shmLabelC     = "shoal/2 rdma-shm client"
	shmLabelS     = "shoal/2 rdma-shm server"
	// shmMaxHandshakes bounds the connections of one listener in their handshake at once
	// (see handshakes)
	shmMaxHandshakes    = 64
	shmHandshakeTimeout = 10 * time.Second
)

// Listen opens an abstract Unix socket named after the cluster and a random suffix.
func (s *Shm) Listen(ctx context.Context) (Listener, error) {
	var r [8]byte
	rand.Read(r[:])
	name := "@shoal-" + s.cfg.Cluster + "-rdma-" + hex.EncodeToString(r[:])
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for shm transport on %s: %w", name, err)
	}
	l := &shmListener{s: s, ln: ln, addr: name, ready: make(chan *shmConn, 64), done: make(chan struct{}),
		hs: newHandshakes(shmMaxHandshakes)}
	go l.loop()
	return l, nil
}

type shmListener struct {
	s     *Shm
	ln    *net.UnixListener
	addr  string
	ready chan *shmConn
	done  chan struct{}
	once  sync.Once
	hs    *handshakes // connections in their handshake
}

func (l *shmListener) Addr() string { return l.addr }

func (l *shmListener) loop() {
	for {
		// any user of the node can reach the abstract socket: wait out what a flood causes
		nc, err := wire.AcceptBackoff(l.ln, nil)
		if err != nil {
			l.Close()
			return
		}
		uc := nc.(*net.UnixConn)
		l.hs.start(uc)
		go func() {
			c, err := l.s.serverHandshake(uc)
			if !l.hs.end(uc) && err == nil {
				c.Close()
				return
			}
			if err != nil {
				uc.Close()
				return
			}
			select {
			case l.ready <- c:
			case <-l.done:
				c.Close()
			}
		}()
	}
}

func (l *shmListener) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("accept shm connection on %s: %w", l.addr, ctx.Err())
	case <-l.done:
		return nil, fmt.Errorf("accept shm connection on %s: %w", l.addr, net.ErrClosed)
	}
}

func (l *shmListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.ln.Close()
		l.hs.closeAll()
		for {
			select {
			case c := <-l.ready:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// The handshake on the setup socket (fixed sizes):
//
//	server -> client: server nonce(32)
//	client -> server: proof(32) = wire.Proof(secret, shmLabelC, client nonce, server nonce, ""),
//	                  client nonce(32)
//	server -> client: status(1) (0 ok, 1 wrong secret), proof(32) (label shmLabelS)
//	client -> server: ring size (8, little-endian) with the ring file's descriptor (SCM_RIGHTS)
//	server -> client: 0 (mapped)
//
// Both proofs cover both nonces, so no recorded one is accepted again. The server reads
// nothing but the fixed 64 bytes before the client's proof checks, and takes a descriptor
// only from an authenticated client.
const shmAuthLen = 64

// parseShmAuth splits a client's authentication message (outside input: any process on the
// node can connect to the abstract socket).
func parseShmAuth(a []byte) (proof, nonce []byte, err error) {
	if len(a) != shmAuthLen {
		return nil, nil, fmt.Errorf("shm handshake: authentication of %d bytes, want %d", len(a), shmAuthLen)
	}
	return a[:32], a[32:], nil
}

// parseShmRing reads the dialer's ring message: its size and the one descriptor passed with
// it. Every descriptor that came is closed when the message is refused.
func parseShmRing(buf, oob []byte, want int) (fd int, err error) {
	var fds []int
	if msgs, perr := syscall.ParseSocketControlMessage(oob); perr == nil {
		for i := range msgs {
			// syscall.ParseUnixRights indexes past the end of data whose length is not a
			// multiple of 4 (found by FuzzParseShmRing); the kernel never makes such a message
			if len(msgs[i].Data)%4 != 0 {
				continue
			}
			if f, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, f...)
			}
		}
	}
	refuse := func(err error) (int, error) {
		for _, f := range fds {
			syscall.Close(f)
		}
		return -1, err
	}
	if len(buf) != 8 {
		return refuse(fmt.Errorf("shm handshake: ring message of %d bytes, want 8", len(buf)))
	}
	if len(fds) != 1 {
		return refuse(fmt.Errorf("shm handshake: %d ring descriptors came, want 1", len(fds)))
	}
	if ring := binary.LittleEndian.Uint64(buf); ring != uint64(want) {
		return refuse(fmt.Errorf("shm handshake: peer uses %d-byte rings, this end %d; every rank must run the same shoal", ring, want))
	}
	return fds[0], nil
}

func (s *Shm) serverHandshake(uc *net.UnixConn) (*shmConn, error) {
	uc.SetDeadline(time.Now().Add(shmHandshakeTimeout))
	nonce := wire.NewNonce()
	if _, err := uc.Write(nonce); err != nil {
		return nil, err
	}
	var a [shmAuthLen]byte
	if _, err := io.ReadFull(uc, a[:]); err != nil {
		return nil, err
	}
	proof, cnonce, err := parseShmAuth(a[:])
	if err != nil {
		return nil, err
	}
	if !wire.CheckProof(s.cfg.Secret, shmLabelC, cnonce, nonce, nil, proof) {
		uc.Write([]byte{1})
		return nil, wire.ErrAuth
	}
	reply := append([]byte{0}, wire.Proof(s.cfg.Secret, shmLabelS, cnonce, nonce, nil)...)
	if _, err := uc.Write(reply); err != nil {
		return nil, err
	}
	// the ring file's descriptor and its size
	buf := make([]byte, 8)
	oob := make([]byte, syscall.CmsgSpace(4*4)) // room to see (and close) a few extra descriptors
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	fd, err := parseShmRing(buf[:n], oob[:oobn], s.cfg.Ring)
	if err != nil {
		return nil, err
	}
	ring := s.cfg.Ring
	mem, err := syscall.Mmap(fd, 0, 2*(shmHdr+ring), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	syscall.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("map shm ring: %w", err)
	}
	if _, err := uc.Write([]byte{0}); err != nil {
		syscall.Munmap(mem)
		return nil, err
	}
	uc.SetDeadline(time.Time{})
	c := newShmConn(uc, mem, ring, false)
	c.cmaOff.Store(!s.cfg.SingleCopy)
	return c, nil
}

// Dial connects to the listener at addr (an abstract socket name from Listener.Addr).
func (s *Shm) Dial(ctx context.Context, addr string) (Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, fmt.Errorf("dial shm transport at %s: %w", addr, err)
	}
	uc := nc.(*net.UnixConn)
	fail := func(err error) (Conn, error) {
		uc.Close()
		return nil, fmt.Errorf("dial shm transport at %s: %w", addr, err)
	}
	dl := time.Now().Add(shmHandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	uc.SetDeadline(dl)
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(uc, nonce); err != nil {
		return fail(err)
	}
	mine := wire.NewNonce()
	if _, err := uc.Write(append(wire.Proof(s.cfg.Secret, shmLabelC, mine, nonce, nil), mine...)); err != nil {
		return fail(err)
	}
	var reply [33]byte
	if _, err := io.ReadFull(uc, reply[:1]); err != nil {
		return fail(err)
	}
	if reply[0] != 0 {
		return fail(fmt.Errorf("%w: the peer does not accept this cluster secret (SHOAL_SECRET)", wire.ErrAuth))
	}
	if _, err := io.ReadFull(uc, reply[1:]); err != nil {
		return fail(err)
	}
	if !wire.CheckProof(s.cfg.Secret, shmLabelS, mine, nonce, nil, reply[1:]) {
		return fail(fmt.Errorf("%w: the peer does not know this cluster's secret", wire.ErrAuth))
	}
	var r [8]byte
	rand.Read(r[:])
	path := filepath.Join(s.cfg.Dir, "shoal-"+s.cfg.Cluster+"-ring-"+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(fmt.Errorf("create ring file: %w", err))
	}
	os.Remove(path) // the descriptors keep it alive; nothing stays in the directory
	defer f.Close()
	size := 2 * (shmHdr + s.cfg.Ring)
	if err := f.Truncate(int64(size)); err != nil {
		return fail(fmt.Errorf("size ring file %s: %w", path, err))
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("map ring file %s: %w", path, err))
	}
	var sz [8]byte
	binary.LittleEndian.PutUint64(sz[:], uint64(s.cfg.Ring))
	if _, _, err := uc.WriteMsgUnix(sz[:], syscall.UnixRights(int(f.Fd())), nil); err != nil {
		syscall.Munmap(mem)
		return fail(err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(uc, ok[:]); err != nil {
		syscall.Munmap(mem)
		return fail(fmt.Errorf("the peer did not map the ring: %w", err))
	}
	uc.SetDeadline(time.Time{})
	c := newShmConn(uc, mem, s.cfg.Ring, true)
	c.cmaOff.Store(!s.cfg.SingleCopy)
	return c, nil
}

// shmRing is one direction: the producer advances head, the consumer advances tail.
type shmRing struct {
	head, tail   *atomic.Uint64
	rwait, wwait *atomic.Uint32
	ack          *atomic.Uint64
	ackwait      *atomic.Uint32
	data         []byte
	mask         uint64
}

func ringAt(mem []byte, off, size int) shmRing {
	p := unsafe.Pointer(&mem[off])
	return shmRing{
		head:    (*atomic.Uint64)(unsafe.Add(p, shmOffHead)),
		tail:    (*atomic.Uint64)(unsafe.Add(p, shmOffTail)),
		rwait:   (*atomic.Uint32)(unsafe.Add(p, shmOffRWait)),
		wwait:   (*atomic.Uint32)(unsafe.Add(p, shmOffWWait)),
		ack:     (*atomic.Uint64)(unsafe.Add(p, shmOffAck)),
		ackwait: (*atomic.Uint32)(unsafe.Add(p, shmOffAckWait)),
		data:    mem[off+shmHdr : off+shmHdr+size],
		mask:    uint64(size - 1),
	}
}

type shmConn struct {
	uc    *net.UnixConn
	mem   []byte
	out   shmRing
	in    shmRing
	dead  atomic.Bool  // the peer closed or died
	close atomic.Bool  // this end closed
	ops   atomic.Int64 // operations of this end under way; the rings stay mapped until 0
	once  sync.Once
	hdr   [8]byte
	rhdr  [8]byte
	small [8 + 1024]byte
	spin  atomic.Int64 // current spin budget of a wait, in ns
	// the other side's ring index as this side last read it (sender: out's tail; receiver:
	// in's head), so that the shared one is read only when the cached one does not suffice
	tailSeen, headSeen uint64
	// single copy: a large message is announced in the ring and read by the receiver straight
	// out of the sender's memory (process_vm_readv); cmaOff once that failed on this conn
	cmaOff  atomic.Bool
	cmaSeq  uint64
	cmaBuf  []byte
	cmaDesc [32]byte
}

func newShmConn(uc *net.UnixConn, mem []byte, ring int, dialer bool) *shmConn {
	c := &shmConn{uc: uc, mem: mem}
	c.spin.Store(int64(shmSpinFor))
	a, b := ringAt(mem, 0, ring), ringAt(mem, shmHdr+ring, ring)
	if dialer {
		c.out, c.in = a, b
	} else {
		c.out, c.in = b, a
	}
	go func() {
		// the socket carries nothing after the handshake; its end means the peer is gone
		var b [1]byte
		uc.Read(b[:])
		c.dead.Store(true)
		futexWake(c.in.head)
		futexWake(c.out.tail)
	}()
	return c
}

// futexWake wakes every waiter on the low 32 bits of w.
func futexWake(w *atomic.Uint64) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(w)), 1 /* FUTEX_WAKE */, 1<<30, 0, 0, 0)
}

// futexWait sleeps while the low 32 bits of w equal val, at most d.
func futexWait(w *atomic.Uint64, val uint32, d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(w)), 0 /* FUTEX_WAIT */, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

var errShmPeerGone = errors.New("peer closed the connection")

// await waits until cond() holds, sleeping on word w (whose low half changes when cond may
// have become true) and announcing the sleep in flag. It fails when the context ends, this
// end closes, or the peer is gone and cond still does not hold.
func (c *shmConn) await(ctx context.Context, cond func() bool, w *atomic.Uint64, flag *atomic.Uint32) error {
	// spin while the peer is likely to come within microseconds (it runs on another core),
	// then sleep on the futex. The spin budget adapts: it doubles when spinning paid and halves
	// when it did not, so ranks that share a core (more ranks than free cores) hand the core
	// over at once instead of burning their time slice.
	var start time.Time
	budget := time.Duration(c.spin.Load())
	slept := false
	defer func() {
		switch {
		case slept:
			c.spin.Store(int64(max(budget/2, shmSpinMin)))
		case !start.IsZero(): // spinning paid: the peer is running, spin longer
			c.spin.Store(int64(min(budget*2, shmSpinFor)))
		case budget < shmSpinFor: // the data was there at once: creep back up
			c.spin.Store(int64(min(budget+budget/8+100, shmSpinFor)))
		}
	}()
	for i := 0; ; i++ {
		if cond() {
			return nil
		}
		if c.close.Load() {
			return net.ErrClosed
		}
		if c.dead.Load() {
			if cond() {
				return nil
			}
			return errShmPeerGone
		}
		if i&63 != 63 {
			continue
		}
		if start.IsZero() {
			start = time.Now()
		}
		spent := time.Since(start)
		if spent < budget {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		slept = true
		if spent < shmYieldFor {
			// more ranks than free cores: let a peer on this core run, cheaply
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			continue
		}
		sleep := shmSleepSlice
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			if left <= 0 {
				return context.DeadlineExceeded
			}
			sleep = min(sleep, left)
		}
		val := uint32(w.Load())
		flag.Store(1)
		if !cond() && !c.dead.Load() && !c.close.Load() {
			futexWait(w, val, sleep)
		}
		flag.Store(0)
	}
}

func (c *shmConn) write(ctx context.Context, b []byte) error {
	r := &c.out
	size := uint64(len(r.data))
	for len(b) > 0 {
		head := r.head.Load()
		// the consumer's tail as last seen: reading the shared one on every message would pull
		// its cache line over from the consumer's core each time
		if head-c.tailSeen+uint64(min(len(b), shmPiece)) > size {
			c.tailSeen = r.tail.Load()
			if head-c.tailSeen >= size {
				if err := c.await(ctx, func() bool { return head-r.tail.Load() < size }, r.tail, r.wwait); err != nil {
					return err
				}
				c.tailSeen = r.tail.Load()
			}
		}
		free := size - (head - c.tailSeen)
		pos := head & r.mask
		n := min(uint64(len(b)), free, size-pos, shmPiece)
		copy(r.data[pos:pos+n], b[:n])
		r.head.Store(head + n)
		if r.rwait.Load() != 0 {
			futexWake(r.head)
		}
		b = b[n:]
	}
	return nil
}

// read copies the next len(b) bytes out of the ring, or hands them to fn piece by piece when
// fn is not nil (b is then only the count).
func (c *shmConn) read(ctx context.Context, b []byte, n int, fn func(off int, p []byte)) error {
	r := &c.in
	size := uint64(len(r.data))
	for off := 0; off < n; {
		tail := r.tail.Load()
		if c.headSeen == tail { // all that was seen is consumed: look again, then wait
			c.headSeen = r.head.Load()
			if c.headSeen == tail {
				if err := c.await(ctx, func() bool { return r.head.Load() != tail }, r.head, r.rwait); err != nil {
					return err
				}
				c.headSeen = r.head.Load()
			}
		}
		avail := c.headSeen - tail
		pos := tail & r.mask
		k := min(uint64(n-off), avail, size-pos, shmPiece)
		if fn != nil {
			fn(off, r.data[pos:pos+k])
		} else {
			copy(b[off:off+int(k)], r.data[pos:pos+k])
		}
		r.tail.Store(tail + k)
		if r.wwait.Load() != 0 {
			futexWake(r.tail)
		}
		off += int(k)
	}
	return nil
}

func (c *shmConn) fail(op string, err error) error {
	// a message cut short leaves the ring out of step; nothing after it can be trusted
	c.Close()
	return fmt.Errorf("shm %s: %w", op, err)
}

func (c *shmConn) begin() bool {
	c.ops.Add(1)
	if c.close.Load() {
		c.ops.Add(-1)
		return false
	}
	return true
}

// Send writes b as one message.
func (c *shmConn) Send(ctx context.Context, b []byte) error {
	if !c.begin() {
		return fmt.Errorf("shm send: %w", net.ErrClosed)
	}
	defer c.ops.Add(-1)
	if len(b) >= shmCMAMin && !c.cmaOff.Load() {
		ok, err := c.sendCMA(ctx, b)
		if err != nil {
			return c.fail("send", err)
		}
		if ok {
			return nil
		}
		// the receiver could not read this process's memory: the bytes go through the ring
	}
	if len(b) <= len(c.small)-8 {
		// header and body published together: the receiver sees one update of head
		binary.LittleEndian.PutUint64(c.small[:], uint64(len(b)))
		n := copy(c.small[8:], b)
		if err := c.write(ctx, c.small[:8+n]); err != nil {
			return c.fail("send", err)
		}
		return nil
	}
	binary.LittleEndian.PutUint64(c.hdr[:], uint64(len(b)))
	if err := c.write(ctx, c.hdr[:]); err != nil {
		return c.fail("send", err)
	}
	if err := c.write(ctx, b); err != nil {
		return c.fail("send", err)
	}
	return nil
}

// Recv fills b with the next message.
func (c *shmConn) Recv(ctx context.Context, b []byte) error {
	if !c.begin() {
		return fmt.Errorf("shm recv: %w", net.ErrClosed)
	}
	defer c.ops.Add(-1)
	cma, pid, addr, seq, err := c.recvHeader(ctx, len(b))
	if err != nil {
		return err
	}
	return c.recvBody(ctx, cma, pid, addr, seq, len(b), b, nil)
}

// cmaPID is the pid a single-copy sender announces (tests announce one that cannot be read).
var cmaPID = os.Getpid

// recvHeader reads the next message's header. For a single-copy message it returns the
// sender's descriptor (cma true); the caller reads the bytes and answers with ackCMA.
func (c *shmConn) recvHeader(ctx context.Context, n int) (cma bool, pid int, addr uintptr, seq uint64, err error) {
	if err := c.read(ctx, c.rhdr[:], 8, nil); err != nil {
		return false, 0, 0, 0, c.fail("recv", err)
	}
	m := binary.LittleEndian.Uint64(c.rhdr[:])
	if m&shmCMAFlag != 0 {
		var d [24]byte
		if err := c.read(ctx, d[:], 24, nil); err != nil {
			return false, 0, 0, 0, c.fail("recv", err)
		}
		m &^= shmCMAFlag
		cma = true
		pid = int(binary.LittleEndian.Uint64(d[0:]))
		addr = uintptr(binary.LittleEndian.Uint64(d[8:]))
		seq = binary.LittleEndian.Uint64(d[16:])
	}
	if m != uint64(n) {
		return false, 0, 0, 0, c.fail("recv", fmt.Errorf("%w: the peer sent %d bytes, the receiver expected %d (both sides must agree on counts and types)", ErrSize, m, n))
	}
	return cma, pid, addr, seq, nil
}

// sendCMA announces b and waits until the receiver has read it. ok is false when the receiver
// could not (no permission to read this process, another pid namespace): then nothing was
// delivered, single copy is off for this conn, and the caller sends b through the ring.
func (c *shmConn) sendCMA(ctx context.Context, b []byte) (ok bool, err error) {
	c.cmaSeq++
	seq := c.cmaSeq
	d := c.cmaDesc[:]
	binary.LittleEndian.PutUint64(d[0:], uint64(len(b))|shmCMAFlag)
	binary.LittleEndian.PutUint64(d[8:], uint64(cmaPID()))
	binary.LittleEndian.PutUint64(d[16:], uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))))
	binary.LittleEndian.PutUint64(d[24:], seq)
	if err := c.write(ctx, d); err != nil {
		return false, err
	}
	r := &c.out
	if err := c.await(ctx, func() bool { return r.ack.Load()&^shmAckFail >= seq }, r.ack, r.ackwait); err != nil {
		return false, err
	}
	runtime.KeepAlive(b)
	if r.ack.Load()&shmAckFail != 0 {
		c.cmaOff.Store(true)
		return false, nil
	}
	return true, nil
}

func (c *shmConn) ackCMA(seq uint64, failed bool) {
	if failed {
		seq |= shmAckFail
	}
	c.in.ack.Store(seq)
	if c.in.ackwait.Load() != 0 {
		futexWake(c.in.ack)
	}
}

// readCMA copies n bytes at addr in process pid into b, or hands them to fn in pieces.
// started reports whether any byte reached b or fn before an error.
func (c *shmConn) readCMA(pid int, addr uintptr, n int, b []byte, fn func(off int, p []byte)) (started bool, err error) {
	for off := 0; off < n; {
		k := n - off
		var dst []byte
		if fn != nil {
			k = min(k, shmPiece)
			if len(c.cmaBuf) < shmPiece {
				c.cmaBuf = make([]byte, shmPiece)
			}
			dst = c.cmaBuf[:k]
		} else {
			dst = b[off : off+k]
		}
		local := []unix.Iovec{{Base: &dst[0]}}
		local[0].SetLen(k)
		remote := []unix.RemoteIovec{{Base: addr + uintptr(off), Len: k}}
		got, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if err != nil {
			return off > 0, fmt.Errorf("read %d bytes of process %d: %w", k, pid, err)
		}
		if got <= 0 {
			return off > 0, fmt.Errorf("read of process %d made no progress", pid)
		}
		if fn != nil {
			fn(off, dst[:got])
		}
		off += got
	}
	return true, nil
}

// recvBody receives a message whose header said cma (or not), into b or through fn.
func (c *shmConn) recvBody(ctx context.Context, cma bool, pid int, addr uintptr, seq uint64, n int, b []byte, fn func(off int, p []byte)) error {
	if cma {
		started, err := c.readCMA(pid, addr, n, b, fn)
		if err == nil {
			c.ackCMA(seq, false)
			return nil
		}
		c.ackCMA(seq, true)
		if started {
			return c.fail("recv", err)
		}
		// the sender now sends the same message through the ring
		c.cmaOff.Store(true)
		again, _, _, _, err := c.recvHeader(ctx, n)
		if err != nil {
			return err
		}
		if again {
			return c.fail("recv", errors.New("the peer announced a single-copy message again after a failed one"))
		}
	}
	if err := c.read(ctx, b, n, fn); err != nil {
		return c.fail("recv", err)
	}
	return nil
}

// Rendezvous reports whether a Send of n bytes waits for the receiver (single copy).
func (c *shmConn) Rendezvous(n int) bool { return n >= shmCMAMin && !c.cmaOff.Load() }

// RecvStream receives the next message, of n bytes, handing it to fn in pieces in order as
// they arrive; fn must not keep p.
func (c *shmConn) RecvStream(ctx context.Context, n int, fn func(off int, p []byte)) error {
	if !c.begin() {
		return fmt.Errorf("shm recv: %w", net.ErrClosed)
	}
	defer c.ops.Add(-1)
	cma, pid, addr, seq, err := c.recvHeader(ctx, n)
	if err != nil {
		return err
	}
	return c.recvBody(ctx, cma, pid, addr, seq, n, nil, fn)
}

// Buffered returns the ring size: that many bytes (headers included) can be sent unread.
func (c *shmConn) Buffered() int { return len(c.out.data) }

// Close ends the connection and unmaps the rings once no operation of this end uses them.
func (c *shmConn) Close() error {
	c.once.Do(func() {
		c.close.Store(true)
		c.uc.Close()
		futexWake(c.in.head)
		futexWake(c.out.tail)
		go func() {
			for c.ops.Load() != 0 {
				time.Sleep(time.Millisecond)
			}
			syscall.Munmap(c.mem)
		}()
	})
	return nil
}
