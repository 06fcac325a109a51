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
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// Worker output, line by line:
//
//	worker stdout/stderr ──pipe──> LineWriter (its node's agent) ──Line──> sink
//	   head node: sink = Recorder.AddLog      member: sink = LOG frames to the head
//	Recorder.AddLog ──> bounded queue (shoal logs, the page) and, for a job whose driver did not
//	                    register (a Go driver), the agent's own stdout/stderr, prefixed
//	driver (log_to_driver=True) ──polls OBSERVE logs{job, since}──> prints, prefixed
//
// A worker says which task its next lines belong to with a marker line it writes before the
// first output of each task: "\x1eshoal-task PID TASK ACTOR NAME" (ids in hex, "-" for none),
// which the LineWriter takes out of the stream.

// MarkerPrefix starts a worker's marker line.
const MarkerPrefix = "\x1eshoal-task "

// MaxLine is the longest line kept; a longer one is cut there.
const MaxLine = 4 << 10

// DefaultMaxLogLines and DefaultMaxLogBytes bound the lines a recorder keeps (the oldest go
// first): 100,000 lines, and 64 MiB of their text.
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
	pid                       int
	task, actor, name         string
}

// NewLineWriter returns the writer for one stream ("stdout" or "stderr") of a worker.
func NewLineWriter(node, job, worker, stream string, sink func(Line)) *LineWriter {
	return &LineWriter{node: node, job: job, worker: worker, stream: stream, sink: sink}
}

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
	w.sink(Line{Time: time.Now(), Node: w.node, Job: w.job, Worker: w.worker, PID: w.pid, Stream: w.stream,
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

// logs is the recorder's queue of lines and the jobs whose drivers registered.
type logs struct {
	mu      sync.Mutex
	max     int
	lines   []Line // lines[start:] are kept, oldest first
	start   int
	bytes   int    // text bytes kept
	seq     uint64 // the last line's Seq
	drivers map[string]bool
	echo    func(Line) // for lines of a job whose driver did not register
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

// AddLog keeps a worker's line (assigning its Seq) and echoes it when its job's driver did
// not register. Safe for concurrent use; a nil recorder drops it.
func (r *Recorder) AddLog(l Line) {
	if r == nil {
		return
	}
	g := &r.logs
	g.mu.Lock()
	g.seq++
	l.Seq = g.seq
	if g.max == 0 {
		g.max = r.maxLines
	}
	g.lines = append(g.lines, l)
	g.bytes += len(l.Text)
	for len(g.lines)-g.start > g.max || g.bytes > DefaultMaxLogBytes {
		g.bytes -= len(g.lines[g.start].Text)
		g.lines[g.start] = Line{}
		g.start++
	}
	if g.start > 1024 && g.start > len(g.lines)/2 { // give the dropped lines' room back
		g.lines = append([]Line(nil), g.lines[g.start:]...)
		g.start = 0
	}
	_, registered := g.drivers[l.Job]
	echo := g.echo
	g.mu.Unlock()
	if !registered && echo != nil {
		echo(l)
	}
}

// Logs returns up to max lines (0: all) after since that match f, oldest first, and the Seq to
// ask from next time.
func (r *Recorder) Logs(f LogFilter, since uint64, max int) ([]Line, uint64) {
	if r == nil {
		return nil, since
	}
	g := &r.logs
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []Line{}
	next := since
	kept := g.lines[g.start:]
	from := sort.Search(len(kept), func(i int) bool { return kept[i].Seq > since }) // Seqs rise
	for i := g.start + from; i < len(g.lines); i++ {
		l := &g.lines[i]
		if l.Seq <= since {
			continue
		}
		next = l.Seq
		if f.match(l) {
			out = append(out, *l)
			if max > 0 && len(out) >= max {
				break
			}
		}
	}
	if next < g.seq && (max == 0 || len(out) < max) {
		next = g.seq
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
