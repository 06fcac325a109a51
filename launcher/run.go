package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// forwarded are the signals passed on to the driver.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// Run starts a cluster, runs argv as the driver with the cluster in its environment, and tears
// the cluster down. It returns the driver's exit code (128+signal when a signal killed it).
func Run(ctx context.Context, log hclog.Logger, o Options, argv []string) (int, error) {
	if len(argv) == 0 {
		return 2, errors.New("no command to run; usage: shoal run [options] -- CMD ARGS...")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 127, fmt.Errorf("run %q: %w", argv[0], err)
	}
	// Orphans of the driver (daemons it forgot) are re-parented to us, so we can end them.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	if o.Kind == "" {
		o.Kind = "run"
	}
	o.Command = argv
	c, err := Start(log, o)
	if err != nil {
		return 1, err
	}
	defer func() {
		c.Close()
		reapOrphans(log)
	}()
	code, err := runDriver(ctx, log, c, path, argv)
	if rerr := c.WriteReport(os.Stderr, o.Observe); rerr != nil && err == nil {
		log.Error("end-of-job report", "error", rerr)
	}
	return code, err
}

// runDriver runs argv (path resolved) with the cluster in its environment, forwarding signals,
// and returns its exit code. The driver gets SIGTERM should this process die (SIGKILL, the OOM
// killer): its cluster went with it, and a driver left running would hold the allocation (a
// Slurm step ends when its processes do) until its own end or the job's time limit.
func runDriver(ctx context.Context, log hclog.Logger, c *Cluster, path string, argv []string) (int, error) {
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args = argv
	cmd.Env = append(os.Environ(), c.Env()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	// Pdeathsig fires when the thread that started the child ends: it is started from a locked
	// thread that lives until the child has been waited for
	started, waited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		err := cmd.Start()
		started <- err
		if err == nil {
			waited <- cmd.Wait()
		}
	}()
	if err := <-started; err != nil {
		return 127, fmt.Errorf("start %q: %w", argv[0], err)
	}
	log.Debug("driver started", "pid", cmd.Process.Pid, "cluster", c.ID)
	for {
		select {
		case s := <-sigs:
			log.Debug("forwarding signal to the driver", "signal", s.String())
			cmd.Process.Signal(s)
		case <-c.Shutdown:
			log.Info("cluster shutdown requested; stopping the driver")
			cmd.Process.Signal(syscall.SIGTERM)
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
		case err := <-waited:
			code := ExitCode(cmd.ProcessState, err)
			c.CommandExited(cmd.Process.Pid, code)
			return code, nil
		}
	}
}

// ExitCode maps a finished process to a shell-style exit code.
func ExitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// reapOrphans ends processes re-parented to us (the driver's leftovers): SIGTERM, then SIGKILL
// after a grace period, and reaps them.
func reapOrphans(log hclog.Logger) {
	kids := children()
	if len(kids) == 0 {
		return
	}
	log.Debug("ending processes the driver left behind", "pids", fmt.Sprint(kids))
	for _, p := range kids {
		unix.Kill(p, unix.SIGTERM)
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, p := range kids {
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(p, &ws, unix.WNOHANG, nil)
			if got == p || err != nil {
				break
			}
			if time.Now().After(deadline) {
				unix.Kill(p, unix.SIGKILL)
				unix.Wait4(p, &ws, 0, nil)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// children lists the pids whose parent is this process.
func children() []int {
	me := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// the command may hold spaces and parens: the fields start after the last ')'
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == me {
				out = append(out, pid)
			}
		}
	}
	return out
}
