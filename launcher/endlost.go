package launcher

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A member node the head lost while the driver ran (no heartbeat: a hung or SIGSTOPped agent,
// a node cut off) may still hold its task of the job step: a stopped process does nothing, not
// even exit, and srun waits for every task of its step, so the job would run on until its time
// limit. Nothing on that node can help, so the head ends that task itself, last of all, once
// the driver has exited and the cluster is torn down: one `srun --overlap` step on the lost
// nodes that asks the node's slurmstepd for the head's step's processes there (`scontrol
// listpids JOB.STEP NODE`), waits up to endLostWait for them to end by themselves (an agent cut
// off gives its head up after the heartbeat timeout), then sends them SIGCONT and SIGTERM, as
// scancel would, and SIGKILL after endLostGrace to whatever is left. srun's exit status is then
// the highest of its tasks': the driver's code, or the lost member's (1 when it found its head
// gone, 143 after SIGTERM, 137 after SIGKILL); the head says which on stderr.

// endLostScript runs on each lost node as `sh -c endLostScript sh STEP WAIT GRACE`; STEP is
// JOB.STEP of the head's step. It prints what it did, one line.
const endLostScript = `step=$1 wait=$2 grace=$3 me=${SLURMD_NODENAME:-?}
pids() { scontrol listpids "$step" "$me" 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }'; }
command -v scontrol >/dev/null || { echo "shoal: $me: no scontrol here: cannot end the task of step $step"; exit 0; }
t=0
while [ -n "$(pids)" ] && [ "$t" -lt "$wait" ]; do sleep 1; t=$((t + 1)); done
p=$(pids)
[ -z "$p" ] && { echo "shoal: $me: the task of step $step had ended"; exit 0; }
kill -CONT $p 2>/dev/null; kill -TERM $p 2>/dev/null
t=0
while [ -n "$(pids)" ] && [ "$t" -lt "$grace" ]; do sleep 1; t=$((t + 1)); done
p=$(pids)
[ -z "$p" ] && { echo "shoal: $me: the task of step $step still ran; ended it with SIGTERM"; exit 0; }
kill -KILL $p 2>/dev/null
echo "shoal: $me: the task of step $step still ran; ended it with SIGKILL ($grace s after SIGTERM)"
`

const (
	// endLostGrace is how long a lost member's processes get between SIGTERM and SIGKILL
	// (the test cluster's KillWait; a stopped agent woken by SIGCONT ends in about a second).
	endLostGrace = 5 * time.Second
	// endLostBound bounds the helper step beyond its own waits (srun's start on the nodes).
	endLostBound = 30 * time.Second
)

// lostNodes is the joined members (others) that are no longer alive (the head agent's
// Nodes()), sorted.
func lostNodes(others, alive []string) []string {
	up := map[string]bool{}
	for _, n := range alive {
		up[n] = true
	}
	var lost []string
	for _, n := range others {
		if !up[n] {
			lost = append(lost, n)
		}
	}
	sort.Strings(lost)
	return lost
}

// endLostArgs is the srun command line that ends step (JOB.STEP)'s tasks on nodes: wait is how
// long they may take to end by themselves.
func endLostArgs(job, step string, nodes []string, wait time.Duration) []string {
	n := fmt.Sprint(len(nodes))
	secs := func(d time.Duration) string { return fmt.Sprint(int((d + time.Second - 1) / time.Second)) }
	return []string{"--overlap", "--mem=0", "--jobid=" + job, "-N", n, "-n", n, "--ntasks-per-node=1",
		"--nodelist=" + strings.Join(nodes, ","), "--kill-on-bad-exit=0", "--quiet",
		"sh", "-c", endLostScript, "sh", job + "." + step, secs(wait), secs(endLostGrace)}
}

// endLostTasks ends what is left of step's tasks on the lost nodes (see above), writing what it
// did to out. code is the driver's exit code, for the message.
func endLostTasks(ctx context.Context, log hclog.Logger, out io.Writer, job, step string, nodes []string, wait time.Duration, code int) {
	if job == "" || step == "" || len(nodes) == 0 {
		return
	}
	fmt.Fprintf(out, "shoal: node(s) %s were lost while the driver ran (it exited with code %d); ending what is left of their tasks of step %s.%s, or srun would wait for them until the job's time limit; srun's exit status is then the highest of its tasks' (the driver's code; 1, 143 or 137 for a lost node's task that ended by itself, by SIGTERM or by SIGKILL)\n",
		strings.Join(nodes, ","), code, job, step)
	ctx, cancel := context.WithTimeout(ctx, wait+endLostGrace+endLostBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "srun", endLostArgs(job, step, nodes, wait)...)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		log.Warn("end the lost nodes' tasks of this step", "nodes", strings.Join(nodes, ","), "error", err)
		fmt.Fprintf(out, "shoal: could not end the lost nodes' tasks of step %s.%s (%v); `scancel %s` ends the job\n", job, step, err, job)
		return
	}
	log.Info("ended the lost nodes' tasks of this step", "nodes", strings.Join(nodes, ","), "took", time.Since(start).Round(time.Millisecond).String())
}
