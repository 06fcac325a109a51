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
		held := false
		for s := range in {
			// Slurm sends a member two SIGTERMs: the preemption's, then, at the end of the grace
			// time, the one that ends the job; the second passes without a question to
			// scontrol, which slurmctld, busy requeueing, may answer late.
			if s == syscall.SIGTERM && !held {
				// (not bounded below ShowJob's own 10 s: slurmctld, busy preempting, answers late,
				// and a preemption taken for a cancel loses the run; a bound of 2 s did, on the
				// test cluster)
				j, err := slurm.ShowJob(context.Background(), job)
				if err != nil {
					log.Warn("SIGTERM: cannot tell a preemption from a cancel; leaving", "job_id", job, "error", err)
				} else if j.Preempted() {
					log.Info("SIGTERM of a preemption: staying up until Slurm ends the job", "job_id", job, "preempt_time", j.PreemptTime)
					held = true
					continue
				} else {
					log.Info("SIGTERM: the job is not being preempted; leaving", "job_id", job, "state", j.State, "preempt_time", j.PreemptTime)
				}
			} else if s == syscall.SIGTERM {
				log.Info("SIGTERM after the preemption's: leaving", "job_id", job)
			}
			out <- s
		}
	}()
	return out
}
