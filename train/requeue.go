package train

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

// Training that outlives its allocation. Two Slurm events end a job that has not finished:
//
//	time-limit warning (--signal=USR1@T: the warn signal to every process of the step)
//	  ─> checkpoint due (every rank: a byte on fd 6, and --checkpoint-signal)
//	  ─> rank 0 reports a checkpoint (or --checkpoint-timeout passes) ─> the ranks exit, or are
//	     stopped StopGrace later
//	  ─> --requeue: `scontrol requeue`, hold until Slurm ends the job; without: the gang goes on
//	preemption (PreemptMode=REQUEUE: SIGTERM to every process of the step, the job still
//	RUNNING with a PreemptTime: slurm.Job.Preempted)
//	  ─> checkpoint due, as above ─> stop the gang ─> hold until Slurm ends the job after its
//	     GraceTime and queues it again
//	the next allocation (SLURM_RESTART_COUNT > 0) ─> History.Latest ─> SHOAL_TRAIN_CHECKPOINT
//
// A SIGTERM in any other state (scancel, the time limit itself, the end of the grace time)
// ends the gang as before, without a restart.

// Due reasons, as the ranks read them on fd 6 (one byte each) and the history records them.
const (
	DueTimeLimit = 'T'
	DuePreempted = 'P'
	DueGrow      = 'G' // an elastic gang grows onto nodes that joined (grow.go)
)

// ignoreSignals makes this worker ignore sigs, so that the processes it starts inherit SIG_IGN
// for them. (It then no longer notes those it gets itself: Signal passes them on to the rank,
// which ignores them unless it has a handler of its own.)
func ignoreSignals(sigs []int) {
	for _, s := range sigs {
		signal.Ignore(syscall.Signal(s))
	}
}

// ignoresTerm says whether process pid ignores SIGTERM (/proc/PID/status SigIgn).
func ignoresTerm(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(syscall.SIGTERM)-1)) != 0
		}
	}
	return false
}

// Due tells the rank that a checkpoint is due (reason DueTimeLimit or DuePreempted): a byte on
// its fd 6 (shoal.train.checkpoint_due() reads it) and, when sig > 0, sig, unless Slurm has
// just sent the rank that signal itself (see Signal). It reports whether the rank runs.
func (r *RankActor) Due(reason int, sig int) (bool, error) {
	r.mu.Lock()
	p, running := r.cur, r.cur != nil && !r.status.Done
	if running {
		p.due.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		p.due.Write([]byte{byte(reason)})
	}
	r.mu.Unlock()
	if running && sig > 0 {
		r.Signal(sig)
	}
	return running, nil
}

// dueState is a checkpoint the gang was asked for and has not finished.
type dueState struct {
	reason int
	at     time.Time
	seq    int       // rank 0's checkpoint reports when it was asked
	ckptAt time.Time // when rank 0 reported one since (zero: not yet)
}

// due asks every rank of actors for a checkpoint, once per reason; passed is the signal being
// passed on to every rank anyway (not sent a second time as the checkpoint signal).
func (g *gang) due(actors []*client.Actor, reason int, passed syscall.Signal) {
	if g.pending != nil && g.pending.reason == reason {
		return
	}
	what := map[int]string{DueTimeLimit: "the time-limit warning", DuePreempted: "a preemption", DueGrow: "nodes joined"}[reason]
	g.say("%s: a checkpoint is due; asking every rank for one (up to %s)", what, g.cfg.CheckpointTimeout)
	g.pending = &dueState{reason: reason, at: time.Now(), seq: g.rank0Seq}
	sig := g.cfg.CheckpointSignal
	if sig == passed {
		sig = 0
	}
	for _, a := range actors {
		a.Call("Due", reason, int(sig)) // as Signal's calls: their answers are not waited for
	}
}

// dueDone says whether the checkpoint asked for is done, or no longer worth waiting for: rank
// 0 reported one and every rank exited or StopGrace passed since; or CheckpointTimeout passed.
func (g *gang) dueDone(left int) bool {
	d := g.pending
	if d == nil {
		return false
	}
	if d.ckptAt.IsZero() && g.rank0Seq > d.seq {
		d.ckptAt = time.Now()
		g.say("checkpoint %s reported %.1f s after it was asked for", g.ckpt, time.Since(d.at).Seconds())
	}
	if !d.ckptAt.IsZero() && (left == 0 || time.Since(d.ckptAt) > g.cfg.StopGrace) {
		return true
	}
	if left == 0 {
		return true
	}
	if time.Since(d.at) > g.cfg.CheckpointTimeout {
		g.say("no checkpoint reported within %s of asking; going on with %s", g.cfg.CheckpointTimeout, orStart(g.ckpt))
		return true
	}
	return false
}

func orStart(ckpt string) string {
	if ckpt == "" {
		return "no checkpoint (the next allocation starts from the start)"
	}
	return "the last one, " + ckpt
}

// onSignal handles a signal shoal train got while the gang runs, and says whether it ends the
// gang without a restart (scancel, Ctrl-C). A SIGTERM while the job is being preempted asks
// for a checkpoint instead, and so does the time-limit warning (which is passed on too).
func (g *gang) onSignal(sig syscall.Signal, actors []*client.Actor) (cancel bool) {
	if sig == syscall.SIGTERM && g.preempted() {
		g.due(actors, DuePreempted, 0)
		return false
	}
	if g.cfg.WarnSignal != 0 && sig == g.cfg.WarnSignal {
		g.due(actors, DueTimeLimit, sig)
	}
	g.log.Debug("passing a signal on to every rank", "signal", sig)
	for _, a := range actors {
		a.Call("Signal", int(sig))
	}
	return sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGHUP
}

// preempted asks Config.Preempted (scontrol) whether the job is in a preemption's grace time.
func (g *gang) preempted() bool {
	if g.cfg.Preempted == nil {
		return false
	}
	p := g.cfg.Preempted()
	if p {
		g.log.Info("the job is being preempted")
	}
	return p
}

// finishDue ends an attempt whose checkpoint was asked for: the ranks still running are
// stopped, and then, for a preemption, shoal train holds the allocation until Slurm ends the
// job; for the time-limit warning with --requeue it requeues the job and holds; without
// --requeue (the ranks exited by themselves) the run is over.
func (g *gang) finishDue(actors []*client.Actor, done []bool) Result {
	for i, st := range g.stopAll(actors, done) {
		if st != nil && st.Last != nil && g.rank0 == i && st.Last.Seq > g.rank0Seq {
			g.noteCheckpoint(st.Last)
		}
	}
	d := g.pending
	switch {
	case d.reason == DueGrow:
		g.say("elastic: the gang is stopped with %s; it restarts on the nodes there are now", orStart(g.ckpt))
		return Result{FailedRank: -1, End: EndGrown, Grow: true}
	case d.reason == DuePreempted:
		g.say("preempted: the gang is stopped with %s; holding the allocation until Slurm ends the job and queues it again", orStart(g.ckpt))
		return Result{FailedRank: -1, Code: 128 + int(syscall.SIGTERM), End: EndPreempted, Hold: true}
	case g.cfg.Requeue:
		if g.cfg.RequeueJob == nil {
			g.say("--requeue: not in a Slurm batch job; nothing to requeue")
			return Result{FailedRank: -1, Code: 1, End: EndTimeLimit}
		}
		if err := g.cfg.RequeueJob(); err != nil {
			g.say("time-limit warning: %v", err)
			return Result{FailedRank: -1, Code: 1, End: EndTimeLimit}
		}
		g.say("time-limit warning: the gang is stopped with %s; the job is requeued and resumes from it", orStart(g.ckpt))
		return Result{FailedRank: -1, Code: 0, End: EndRequeued, Hold: true}
	default:
		g.say("time-limit warning: the ranks exited after checkpoint %s", g.ckpt)
		return Result{FailedRank: -1, Code: 0, End: EndTimeLimit}
	}
}

// noteCheckpoint records rank 0's checkpoint report: the gang's checkpoint from now on.
func (g *gang) noteCheckpoint(rep *Report) {
	g.rank0Seq = rep.Seq
	g.ckpt = rep.Checkpoint
	if g.cfg.History != nil && g.attemptID != 0 {
		if err := g.cfg.History.Checkpoint(g.attemptID, rep.Checkpoint, rep.Metrics); err != nil {
			g.log.Warn("record the checkpoint in the run's history", "error", err)
		}
	}
}

// ignored are the signals ranks start with ignored: with --requeue, SIGTERM and the warning's.
func (g *gang) ignored() []int {
	if !g.cfg.Requeue {
		return nil
	}
	out := []int{int(syscall.SIGTERM)}
	if g.cfg.WarnSignal != 0 && g.cfg.WarnSignal != syscall.SIGTERM {
		out = append(out, int(g.cfg.WarnSignal))
	}
	return out
}
