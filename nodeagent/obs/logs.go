package obs

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// Worker output, line by line:
//
//	worker stdout/stderr ──pipe──> LineWriter (its node's agent) ──Line──> its node's Ring
//	   head node: Recorder.AddLog             member: memberLogs (nodeagent/nodelogs.go)
//	a line of a job whose driver prints its lines (log_to_driver) or did not register (a Go
//	driver): also to the head (a member: LOG), into the driver's queue or echoed, prefixed, on
//	the head agent's stdout/stderr
//	driver (log_to_driver=True) ──polls OBSERVE driver_logs{job, since}──> prints, prefixed
//	shoal logs, the page ──OBSERVE logs{cursor}──> head: its ring + LOG_QUERY to each member,
//	                                                merged by time (Merge)
//
// A worker says which task its next lines belong to with a marker line it writes before the
// first output of each task: "\x1eshoal-task PID TASK ACTOR NAME" (ids in hex, "-" for none),
// which the LineWriter takes out of the stream.

// MarkerPrefix starts a worker's marker line.
const MarkerPrefix = "\x1eshoal-task "

// MaxLine is the longest line kept; a longer one is cut there.
const MaxLine = 4 << 10

// DefaultMaxLogLines and DefaultMaxLogBytes bound the lines each node's agent keeps of its own
// workers (the oldest go first): 100,000 lines, and 64 MiB of their text (--log-lines,
// --log-bytes).
const (
	DefaultMaxLogLines = 100_000
	DefaultMaxLogBytes = 64 << 20
)

// Line is one line a worker wrote.
type Line struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	Job    string    `json:"job"`
	Worker string    `json:"worker"`
	PID    int       `json:"pid"`
	Stream string    `json:"stream"` // stdout or stderr
	Task   string    `json:"task_id"`
	Actor  string    `json:"actor_id"`
	Name   string    `json:"name"` // the task's function or Class.method
	Text   string    `json:"text"`
}

// Prefix is how a driver and `shoal logs` show where a line came from, as Ray does:
// "(square pid=1234, node=n2) ".
func (l Line) Prefix() string {
	name := l.Name
	if name == "" {
		name = l.Worker
	}
	return fmt.Sprintf("(%s pid=%d, node=%s) ", name, l.PID, l.Node)
}

// LineWriter splits one stream of one worker into Lines for sink, taking marker lines out.
// Write is called by one goroutine (exec's copier); Close flushes a last partial line.
type LineWriter struct {
	node, job, worker, stream string
	sink                      func(Line)
	buf                       []byte
	pid                       int          // from the last marker line
	proc                      atomic.Int64 // the worker process's (SetPID): lines before any marker
	task, actor, name         string
}

// NewLineWriter returns the writer for one stream ("stdout" or "stderr") of a worker.
func NewLineWriter(node, job, worker, stream string, sink func(Line)) *LineWriter {
	return &LineWriter{node: node, job: job, worker: worker, stream: stream, sink: sink}
}

// SetPID gives the worker process's pid, once it runs: lines written before any task marker
// (a Go worker's, a Python worker's start-up output) name it rather than pid 0.
func (w *LineWriter) SetPID(pid int) { w.proc.Store(int64(pid)) }

// Write takes whatever the worker wrote; whole lines go to the sink.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > MaxLine { // a line with no end in sight: pass on what is there
		w.line(w.buf)
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// Close passes on a last line without a newline.
func (w *LineWriter) Close() error {
	if len(w.buf) > 0 {
		w.line(w.buf)
		w.buf = nil
	}
	return nil
}

func (w *LineWriter) line(b []byte) {
	b = bytes.TrimSuffix(b, []byte{'\r'})
	if m, ok := ParseMarker(string(b)); ok {
		w.pid, w.task, w.actor, w.name = m.PID, m.Task, m.Actor, m.Name
		return
	}
	if len(b) > MaxLine {
		b = b[:MaxLine]
	}
	pid := w.pid
	if pid == 0 {
		pid = int(w.proc.Load())
	}
	w.sink(Line{Time: time.Now(), Node: w.node, Job: w.job, Worker: w.worker, PID: pid, Stream: w.stream,
		Task: w.task, Actor: w.actor, Name: w.name, Text: string(b)})
}

// Marker is what a marker line says.
type Marker struct {
	PID         int
	Task, Actor string // hex, "" for none
	Name        string
}

// ParseMarker reads a marker line (without its newline); ok is false for any other line. Ids
// must be 32 hex digits or "-"; the name is the rest of the line.
func ParseMarker(s string) (m Marker, ok bool) {
	rest, found := strings.CutPrefix(s, MarkerPrefix)
	if !found {
		return m, false
	}
	f := strings.SplitN(rest, " ", 4)
	if len(f) != 4 {
		return m, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid < 0 {
		return m, false
	}
	id := func(s string) (string, bool) {
		if s == "-" {
			return "", true
		}
		if len(s) != 2*len(wire.ID{}) {
			return "", false
		}
		if _, err := hex.DecodeString(s); err != nil {
			return "", false
		}
		return strings.ToLower(s), true
	}
	var ok1, ok2 bool
	if m.Task, ok1 = id(f[1]); !ok1 {
		return Marker{}, false
	}
	if m.Actor, ok2 = id(f[2]); !ok2 {
		return Marker{}, false
	}
	m.PID, m.Name = pid, f[3]
	return m, true
}

// JobOfWorker is the job of a worker id ("<job>-w<n>", as the agent names workers).
func JobOfWorker(worker string) string {
	i := strings.LastIndex(worker, "-w")
	if i < 0 {
		return ""
	}
	if _, err := strconv.Atoi(worker[i+2:]); err != nil {
		return ""
	}
	return worker[:i]
}

// LogFilter selects lines; empty fields match all. Task and Actor match a prefix of the hex id.
type LogFilter struct {
	Job, Task, Actor, Node, Worker string
}

func (f LogFilter) match(l *Line) bool {
	return (f.Job == "" || l.Job == f.Job) && (f.Node == "" || l.Node == f.Node) &&
		(f.Worker == "" || l.Worker == f.Worker) &&
		(f.Task == "" || (l.Task != "" && strings.HasPrefix(l.Task, strings.ToLower(f.Task)))) &&
		(f.Actor == "" || (l.Actor != "" && strings.HasPrefix(l.Actor, strings.ToLower(f.Actor))))
}

// logs is the recorder's ring of its own node's lines, the jobs whose drivers registered and
// the lines waiting for those drivers (members' lines reach the head only for them).
type logs struct {
	ring    Ring
	mu      sync.Mutex
	drivers map[string]bool
	queues  map[string]*driverQueue // by job, for drivers that print their workers' lines
	echo    func(Line)              // for lines of a job whose driver did not register
}

// SetLogEcho sets where lines of a job whose driver did not register go (the agent's own
// stdout and stderr: a Go driver reads no LOG). nil: nowhere.
func (r *Recorder) SetLogEcho(f func(Line)) {
	if r == nil {
		return
	}
	r.logs.mu.Lock()
	r.logs.echo = f
	r.logs.mu.Unlock()
}

// RegisterDriver records that job's driver reads its workers' lines itself (toDriver) or
// wants them only kept, so that they are not echoed.
func (r *Recorder) RegisterDriver(job string, toDriver bool) {
	if r == nil {
		return
	}
	r.logs.mu.Lock()
	if r.logs.drivers == nil {
		r.logs.drivers = map[string]bool{}
	}
	r.logs.drivers[job] = toDriver
	r.logs.mu.Unlock()
}

// Drivers returns the jobs whose drivers registered: true for those that print their
// workers' lines (member agents send the head those jobs' lines, and only those).
func (r *Recorder) Drivers() map[string]bool {
	out := map[string]bool{}
	if r == nil {
		return out
	}
	r.logs.mu.Lock()
	for j, v := range r.logs.drivers {
		out[j] = v
	}
	r.logs.mu.Unlock()
	return out
}

// AddLog keeps a line of a worker of this node (assigning its Seq), queues it for its job's
// driver if that prints its lines, and echoes it when its job's driver did not register. Safe
// for concurrent use; a nil recorder drops it.
func (r *Recorder) AddLog(l Line) {
	if r == nil {
		return
	}
	r.route(r.logs.ring.Add(l))
}

// AddMemberLog takes a line a member agent sent (its job's driver prints its lines, or did
// not register): it is queued for the driver or echoed, never kept, as the member keeps it.
func (r *Recorder) AddMemberLog(l Line) {
	if r == nil {
		return
	}
	r.route(l)
}

func (r *Recorder) route(l Line) {
	g := &r.logs
	g.mu.Lock()
	toDriver, registered := g.drivers[l.Job]
	if toDriver {
		if g.queues == nil {
			g.queues = map[string]*driverQueue{}
		}
		q := g.queues[l.Job]
		if q == nil {
			q = &driverQueue{}
			g.queues[l.Job] = q
		}
		q.add(l)
	}
	echo := g.echo
	g.mu.Unlock()
	if !registered && echo != nil {
		echo(l)
	}
}

// Logs returns up to max lines (0: all) of this node's ring after since that match f, oldest
// first, and the Seq to ask from next time.
func (r *Recorder) Logs(f LogFilter, since uint64, max int) ([]Line, uint64) {
	if r == nil {
		return nil, since
	}
	p := r.LogPage(f, since, max, 0)
	return p.Lines, p.Next
}

// LogPage is a page of this node's ring (see Ring.Page).
func (r *Recorder) LogPage(f LogFilter, since uint64, maxLines, maxBytes int) LogPage {
	if r == nil {
		return LogPage{Lines: []Line{}, Next: since}
	}
	return r.logs.ring.Page(f, since, maxLines, maxBytes)
}

// LogStats are the figures of this node's ring.
func (r *Recorder) LogStats() RingStats {
	if r == nil {
		return RingStats{}
	}
	return r.logs.ring.Stats()
}

// LogBound is the bound of every node's ring: lines and bytes of text.
func (r *Recorder) LogBound() (lines, bytes int) {
	if r == nil {
		return DefaultMaxLogLines, DefaultMaxLogBytes
	}
	return r.maxLines, r.maxBytes
}

// DriverLogs returns the lines waiting for job's driver after since (at most max; 0: all),
// and the Seq to ask from next time; lines up to since are let go (the driver has them).
func (r *Recorder) DriverLogs(job string, since uint64, max int) ([]Line, uint64) {
	if r == nil {
		return []Line{}, since
	}
	g := &r.logs
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.queues[job]
	if q == nil {
		return []Line{}, since
	}
	return q.read(since, max)
}

// endDriver lets go of what waits for job's driver (its job ended); lines still on their way
// are no longer queued (nor echoed).
func (r *Recorder) endDriver(job string) {
	r.logs.mu.Lock()
	delete(r.logs.queues, job)
	if _, ok := r.logs.drivers[job]; ok {
		r.logs.drivers[job] = false
	}
	r.logs.mu.Unlock()
}

// DriverLines counts the lines waiting for drivers at the head, by the node they came from.
func (r *Recorder) DriverLines() map[string]int {
	out := map[string]int{}
	if r == nil {
		return out
	}
	r.logs.mu.Lock()
	for _, q := range r.logs.queues {
		for _, l := range q.lines {
			out[l.Node]++
		}
	}
	r.logs.mu.Unlock()
	return out
}

// Bounds of what waits at the head for one driver: the driver reads every 0.2 s, so this is
// room for bursts of about 50,000 lines a second.
const (
	DriverQueueLines = 10_000
	DriverQueueBytes = 8 << 20
)

// driverQueue holds one job's lines until its driver has read them.
type driverQueue struct {
	lines []Line
	bytes int
	seq   uint64
}

func (q *driverQueue) add(l Line) {
	q.seq++
	l.Seq = q.seq
	q.lines = append(q.lines, l)
	q.bytes += len(l.Text)
	drop := 0
	for len(q.lines)-drop > DriverQueueLines || (q.bytes > DriverQueueBytes && len(q.lines)-drop > 1) {
		q.bytes -= len(q.lines[drop].Text)
		drop++
	}
	if drop > 0 {
		q.lines = append([]Line(nil), q.lines[drop:]...)
	}
}

func (q *driverQueue) read(since uint64, max int) ([]Line, uint64) {
	k := sort.Search(len(q.lines), func(i int) bool { return q.lines[i].Seq > since })
	for _, l := range q.lines[:k] {
		q.bytes -= len(l.Text)
	}
	q.lines = append([]Line(nil), q.lines[k:]...)
	out := q.lines
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	out = append([]Line{}, out...)
	next := since
	if len(out) > 0 {
		next = out[len(out)-1].Seq
	} else if q.seq > since {
		next = q.seq
	}
	return out, next
}

// EchoTo returns an echo function that writes each line, prefixed, to stdout or stderr by its
// stream.
func EchoTo(stdout, stderr io.Writer) func(Line) {
	var mu sync.Mutex
	return func(l Line) {
		w := stdout
		if l.Stream == "stderr" {
			w = stderr
		}
		mu.Lock()
		io.WriteString(w, l.Prefix()+l.Text+"\n")
		mu.Unlock()
	}
}

// ReadFrom copies the worker's stream to the end and passes on a last line without a newline
// (exec.Cmd's copier calls it through io.Copy, so nothing is lost when the worker exits).
func (w *LineWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(k)
			w.Write(buf[:k])
		}
		if err != nil {
			w.Close()
			if err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
}
