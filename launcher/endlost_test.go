package launcher

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLostNodes(t *testing.T) {
	for _, c := range []struct {
		others, alive, want []string
	}{
		{[]string{"node2", "node3"}, []string{"node1", "node2", "node3"}, nil},
		{[]string{"node3", "node2"}, []string{"node1"}, []string{"node2", "node3"}},
		{[]string{"node2", "node3"}, []string{"node1", "node3"}, []string{"node2"}},
		{nil, []string{"node1"}, nil},
	} {
		if got := lostNodes(c.others, c.alive); !reflect.DeepEqual(got, c.want) {
			t.Errorf("lostNodes(%v, %v) = %v, want %v", c.others, c.alive, got, c.want)
		}
	}
}

func TestEndLostArgs(t *testing.T) {
	a := endLostArgs("42", "0", []string{"node2", "node3"}, 1500*time.Millisecond)
	got := strings.Join(a[:10], " ")
	want := "--overlap --mem=0 --jobid=42 -N 2 -n 2 --ntasks-per-node=1 --nodelist=node2,node3 --kill-on-bad-exit=0"
	if got != want {
		t.Errorf("srun options %q, want %q", got, want)
	}
	if tail := a[len(a)-4:]; !reflect.DeepEqual(tail, []string{"sh", "42.0", "2", "5"}) {
		t.Errorf("script arguments %v, want [sh 42.0 2 5] (the wait rounded up)", tail)
	}
}

// fakeScontrol puts on PATH an scontrol whose listpids prints, under the header, those of pids
// still running (not zombies), as slurmstepd would for the step's processes on the node.
func fakeScontrol(t *testing.T, pids ...int) {
	dir := t.TempDir()
	var list []string
	for _, p := range pids {
		list = append(list, strconv.Itoa(p))
	}
	script := "#!/bin/sh\n[ \"$1 $2 $3\" = \"listpids 42.0 node2\" ] || { echo \"unexpected: $*\" >&2; exit 1; }\n" +
		"echo 'PID      JOBID    STEPID   LOCALID GLOBALID'\n" +
		"for p in " + strings.Join(list, " ") + "; do\n" +
		"  s=$(cat /proc/$p/stat 2>/dev/null) || continue\n" +
		"  case \"${s##*) }\" in Z*) continue ;; esac\n" +
		"  echo \"$p 42 0 0 1\"\ndone\n"
	if err := os.WriteFile(filepath.Join(dir, "scontrol"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	t.Setenv("SLURMD_NODENAME", "node2")
}

func runScript(t *testing.T, wait, grace string) string {
	out, err := exec.Command("sh", "-c", endLostScript, "sh", "42.0", wait, grace).CombinedOutput()
	if err != nil {
		t.Fatalf("the script: %v: %s", err, out)
	}
	return string(out)
}

func waitedSignal(t *testing.T, cmd *exec.Cmd) syscall.Signal {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the process did not end")
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0
	}
	return ws.Signal()
}

// A stopped process (a SIGSTOPped agent) is woken and ends on SIGTERM.
func TestEndLostScriptEndsAStoppedTask(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGSTOP)
	fakeScontrol(t, cmd.Process.Pid)
	out := runScript(t, "1", "3")
	if sig := waitedSignal(t, cmd); sig != syscall.SIGTERM {
		t.Errorf("the stopped process ended by %v, want SIGTERM; script said %q", sig, out)
	}
	if !strings.Contains(out, "shoal: node2: the task of step 42.0 still ran; ended it with SIGTERM") {
		t.Errorf("script said %q", out)
	}
}

// A process that ignores SIGTERM (a hung agent) is killed after the grace.
func TestEndLostScriptKillsAHungTask(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fakeScontrol(t, cmd.Process.Pid)
	out := runScript(t, "1", "1")
	if sig := waitedSignal(t, cmd); sig != syscall.SIGKILL {
		t.Errorf("the hung process ended by %v, want SIGKILL; script said %q", sig, out)
	}
	if !strings.Contains(out, "ended it with SIGKILL (1 s after SIGTERM)") {
		t.Errorf("script said %q", out)
	}
}

// A task that ends by itself within the wait (an agent that gave its head up) is left alone.
func TestEndLostScriptWaitsForATaskEndingByItself(t *testing.T) {
	cmd := exec.Command("sleep", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	fakeScontrol(t, cmd.Process.Pid)
	if out := runScript(t, "5", "1"); !strings.Contains(out, "shoal: node2: the task of step 42.0 had ended") {
		t.Errorf("script said %q", out)
	}
}
