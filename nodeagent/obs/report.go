package obs

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is the end-of-job summary `shoal run` and `shoal launch` print on stderr (and write
// with --report as JSON). CPU- and GPU-seconds "given" are what the allocation offered: each
// node's CPUs and GPUs times its time in the cluster (the head node's from the start, a
// member's from its join); "used" are what tasks and actor calls
// held while they ran on a worker (their resource request times their run time), which is
// what the scheduler can know without sampling every process.
type Report struct {
	WallSeconds      float64 `json:"wall_seconds"`
	Nodes            int     `json:"nodes"`
	Tasks            int     `json:"tasks"`
	TasksFailed      int     `json:"tasks_failed"`
	TasksRetried     int     `json:"tasks_retried"`
	Actors           int     `json:"actors"`
	ActorsFailed     int     `json:"actors_failed"`
	ActorCalls       int     `json:"actor_calls"`
	ActorCallsFailed int     `json:"actor_calls_failed"`
	CPUSecondsGiven  float64 `json:"cpu_seconds_given"`
	CPUSecondsUsed   float64 `json:"cpu_seconds_used"`
	GPUSecondsGiven  float64 `json:"gpu_seconds_given"`
	GPUSecondsUsed   float64 `json:"gpu_seconds_used"`
	ObjectBytesMoved int64   `json:"object_bytes_moved"`
	PeakStoreBytes   int64   `json:"peak_object_store_bytes"`
	// DroppedTasks is how many ended tasks the timeline no longer holds (the counts above
	// still count them).
	DroppedTasks int `json:"dropped_tasks"`
}

// Report sums up the job so far. It reads the source once (for nodes, the allocation's size
// and bytes moved); a nil recorder gives an empty report.
func (r *Recorder) Report() Report {
	if r == nil {
		return Report{}
	}
	var snap *Snapshot
	if src := r.source(); src != nil {
		s := src.Snapshot()
		snap = &s
	}
	return r.report(snap)
}

// report is Report on a snapshot already taken (nil: none).
func (r *Recorder) report(snap *Snapshot) Report {
	if snap == nil {
		snap = &Snapshot{}
	}
	r.notePeak(snap)
	now := r.now()
	r.mu.Lock()
	c := r.counts
	rep := Report{WallSeconds: now.Sub(r.start).Seconds(), PeakStoreBytes: r.peak, DroppedTasks: r.dropped}
	r.mu.Unlock()
	// what is running now has held its resources until now
	for _, rec := range r.liveRunning() {
		d := now.Sub(rec.Start).Seconds()
		c.cpuSeconds += rec.CPU * d
		c.gpuSeconds += rec.GPU * d
	}
	t, ac, am := c.byKind[KindTask], c.byKind[KindActorCreate], c.byKind[KindActorMethod]
	rep.Tasks, rep.TasksFailed, rep.TasksRetried = t.submitted, t.failed, t.retried+ac.retried+am.retried
	rep.Actors, rep.ActorsFailed = ac.submitted, ac.failed
	rep.ActorCalls, rep.ActorCallsFailed = am.submitted, am.failed
	rep.CPUSecondsUsed, rep.GPUSecondsUsed = c.cpuSeconds, c.gpuSeconds
	rep.Nodes = len(snap.Nodes)
	for _, n := range snap.Nodes {
		from := n.Joined // a member: from when it joined
		if n.Head || from.Before(r.start) || from.IsZero() {
			from = r.start // the head node was given from the start
		}
		held := max(now.Sub(from).Seconds(), 0)
		rep.CPUSecondsGiven += n.Total["CPU"] * held
		gpus := n.Total["GPU"]
		if gpus == 0 {
			gpus = float64(len(n.GPUs))
		}
		rep.GPUSecondsGiven += gpus * held
		rep.ObjectBytesMoved += n.ReceivedBytes
	}
	return rep
}

func (r *Recorder) liveRunning() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Record
	for _, rec := range r.live {
		if rec.state == Running {
			out = append(out, r.record(&rec))
		}
	}
	return out
}

// Write prints the report as a few lines for a terminal.
func (rep Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "shoal: job report: %s on %d node(s); tasks %d (%d failed, %d retried); actors %d (%d failed), actor calls %d (%d failed)\n",
		time.Duration(rep.WallSeconds*float64(time.Second)).Round(time.Millisecond), rep.Nodes, rep.Tasks, rep.TasksFailed,
		rep.TasksRetried, rep.Actors, rep.ActorsFailed, rep.ActorCalls, rep.ActorCallsFailed)
	fmt.Fprintf(&b, "shoal: CPU-seconds used by tasks %.1f of %.1f given (%s)", rep.CPUSecondsUsed, rep.CPUSecondsGiven,
		percent(rep.CPUSecondsUsed, rep.CPUSecondsGiven))
	if rep.GPUSecondsGiven > 0 || rep.GPUSecondsUsed > 0 {
		fmt.Fprintf(&b, "; GPU-seconds %.1f of %.1f (%s)", rep.GPUSecondsUsed, rep.GPUSecondsGiven, percent(rep.GPUSecondsUsed, rep.GPUSecondsGiven))
	}
	fmt.Fprintf(&b, "; object bytes moved between nodes %s; peak object store use %s\n", BytesHuman(rep.ObjectBytesMoved), BytesHuman(rep.PeakStoreBytes))
	_, err := io.WriteString(w, b.String())
	return err
}

func percent(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}

// BytesHuman writes a byte count as people read it (B, KiB, MiB, GiB).
func BytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
