package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-hpc/shoal/slurm"
	"github.com/shoal-hpc/shoal/train"
)

// The Go side of shoal.train.run (Python) across allocations: the same history, default
// state directory and Slurm calls as `shoal train`, in two hidden commands.

// trainRunStateCommand is `shoal train run-state`: the run's history for one allocation of a
// Python driver. The run's controller actor starts it and speaks train.StateServer's JSON
// lines to it; it answers with a hello line first (the state directory, the attempts so far,
// the newest checkpoint).
func trainRunStateCommand() *cli.Command {
	return &cli.Command{
		Name:   "run-state",
		Hidden: true,
		Usage:  "the run's history for shoal.train.run (JSON lines on stdin/stdout)",
		Flags: []cli.Flag{&cli.StringFlag{Name: "state-dir", EnvVars: []string{"SHOAL_TRAIN_STATE_DIR"},
			Usage: "as `shoal train --state-dir` (default in a Slurm job: shoal-train-JOBID next to the job's output file)"}},
		Action: func(c *cli.Context) error {
			// Slurm signals every process of the step: a preemption's SIGTERM must not end the
			// history before the checkpoint is in it. Stdin's EOF ends this process; a SIGTERM
			// seen before it makes that end a cancel rather than a loss.
			var termed atomic.Bool
			sigs := make(chan os.Signal, 8)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
			go func() {
				for s := range sigs {
					if s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGHUP {
						termed.Store(true)
					}
				}
			}()
			jobID := os.Getenv("SLURM_JOB_ID")
			var job *slurm.Job
			if jobID != "" {
				if j, err := slurm.ShowJob(context.Background(), jobID); err == nil {
					job = &j
				}
			}
			dir := c.String("state-dir")
			if dir == "" {
				dir = defaultStateDir(job)
			}
			restarts, _ := strconv.Atoi(os.Getenv("SLURM_RESTART_COUNT"))
			hello := map[string]any{"state_dir": dir, "job_id": jobID, "restart_count": restarts, "first_attempt": 0, "checkpoint": ""}
			var h *train.History
			if dir != "" {
				var err error
				if h, err = train.OpenHistory(dir); err != nil {
					return cli.Exit(err.Error(), 1)
				}
				defer h.Close()
				if err := h.BeginAllocation(jobID, restarts, os.Getenv("SLURM_JOB_NODELIST")); err != nil {
					return cli.Exit(err.Error(), 1)
				}
				n, err := h.Attempts()
				if err != nil {
					return cli.Exit(fmt.Sprintf("read the run's history in %s: %v", dir, err), 1)
				}
				ck, err := h.Latest()
				if err != nil {
					return cli.Exit(fmt.Sprintf("read the run's history in %s: %v", dir, err), 1)
				}
				hello["first_attempt"], hello["checkpoint"] = n, ck
			}
			if err := json.NewEncoder(os.Stdout).Encode(hello); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			eof := func() string {
				if termed.Load() {
					return train.EndCancelled
				}
				return train.EndLost
			}
			srv := train.NewStateServer(h)
			// its own session (shoal.train's Popen), so that the agent's kill of the controller's
			// process group leaves it to record the end; it goes when its parent does
			go func(ppid int) {
				for range time.Tick(500 * time.Millisecond) {
					if os.Getppid() != ppid {
						srv.Close(eof())
						os.Exit(0)
					}
				}
			}(os.Getppid())
			err := srv.ServeState(os.Stdin, os.Stdout, eof)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			return nil
		},
	}
}

// trainSlurmJobCommand is `shoal train slurm-job [--requeue]`: this job's state (is it being
// preempted?) as JSON, as `shoal train` asks on a SIGTERM; with --requeue, `scontrol requeue`.
func trainSlurmJobCommand() *cli.Command {
	return &cli.Command{
		Name:   "slurm-job",
		Hidden: true,
		Usage:  "print this Slurm job's state as JSON (preempted: in a preemption's grace time); --requeue requeues it",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "requeue", EnvVars: []string{"SHOAL_TRAIN_SLURM_JOB_REQUEUE"},
			Usage: "requeue the job (scontrol requeue) instead of printing its state"}},
		Action: func(c *cli.Context) error {
			id := os.Getenv("SLURM_JOB_ID")
			if id == "" {
				return cli.Exit("not in a Slurm job (SLURM_JOB_ID is not set)", 2)
			}
			if c.Bool("requeue") {
				// The requeue SIGTERMs every process of the job, this one and its scontrol
				// among them, possibly before scontrol has exited with Slurm's answer: both
				// ignore it (an ignored signal stays ignored across exec), as `shoal train`
				// does while it requeues.
				signal.Ignore(syscall.SIGTERM)
				if err := slurm.Requeue(context.Background(), id); err != nil {
					return cli.Exit(err.Error(), 1)
				}
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"job_id": id, "requeued": true})
			}
			j, err := slurm.ShowJob(context.Background(), id)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			return json.NewEncoder(os.Stdout).Encode(map[string]any{"job_id": id, "state": j.State,
				"preempt_time": j.PreemptTime, "preempted": j.Preempted()})
		},
	}
}
