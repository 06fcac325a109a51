package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/slurm"
	"github.com/shoal-hpc/shoal/train"
	"github.com/shoal-hpc/shoal/wire"
)

// requeueFlags are `shoal train`'s flags for training that outlives its allocation.
func requeueFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "state-dir", EnvVars: []string{"SHOAL_TRAIN_STATE_DIR"},
			Usage: "where the run's history (SQLite: allocations, attempts, checkpoints) lives across allocations; a requeued " +
				"job resumes from its newest checkpoint (default in a Slurm job: shoal-train-JOBID next to the job's output " +
				"file; outside Slurm: none)"},
		&cli.BoolFlag{Name: "requeue", EnvVars: []string{"SHOAL_TRAIN_REQUEUE"},
			Usage: "after the time-limit warning (--warn-signal) and the checkpoint, requeue the job (scontrol requeue); ranks start " +
				"with SIGTERM ignored, so a preemption's SIGTERM asks them for a checkpoint instead of killing them"},
		&cli.StringFlag{Name: "warn-signal", Value: "USR1", EnvVars: []string{"SHOAL_TRAIN_WARN_SIGNAL"},
			Usage: "the signal of the job's time-limit warning (#SBATCH --signal=USR1@120): a checkpoint is due; '' for none"},
		&cli.StringFlag{Name: "checkpoint-signal", EnvVars: []string{"SHOAL_TRAIN_CHECKPOINT_SIGNAL"},
			Usage: "a signal sent to every rank when a checkpoint is due, for scripts that do not call shoal.train.checkpoint_due() (e.g. USR2; default: none)"},
		&cli.DurationFlag{Name: "checkpoint-timeout", Value: time.Minute, EnvVars: []string{"SHOAL_TRAIN_CHECKPOINT_TIMEOUT"},
			Usage: "how long to wait for rank 0's checkpoint once one is due"},
	}
}

// parseSignal reads a signal name (USR1, SIGUSR1) or number; "" is none.
func parseSignal(flag, s string) (syscall.Signal, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 && sig != syscall.SIGKILL && sig != syscall.SIGSTOP {
		return sig, nil
	}
	return 0, fmt.Errorf("--%s %q: not a signal that can be caught; give a name such as USR1 or USR2, or a number", flag, s)
}

// defaultStateDir is shoal-train-JOBID next to the job's output file (on the file system the
// job's next allocation sees too), or the submit directory's when scontrol does not say.
func defaultStateDir(job *slurm.Job) string {
	id := os.Getenv("SLURM_JOB_ID")
	if id == "" {
		return ""
	}
	dir := os.Getenv("SLURM_SUBMIT_DIR")
	if job != nil && filepath.IsAbs(job.StdOut) {
		dir = filepath.Dir(job.StdOut)
	}
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "shoal-train-"+id)
}

// runState is the run's state across allocations, as the CLI sets it up for train.Run.
type runState struct {
	hist  *train.History
	jobID string
}

// setupRequeue fills cfg's requeue fields from the flags, opens the history and announces it.
func setupRequeue(c *cli.Context, log hclog.Logger, cfg *train.Config) (*runState, error) {
	var err error
	if cfg.WarnSignal, err = parseSignal("warn-signal", c.String("warn-signal")); err != nil {
		return nil, err
	}
	if cfg.CheckpointSignal, err = parseSignal("checkpoint-signal", c.String("checkpoint-signal")); err != nil {
		return nil, err
	}
	cfg.CheckpointTimeout = c.Duration("checkpoint-timeout")
	cfg.Requeue = c.Bool("requeue")
	st := &runState{jobID: os.Getenv("SLURM_JOB_ID")}
	var job *slurm.Job
	if st.jobID != "" {
		if j, err := slurm.ShowJob(context.Background(), st.jobID); err == nil {
			job = &j
		} else {
			log.Warn("read the job's record", "error", err)
		}
		id := st.jobID
		cfg.RequeueJob = func() error { return slurm.Requeue(context.Background(), id) }
		cfg.Preempted = func() bool {
			j, err := slurm.ShowJob(context.Background(), id)
			return err == nil && j.Preempted()
		}
	} else if cfg.Requeue {
		return nil, fmt.Errorf("--requeue: not in a Slurm job (SLURM_JOB_ID is not set); requeue needs sbatch")
	}
	dir := c.String("state-dir")
	if dir == "" {
		dir = defaultStateDir(job)
	}
	if dir == "" {
		return st, nil
	}
	if st.hist, err = train.OpenHistory(dir); err != nil {
		return nil, err
	}
	restarts, _ := strconv.Atoi(os.Getenv("SLURM_RESTART_COUNT"))
	if err := st.hist.BeginAllocation(st.jobID, restarts, os.Getenv("SLURM_JOB_NODELIST")); err != nil {
		return nil, err
	}
	cfg.History = st.hist
	if cfg.FirstAttempt, err = st.hist.Attempts(); err != nil {
		return nil, fmt.Errorf("read the run's history in %s: %w", dir, err)
	}
	if cfg.Checkpoint, err = st.hist.Latest(); err != nil {
		return nil, fmt.Errorf("read the run's history in %s: %w", dir, err)
	}
	from := "the start"
	if cfg.Checkpoint != "" {
		from = "checkpoint " + cfg.Checkpoint
	}
	fmt.Fprintf(os.Stderr, "shoal train: run state in %s (--state-dir; `shoal train history --state-dir %s`); allocation %d (SLURM_RESTART_COUNT=%d), %d earlier attempts; starting from %s\n",
		dir, dir, restarts+1, restarts, cfg.FirstAttempt, from)
	return st, nil
}

// finish records how the allocation ended and, when res says so, holds it until Slurm ends
// the job: a preempted job that exits within its grace time is recorded as done by Slurm
// instead of being queued again.
func (st *runState) finish(res train.Result, sigs <-chan os.Signal, log hclog.Logger) {
	reason := res.End
	if reason == "" {
		switch {
		case res.Code == 0:
			reason = train.EndCompleted
		case res.Code > 128:
			reason = train.EndCancelled
		default:
			reason = train.EndFailed
		}
	}
	if st.hist != nil {
		if err := st.hist.EndAllocation(reason); err != nil {
			log.Warn("record the allocation's end", "error", err)
		}
		st.hist.Close()
	}
	if !res.Hold || st.jobID == "" {
		return
	}
	// until a signal comes that is not the preemption's, or the job leaves RUNNING. The
	// preemption's SIGTERM (and the head agent's copy of it) came before the checkpoint, within
	// milliseconds of each other: a SIGTERM a second after the hold began is the end.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	began := time.Now()
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 || s == syscall.SIGUSR2 {
				continue
			}
			if time.Since(began) < time.Second {
				if j, err := slurm.ShowJob(context.Background(), st.jobID); err == nil && j.Preempted() {
					continue
				}
			}
			return
		case <-tick.C:
			if j, err := slurm.ShowJob(context.Background(), st.jobID); err == nil && j.State != "RUNNING" {
				return
			}
		}
	}
}

// trainHistoryCommand is `shoal train history`.
func trainHistoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "show a run's allocations, attempts and checkpoints from its --state-dir",
		UsageText: "shoal train history --state-dir DIR [--json]\n\n   e.g. shoal train history --state-dir ~/runs/shoal-train-1234",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state-dir", EnvVars: []string{"SHOAL_TRAIN_STATE_DIR"}, Required: true,
				Usage: "the state directory `shoal train` announced at start"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"SHOAL_TRAIN_HISTORY_JSON"}, Usage: "print JSON instead of a table"},
		},
		Action: func(c *cli.Context) error {
			h, err := train.OpenHistoryReadOnly(c.String("state-dir"))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			defer h.Close()
			allocs, err := h.Read()
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(allocs)
			}
			printTrainHistory(os.Stdout, allocs)
			return nil
		},
	}
}

func printTrainHistory(w io.Writer, allocs []train.Allocation) {
	for i, a := range allocs {
		fmt.Fprintf(w, "allocation %d: job %s (restart %d) on %s, %s - %s: %s\n", i+1, a.JobID, a.RestartCount, a.Nodes,
			a.StartedAt, dash(a.EndedAt), dash(a.EndReason))
		for _, t := range a.Attempts {
			code := ""
			if t.ExitCode != nil {
				code = fmt.Sprintf(" (exit %d)", *t.ExitCode)
			}
			fmt.Fprintf(w, "  attempt %d: %d ranks (%s) from %s, %s - %s: %s%s", t.Attempt, t.WorldSize, t.Layout,
				orDash(t.ResumedFrom, "the start"), t.StartedAt, dash(t.EndedAt), dash(t.EndReason), code)
			if t.Detail != "" {
				fmt.Fprintf(w, ": %s", t.Detail)
			}
			fmt.Fprintln(w)
			for _, k := range t.Checkpoints {
				step := "-"
				if k.Step != nil {
					step = strconv.FormatInt(*k.Step, 10)
				}
				fmt.Fprintf(w, "    checkpoint step %s: %s %s %s\n", step, k.Path, string(k.Metrics), k.ReportedAt)
			}
		}
	}
}

func dash(s string) string { return orDash(s, "-") }

func orDash(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// spareNodes turns --spare-nodes k into the gang's node range: every live node but k runs
// ranks, and a lost node's ranks move to a spare (the same number of nodes, lo == hi).
func spareNodes(nodes []wire.NodeInfo, k int, nnodes string) (lo, hi int, err error) {
	live := 0
	for _, n := range nodes {
		if n.Alive {
			live++
		}
	}
	if strings.TrimSpace(nnodes) != "" {
		return 0, 0, fmt.Errorf("--spare-nodes %d with --nnodes %s: give one of them (with spares, the gang uses every node but the spares)", k, nnodes)
	}
	if k < 0 || k >= live {
		return 0, 0, fmt.Errorf("--spare-nodes %d: the cluster has %d live node(s); leave at least one node for ranks", k, live)
	}
	return live - k, live - k, nil
}
