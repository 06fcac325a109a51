package nodeagent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/wire"
)

// The memory monitor stops a worker whose task uses more memory than it asked for (memory=),
// alone, before the kernel's OOM killer or the job's cgroup ends the whole node or job, as
// Ray's memory monitor does (Ray watches the node's total against a threshold and kills the
// newest task; shoal holds each task to its own request, which it was scheduled by).
//
//	head's agent: Run(task with memory=M on worker W) ──> limit W to M (local spawner, or
//	              MEM_LIMIT to W's member; the next task without memory= lifts it)
//	every node:   each interval: anonymous RSS of W's process group > M ──> SIGKILL the group,
//	              remember why ──> W's exit is reported with OOM (WORKER_EXIT oom=true)
//	head's agent: WorkerExited{OOM} ──> the core retries the task as max_retries says, then
//	              fails it with out_of_memory (OutOfMemoryError naming the task and its use)
//
// What counts is RssAnon (/proc/PID/status) summed over the worker's process group, above what
// the worker held when the task began: the memory the task's code allocated. Pages of the shared-memory object store that a worker maps to
// read objects zero-copy, and file pages, are not its own and do not count.

// DefaultMemoryMonitorInterval is how often a node's monitor looks at its limited workers
// (Ray's memory_monitor_refresh_ms is 250 ms too).
const DefaultMemoryMonitorInterval = 250 * time.Millisecond

// memLimit is one worker's limit: its task's memory= request, above what the worker held when
// the task began (base: an idle Python worker alone holds tens of MiB, which no task asked for).
type memLimit struct {
	bytes, base uint64
	task        string
}

// memMonitor watches the workers of one spawner. Its zero value is not usable: see newMemMonitor.
type memMonitor struct {
	log   hclog.Logger
	proc  fs.FS                      // /proc (a fixture tree in tests)
	pidOf func(worker string) int    // the worker's process (group) id; 0: not running
	kill  func(pgid int) error       // SIGKILL to the process group
	tick  func(time.Duration) func() // starts a ticker calling check; returns its stop

	mu       sync.Mutex
	interval time.Duration
	limits   map[string]memLimit
	oom      map[string]string // workers killed for memory, and why
	stopTick func()
	closed   bool
}

func newMemMonitor(log hclog.Logger, pidOf func(string) int) *memMonitor {
	m := &memMonitor{log: log, proc: os.DirFS("/proc"), pidOf: pidOf,
		kill:   func(pgid int) error { return syscall.Kill(-pgid, syscall.SIGKILL) },
		limits: map[string]memLimit{}, oom: map[string]string{}}
	m.tick = func(d time.Duration) func() {
		t := time.NewTicker(d)
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-t.C:
					m.check()
				case <-done:
					return
				}
			}
		}()
		return func() { t.Stop(); close(done) }
	}
	return m
}

// set limits worker to bytes (0 lifts its limit) for task, looking every interval (<= 0: the
// monitor is off and nothing is limited).
func (m *memMonitor) set(worker string, bytes uint64, task string, interval time.Duration) {
	var base uint64
	if bytes > 0 && interval > 0 {
		base = m.baseOf(worker) // before m.mu: pidOf takes the spawner's lock
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if bytes == 0 || interval <= 0 {
		delete(m.limits, worker)
	} else {
		m.limits[worker] = memLimit{bytes: bytes, base: base, task: task}
	}
	if interval > 0 && interval != m.interval && m.stopTick != nil {
		m.stopTick()
		m.stopTick = nil
	}
	if interval > 0 {
		m.interval = interval
	}
	if len(m.limits) > 0 && m.stopTick == nil {
		m.stopTick = m.tick(m.interval)
	}
}

// baseOf is what worker's main process holds now (RssAnon), the base its task's request is
// counted from; 0 when it cannot be read.
func (m *memMonitor) baseOf(worker string) uint64 {
	pid := m.pidOf(worker)
	if pid <= 0 {
		return 0
	}
	b, err := fs.ReadFile(m.proc, strconv.Itoa(pid)+"/status")
	if err != nil {
		return 0
	}
	n, _ := parseRssAnon(b)
	return n
}

// take returns why worker was killed for memory ("" when it was not) and forgets it and its
// limit: the worker has exited.
func (m *memMonitor) take(worker string) string {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	why := m.oom[worker]
	delete(m.oom, worker)
	delete(m.limits, worker)
	return why
}

// close stops the monitor for good.
func (m *memMonitor) close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.stopTick != nil {
		m.stopTick()
		m.stopTick = nil
	}
}

// check looks once: every limited worker whose process group uses more than its limit is killed.
func (m *memMonitor) check() {
	m.mu.Lock()
	limits := make(map[string]memLimit, len(m.limits))
	for w, l := range m.limits {
		limits[w] = l
	}
	m.mu.Unlock()
	if len(limits) == 0 {
		return
	}
	groups := map[int]string{} // pgid -> worker
	for w := range limits {
		if pid := m.pidOf(w); pid > 0 {
			groups[pid] = w
		}
	}
	if len(groups) == 0 {
		return
	}
	used, err := groupAnonRSS(m.proc, groups)
	if err != nil {
		m.log.Warn("memory monitor: read /proc", "error", err)
		return
	}
	for pgid, w := range groups {
		l := limits[w]
		if used[pgid] <= l.base+l.bytes {
			continue
		}
		why := fmt.Sprintf("stopped by the memory monitor: %s was using %s of memory (anonymous RSS of its processes; %s more than its worker held "+
			"when it began), over its memory= request of %s (ask for more memory=, or tune the monitor with --memory-monitor-interval; 0 turns it off)",
			l.task, obs.BytesHuman(int64(used[pgid])), obs.BytesHuman(int64(used[pgid]-l.base)), obs.BytesHuman(int64(l.bytes)))
		m.mu.Lock()
		if _, still := m.limits[w]; !still {
			m.mu.Unlock()
			continue // its task ended meanwhile
		}
		m.oom[w] = why
		delete(m.limits, w)
		m.mu.Unlock()
		m.log.Warn("memory monitor: stopping a worker over its task's memory request", "worker", w, "task", l.task,
			"used_bytes", used[pgid], "limit_bytes", l.bytes)
		if err := m.kill(pgid); err != nil && !errors.Is(err, syscall.ESRCH) {
			m.log.Error("memory monitor: kill worker", "worker", w, "error", err)
		}
	}
}

// groupAnonRSS sums RssAnon over the processes of each process group in groups, reading
// proc's <pid>/stat and <pid>/status. Processes that vanish meanwhile are skipped.
func groupAnonRSS(proc fs.FS, groups map[int]string) (map[int]uint64, error) {
	ents, err := fs.ReadDir(proc, ".")
	if err != nil {
		return nil, err
	}
	used := map[int]uint64{}
	for _, e := range ents {
		name := e.Name()
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		st, err := fs.ReadFile(proc, name+"/stat")
		if err != nil {
			continue
		}
		pgrp, err := parseStatPgrp(st)
		if err != nil {
			continue
		}
		if _, ok := groups[pgrp]; !ok {
			continue
		}
		status, err := fs.ReadFile(proc, name+"/status")
		if err != nil {
			continue
		}
		n, err := parseRssAnon(status)
		if err != nil {
			continue
		}
		used[pgrp] += n
	}
	return used, nil
}

var errNoField = errors.New("field not found")

// parseStatPgrp reads the process group id from /proc/PID/stat: the fifth field, counted after
// the command name in parentheses (which may itself hold spaces and parentheses).
func parseStatPgrp(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc stat: no ')' after the command name: %w", errNoField)
	}
	f := bytes.Fields(b[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 3: %w", len(f), errNoField)
	}
	n, err := strconv.Atoi(string(f[2]))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("parse /proc stat pgrp %q: not a process group id", f[2])
	}
	return n, nil
}

// parseRssAnon reads "RssAnon:  1234 kB" from /proc/PID/status, in bytes. A kernel thread or
// a zombie has no such line: 0, nil.
func parseRssAnon(b []byte) (uint64, error) {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("RssAnon:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("parse /proc status RssAnon %q: want a number of kB", bytes.TrimSpace(rest))
		}
		n, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || n > 1<<44 {
			return 0, fmt.Errorf("parse /proc status RssAnon %q: want a number of kB", f[0])
		}
		return n << 10, nil
	}
	return 0, nil
}

// limitMemory holds the worker that now runs t to t's memory= request (none lifts its limit):
// on this node through its spawner, on a member's node through MEM_LIMIT.
func (a *Agent) limitMemory(t *task, w *worker) {
	bytes := uint64(t.spec.Res["memory"])
	if bytes == 0 && !w.memLimited {
		return
	}
	w.memLimited = bytes > 0
	iv := a.memInterval()
	if w.node != nil && w.node.member != nil {
		w.node.member.conn.Send(wire.TMemLimit, 0, &wire.MemLimit{Worker: w.id, Bytes: bytes, Task: t.spec.Name, IntervalMs: iv.Milliseconds()})
		return
	}
	if w.procs != nil {
		w.procs.limitMemory(w.id, bytes, t.spec.Name, iv)
	}
}

// memInterval is the monitor's interval on every node (<= 0: off).
func (a *Agent) memInterval() time.Duration {
	switch iv := a.cfg.MemoryMonitorInterval; {
	case iv < 0:
		return 0
	case iv == 0:
		return DefaultMemoryMonitorInterval
	default:
		return iv
	}
}

// memLimit handles MEM_LIMIT from the head.
func (m *Member) memLimit(l *wire.MemLimit) {
	m.procs.limitMemory(l.Worker, l.Bytes, l.Task, time.Duration(l.IntervalMs)*time.Millisecond)
}

// limitMemory sets a worker's memory limit in this spawner's monitor, made on first use.
func (s *spawner) limitMemory(worker string, bytes uint64, task string, interval time.Duration) {
	s.mu.Lock()
	if s.mem == nil {
		if bytes == 0 || interval <= 0 {
			s.mu.Unlock()
			return
		}
		s.mem = newMemMonitor(s.log.Named("memmon"), s.pidOf)
	}
	m := s.mem
	s.mu.Unlock()
	m.set(worker, bytes, task, interval)
}

// pidOf is a running worker's process id (its process group's id too); 0 when none.
func (s *spawner) pidOf(worker string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[worker]; p != nil && p.started {
		return p.cmd.Process.Pid
	}
	return 0
}

// exitWait is how long the head node's agent waits, after the connection of a worker with a
// memory limit closed, for its process's exit (and whether the monitor stopped it).
const exitWait = 3 * time.Second

// awaitExit reports whether the loss of w, whose connection just closed, waits for its
// process's exit report: a worker with a memory limit may have been stopped by its node's
// monitor, which only that report says (the connection closes first). A report that never
// comes (a lost node is handled as such) is replaced by the connection's close after exitWait.
// Called with a.mu held.
func (a *Agent) awaitExit(w *worker) bool {
	if !w.memLimited || w.dead {
		return false
	}
	select {
	case <-w.exited:
		return false
	default:
	}
	time.AfterFunc(exitWait, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.workerLost(w, "its connection closed")
	})
	return true
}
