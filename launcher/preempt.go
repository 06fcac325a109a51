package launcher

import (
	"context"
	"os"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/slurm"
)

// preemptHold passes on the signals of in, but for a SIGTERM that comes while the Slurm job
// is in its preemption grace time (slurm.Job.Preempted): that one is dropped, so this agent,
// and the workers and ranks of its node, stay up until Slurm ends the job at the end of the
// grace time (a second SIGTERM, then SIGKILL). An agent that left at the first SIGTERM would
// end the job step early, the batch script would exit, and Slurm would record the job as done
// instead of queueing it again (PreemptMode=REQUEUE): the run would be lost. The driver
// (`shoal train`) uses the grace time to have the gang checkpoint.
func preemptHold(log hclog.Logger, in <-chan os.Signal) <-chan os.Signal {
	job := os.Getenv("SLURM_JOB_ID")
	if job == "" {
		return in
	}
	out := make(chan os.Signal, 4)
	go func() {
		for s := range in {
			if s == syscall.SIGTERM {
				if j, err := slurm.ShowJob(context.Background(), job); err == nil && j.Preempted() {
					log.Info("SIGTERM of a preemption: staying up until Slurm ends the job", "job_id", job, "preempt_time", j.PreemptTime)
					continue
				}
			}
			out <- s
		}
	}()
	return out
}
