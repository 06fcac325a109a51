package slurm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Job is what `scontrol show job -o ID` (Slurm 22.05) says about a job: the fields shoal
// reads, and all of them in Fields.
type Job struct {
	ID        string
	State     string // JobState: RUNNING, COMPLETING, PENDING, CANCELLED, TIMEOUT, ...
	Partition string
	Restarts  int    // how often the job was requeued
	Requeue   bool   // Requeue=1: Slurm may queue the job again
	StdOut    string // the batch script's output file, as scontrol expands it
	// PreemptTime is when the job was preempted ("None": never). A preempted job keeps
	// running through its partition's GraceTime, with State RUNNING; at the end of the grace
	// time Slurm ends it (State COMPLETING) and, with PreemptMode=REQUEUE, queues it again.
	PreemptTime string
	Fields      map[string]string
}

// Preempted says whether the job is in its preemption grace time: still running, with a
// preemption time set. A SIGTERM that comes then is the preemption's; one that comes for a
// scancel, a time limit or a requeue finds the job in another state (CANCELLED, TIMEOUT,
// COMPLETING).
func (j Job) Preempted() bool {
	return j.State == "RUNNING" && j.PreemptTime != "" && j.PreemptTime != "None"
}

// ErrJobRecord wraps what ParseJob cannot read.
var ErrJobRecord = errors.New("invalid scontrol job record")

// scontrol prints keys of letters, digits, '_', ':' and '/' ("AllocNode:Sid", "CPUs/Task").
var jobKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_:/]*=`)

// ParseJob reads the first record of `scontrol show job -o` (one line of space-separated
// Key=Value fields). A value with spaces in it (a Command or Comment) goes on until the next
// word that starts a field. The record must have JobId and JobState.
func ParseJob(r io.Reader) (Job, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	line, err := br.ReadString('\n')
	if err != nil && err != io.EOF {
		return Job{}, fmt.Errorf("%w: %v", ErrJobRecord, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) > 1<<20 {
		return Job{}, fmt.Errorf("%w: a record of %d bytes", ErrJobRecord, len(line))
	}
	f := map[string]string{}
	key := ""
	for _, w := range strings.Split(line, " ") {
		if m := jobKey.FindString(w); m != "" {
			key = m[:len(m)-1]
			f[key] = w[len(m):]
			continue
		}
		if key == "" {
			if w == "" {
				continue
			}
			return Job{}, fmt.Errorf("%w: %q before the first field", ErrJobRecord, w)
		}
		f[key] += " " + w
	}
	for k, v := range f {
		f[k] = strings.TrimRight(v, " ")
	}
	j := Job{ID: f["JobId"], State: f["JobState"], Partition: f["Partition"], StdOut: f["StdOut"],
		PreemptTime: f["PreemptTime"], Requeue: f["Requeue"] == "1", Fields: f}
	if j.ID == "" || j.State == "" {
		return Job{}, fmt.Errorf("%w: no JobId or JobState in %q", ErrJobRecord, truncate(line, 200))
	}
	if s := f["Restarts"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return Job{}, fmt.Errorf("%w: Restarts=%q", ErrJobRecord, s)
		}
		j.Restarts = n
	}
	return j, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ShowJob runs `scontrol show job -o ID` (at most 10 s) and parses its answer.
func ShowJob(ctx context.Context, id string) (Job, error) {
	if id == "" {
		return Job{}, errors.New("show job: no job id (SLURM_JOB_ID is not set: not in a Slurm job)")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "scontrol", "show", "job", "-o", id).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return Job{}, fmt.Errorf("scontrol show job %s: %w: %s", id, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return Job{}, fmt.Errorf("scontrol show job %s: %w", id, err)
	}
	return ParseJob(strings.NewReader(string(out)))
}

// Requeue runs `scontrol requeue ID`: Slurm ends the job (SIGTERM to its steps, SIGKILL after
// KillWait) and queues it again; it starts again with SLURM_RESTART_COUNT one higher.
func Requeue(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("requeue: no job id (SLURM_JOB_ID is not set: not in a Slurm job)")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "scontrol", "requeue", id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("scontrol requeue %s: %w: %s (was the job submitted with --no-requeue, or is JobRequeue=0?)", id, err, strings.TrimSpace(string(out)))
	}
	return nil
}
