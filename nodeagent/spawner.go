package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
)

// spawner starts worker processes on this node and reports their ends. The head node's agent
// and every member agent start workers through one, so a worker starts one way everywhere:
// the node's environment less Slurm's rank variables and shoal's own, plus what the head
// decided (spec.Env); its own process group, killed with the agent (Pdeathsig); a cgroup whose
// device program admits only its GPUs where the agent may; pinned to its GPUs' CPUs. The slow
// part (cgroup, device program, fork and exec) runs outside every lock.
//
//	start ──> launching ──(exec)──> running ──(exit)──> exited(why, stderr)
//	              │ exec failed ──────────────────────────^
//	stop: no start from then on; SIGTERM to all, SIGKILL after the grace, wait for all
type spawner struct {
	log     hclog.Logger
	scrub   func([]string) []string
	stdout  io.Writer
	stderr  io.Writer
	confine *confine.Confiner
	topo    *gpu.Topology
	cpus    []int
	uvm     int
	extra   []confine.Rule

	mu       sync.Mutex
	stopping bool
	procs    map[string]*proc
	wg       sync.WaitGroup
	mem      *memMonitor // made when a worker first gets a memory limit (memmon.go)
}

type proc struct {
	cmd       *exec.Cmd
	started   bool        // cmd.Process is set (under the spawner's lock)
	killLater bool        // a kill asked for while it was launching
	outs      []io.Writer // where its stdout and stderr go (told its pid once it runs)
}

// spawnSpec is one worker to start.
type spawnSpec struct {
	Worker string
	Argv   []string
	Env    []string // added to the node's environment
	Cwd    string   // used when it is a directory
	GPUs   []int
	// Output, when set, gives the worker's stdout and stderr (default: the spawner's).
	Output func() (io.Writer, io.Writer)
}

var errStopping = errors.New("the node is stopping")

// start launches spec's worker; exited is called once, from another goroutine and with no
// lock held, when the process has ended or could not start, with the end of its stderr; oom
// says the memory monitor stopped it (memmon.go), and why then says what it used.
func (s *spawner) start(spec spawnSpec, exited func(why, stderr string, oom bool)) error {
	if len(spec.Argv) == 0 {
		return errors.New("a worker needs a command")
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	env := os.Environ()
	if s.scrub != nil {
		env = s.scrub(env)
	}
	cmd.Env = append(filterEnv(env, "SHOAL_", "PYTHONPATH="), spec.Env...)
	if spec.Cwd != "" {
		if st, err := os.Stat(spec.Cwd); err == nil && st.IsDir() {
			cmd.Dir = spec.Cwd
		}
	}
	stdout, stderr := s.stdout, s.stderr
	if spec.Output != nil {
		stdout, stderr = spec.Output()
	}
	tail := &tailBuf{max: 2048}
	cmd.Stdout = stdout
	cmd.Stderr = tail
	if stderr != nil {
		cmd.Stderr = io.MultiWriter(stderr, tail)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, outs: []io.Writer{stdout, stderr}}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return errStopping
	}
	if s.procs == nil {
		s.procs = map[string]*proc{}
	}
	s.procs[spec.Worker] = p
	s.wg.Add(1)
	s.mu.Unlock()
	go s.launch(spec, p, tail, exited)
	return nil
}

func (s *spawner) launch(spec spawnSpec, p *proc, tail *tailBuf, exited func(why, stderr string, oom bool)) {
	defer s.wg.Done()
	cmd := p.cmd
	group := s.confineWorker(spec, cmd)
	err := cmd.Start()
	if cmd.SysProcAttr.UseCgroupFD {
		syscall.Close(cmd.SysProcAttr.CgroupFD)
	}
	s.mu.Lock()
	if err != nil {
		delete(s.procs, spec.Worker)
		s.mu.Unlock()
		s.closeGroup(group, spec.Worker)
		s.log.Error("start worker", "worker", spec.Worker, "exe", spec.Argv[0], "error", err)
		exited(fmt.Sprintf("could not start %s: %v", spec.Argv[0], err), "", false)
		return
	}
	p.started = true
	if p.killLater || s.stopping {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	s.mu.Unlock()
	for _, w := range p.outs {
		if lw, ok := w.(interface{ SetPID(int) }); ok {
			lw.SetPID(cmd.Process.Pid) // lines before any task marker name the worker's process (obs)
		}
	}
	if len(spec.GPUs) > 0 {
		setAffinity(s.log, cmd.Process.Pid, gpuCPUs(s.topo, s.cpus, spec.GPUs))
	}
	werr := cmd.Wait()
	why := "exited"
	if werr != nil {
		why = werr.Error()
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left in its process group
	s.mu.Lock()
	delete(s.procs, spec.Worker)
	mem := s.mem
	s.mu.Unlock()
	s.closeGroup(group, spec.Worker)
	if oom := mem.take(spec.Worker); oom != "" {
		exited(oom, tail.String(), true)
		return
	}
	exited(why, tail.String(), false)
}

// confineWorker puts the worker in a cgroup whose device program admits only its GPUs.
func (s *spawner) confineWorker(spec spawnSpec, cmd *exec.Cmd) *confine.Group {
	if s.confine == nil {
		return nil
	}
	rules, err := DeviceRules(s.topo, spec.GPUs, s.uvm, s.extra)
	if err == nil {
		var g *confine.Group
		var f *os.File
		if g, f, err = openGroup(s.confine, spec.Worker, rules); err == nil {
			fd, derr := syscall.Dup(int(f.Fd()))
			f.Close()
			if derr != nil {
				g.Close()
				err = derr
			} else {
				cmd.SysProcAttr.UseCgroupFD = true
				cmd.SysProcAttr.CgroupFD = fd
				return g
			}
		}
	}
	s.log.Error("confine worker; starting it unconfined", "worker", spec.Worker, "error", err)
	return nil
}

func (s *spawner) closeGroup(g *confine.Group, worker string) {
	if g == nil {
		return
	}
	if err := g.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove worker cgroup", "worker", worker, "error", err)
	}
}

// signal sends sig to a worker: SIGINT to the worker alone (a cancel: it interrupts its task),
// any other signal to its whole process group. A worker still launching is killed once it has
// started; SIGINT is dropped then.
func (s *spawner) signal(worker string, sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[worker]
	if p == nil {
		return
	}
	if !p.started {
		if sig != syscall.SIGINT {
			p.killLater = true
		}
		return
	}
	if sig == syscall.SIGINT {
		p.cmd.Process.Signal(sig)
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop ends every worker: nothing starts from now on; SIGTERM, then SIGKILL to each process
// group after grace; it returns when every worker has been reaped.
func (s *spawner) stop(grace time.Duration) {
	s.mu.Lock()
	s.stopping = true
	s.mem.close()
	var names []string
	for w := range s.procs {
		names = append(names, w)
	}
	s.mu.Unlock()
	for _, w := range names {
		s.signal(w, syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.mu.Lock()
		for _, p := range s.procs {
			if p.started {
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			} else {
				p.killLater = true
			}
		}
		s.mu.Unlock()
		<-done
	}
}

// pids lists the workers' process ids.
func (s *spawner) pids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.procs {
		if p.started {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	sort.Ints(out)
	return out
}

// writer is f as an io.Writer, nil (not a nil *os.File) when f is nil.
func writer(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}
