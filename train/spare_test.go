package train

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParsePython(t *testing.T) {
	cases := []struct {
		argv []string
		want *PyCmd
	}{
		{[]string{"python3", "train.py", "--lr", "1"}, &PyCmd{[]string{"python3"}, "script", "train.py", []string{"--lr", "1"}}},
		{[]string{"/opt/venv/bin/python", "-u", "-X", "dev", "-Wignore", "t.py"}, &PyCmd{[]string{"/opt/venv/bin/python", "-u", "-X", "dev", "-Wignore"}, "script", "t.py", []string{}}},
		{[]string{"python3.11", "-m", "pkg.train", "-c", "x"}, &PyCmd{[]string{"python3.11"}, "module", "pkg.train", []string{"-c", "x"}}},
		{[]string{"python", "-mpkg", "a"}, &PyCmd{[]string{"python"}, "module", "pkg", []string{"a"}}},
		{[]string{"python", "-uB", "-c", "print(1)", "a"}, &PyCmd{[]string{"python", "-uB"}, "code", "print(1)", []string{"a"}}},
		{[]string{"python", "-i", "t.py"}, nil}, // interactive afterwards
		{[]string{"python", "-"}, nil},          // stdin
		{[]string{"python", "--check-hash-based-pycs", "always", "t.py"}, nil},
		{[]string{"python"}, nil},
		{[]string{"python", "-m"}, nil},
		{[]string{"bash", "train.sh"}, nil},
		{[]string{"torchrun", "train.py"}, nil},
		{[]string{"pythonw", "t.py"}, nil},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.argv, " "), func(t *testing.T) {
			got, ok := ParsePython(c.argv)
			if c.want == nil {
				if ok {
					t.Fatalf("ParsePython = %+v, want not a spareable Python command", got)
				}
				return
			}
			if !ok || !reflect.DeepEqual(got, *c.want) {
				t.Fatalf("ParsePython = %+v, %v; want %+v", got, ok, *c.want)
			}
			if !reflect.DeepEqual(got.argv(), c.argv) && c.argv[1] != "-mpkg" {
				t.Fatalf("argv() = %q, want the command back: %q", got.argv(), c.argv)
			}
		})
	}
}

func needPython(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the warm spare runs Python commands only")
	}
	return p
}

// rankScript prints what a rank can see of how it was started, then fails the way its
// arguments say; a cold and a warm run of it must print the same, but for the pid line.
const rankScript = `import os, signal, sys, time
print("PID", os.getpid(), "PRELOADED", "fractions" in sys.modules, flush=True)
print("ARGV", sys.argv, "FILE", __file__, "NAME", __name__, "PATH0", sys.path[0], flush=True)
print("ENV", os.environ.get("MASTER_PORT"), os.environ.get("OMP_NUM_THREADS"), os.environ.get("SHOAL_TRAIN_REPORT_FD"),
      "WORKER" if "SHOAL_WORKER_ID" in os.environ else "-", "CWD", os.getcwd(), flush=True)
print("SIGNALS", signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGINT), flush=True)
print("ORIG", sys.orig_argv[1:], flush=True)
how = sys.argv[1]
if how == "raise":
    def inner():
        raise ValueError("bad batch")
    inner()
if how == "exit":
    sys.exit(7)
if how == "interrupt":
    import atexit
    atexit.register(lambda: print("ATEXIT", flush=True))
    raise KeyboardInterrupt
if how == "term":
    signal.signal(signal.SIGTERM, lambda *_: (print("SAVED", flush=True), sys.exit(0)))
    print("UP", flush=True)
    time.sleep(60)
`

// runTwice runs the script as attempt 0 (cold, making a spare) and attempt 1, and returns both
// statuses and the spare's pid seen before attempt 1.
func runTwice(t *testing.T, r *RankActor, dir, how string, env1 []string) (Status, Status, int) {
	t.Helper()
	spec := StartSpec{Argv: []string{"python3", "rank.py", how}, Cwd: dir, Env: []string{"MASTER_PORT=1000", "OMP_NUM_THREADS=2", "RANK=0"},
		Spare: true, SpareWaitMs: 200, Preload: []string{"fractions", "no_such_module_here?"}}
	warm, err := r.Start(spec)
	if err != nil || warm {
		t.Fatalf("attempt 0: warm=%v err=%v, want a cold start", warm, err)
	}
	first := pollDone(t, r)
	pid := waitSpare(t, r)
	spec.Env = env1
	spec.Spare = false
	if _, err := r.Start(spec); err != nil {
		t.Fatal(err)
	}
	second := pollDone(t, r)
	return first, second, pid
}

// waitSpare waits for the actor's spare (made once the machine has a CPU to spare, or after
// spareMaxWait) and returns its pid.
func waitSpare(t *testing.T, r *RankActor) int {
	t.Helper()
	for deadline := time.Now().Add(spareMaxWait + 5*time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if pid, _ := r.SparePID(); pid != 0 {
			return pid
		}
	}
	t.Fatal("no spare was made for the next attempt")
	return 0
}

func writeRank(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rank.py"), []byte(rankScript), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func withoutPID(tail string) string {
	var out []string
	for _, l := range strings.Split(tail, "\n") {
		if !strings.HasPrefix(l, "PID ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestWarmSpareRunsTheNextAttemptLikeAColdProcess(t *testing.T) {
	needPython(t)
	dir := writeRank(t)
	for _, how := range []string{"raise", "exit", "interrupt", "ok"} {
		t.Run(how, func(t *testing.T) {
			r, _ := NewRankActor()
			cold, warm, sparePID := runTwice(t, r, dir, how, []string{"MASTER_PORT=2000", "OMP_NUM_THREADS=2", "RANK=0"})
			if !warm.Warm || cold.Warm {
				t.Fatalf("attempt 1 warm=%v (attempt 0 %v), want only attempt 1 from the spare", warm.Warm, cold.Warm)
			}
			if !strings.Contains(warm.Tail, fmt.Sprintf("PID %d PRELOADED True", sparePID)) || !strings.Contains(cold.Tail, "PRELOADED False") {
				t.Fatalf("attempt 1 must be the spare (pid %d) with fractions imported, attempt 0 not:\n%s\n---\n%s", sparePID, cold.Tail, warm.Tail)
			}
			if cold.Code != warm.Code || cold.Signal != warm.Signal {
				t.Fatalf("exit: cold %d %q, warm %d %q", cold.Code, cold.Signal, warm.Code, warm.Signal)
			}
			c := strings.Replace(withoutPID(cold.Tail), "ENV 1000", "ENV 2000", 1)
			if c != withoutPID(warm.Tail) {
				t.Fatalf("the warm rank printed otherwise than the cold one:\ncold:\n%s\nwarm:\n%s", c, withoutPID(warm.Tail))
			}
			want := map[string]int{"raise": 1, "exit": 7, "interrupt": 128 + int(syscall.SIGINT), "ok": 0}[how]
			if warm.Code != want {
				t.Fatalf("exit code %d, want %d:\n%s", warm.Code, want, warm.Tail)
			}
		})
	}
}

func TestWarmSpareGetsSIGTERM(t *testing.T) {
	needPython(t)
	dir := writeRank(t)
	r, _ := NewRankActor()
	spec := StartSpec{Argv: []string{"python3", "rank.py", "ok"}, Cwd: dir, Spare: true, SpareWaitMs: 200, Preload: []string{"fractions"}}
	r.Start(spec)
	pollDone(t, r)
	spec.Argv[2] = "term"
	// the spare was made for "ok": another command starts cold (and drops it)
	if warm, _ := r.Start(spec); warm {
		t.Fatal("a spare made for other arguments must not be used")
	}
	for st, _ := r.Poll(50, 0); !strings.Contains(st.Tail, "UP"); st, _ = r.Poll(50, 0) {
	}
	waitSpare(t, r)
	r.Stop(5000)
	if warm, _ := r.Start(spec); !warm {
		t.Fatal("the spare made for this command was not used")
	}
	for st, _ := r.Poll(50, 0); !strings.Contains(st.Tail, "UP"); st, _ = r.Poll(50, 0) {
	}
	st, _ := r.Stop(5000)
	if st.Code != 0 || !strings.HasSuffix(st.Tail, "SAVED") {
		t.Fatalf("SIGTERM to a rank in its spare: %+v, want its handler to run", st)
	}
	pid := waitSpare(t, r)
	if closed, _ := r.Close(); !closed || pid == 0 {
		t.Fatalf("Close: %v, spare pid %d; want the next spare dropped", closed, pid)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("the spare %d still runs after Close", pid)
	}
}

func TestSpareNotUsedWhenTheEnvironmentChanged(t *testing.T) {
	needPython(t)
	dir := writeRank(t)
	r, _ := NewRankActor()
	// OMP_NUM_THREADS is read when libraries load: a spare made with 2 cannot serve 4
	cold, second, _ := runTwice(t, r, dir, "ok", []string{"MASTER_PORT=2000", "OMP_NUM_THREADS=4", "RANK=0"})
	if second.Warm || !strings.Contains(second.Tail, "PRELOADED False") || !strings.Contains(second.Tail, "ENV 2000 4") {
		t.Fatalf("a changed OMP_NUM_THREADS must start cold:\n%s\n---\n%s", cold.Tail, second.Tail)
	}
}

func TestSpareThatFailedToPreloadIsNotUsed(t *testing.T) {
	needPython(t)
	dir := writeRank(t)
	r, _ := NewRankActor()
	spec := StartSpec{Argv: []string{"python3", "rank.py", "ok"}, Cwd: dir, Spare: true, SpareWaitMs: 200, Preload: []string{"no_such_module_here"}}
	r.Start(spec)
	pollDone(t, r)
	pid := waitSpare(t, r)
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond) // it exits once its import fails (a zombie counts as gone below)
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			break
		}
	}
	if warm, err := r.Start(spec); warm || err != nil {
		t.Fatalf("warm=%v err=%v: a spare whose preload failed must not be used", warm, err)
	}
	if st := pollDone(t, r); st.Code != 0 || !strings.Contains(st.Tail, "PRELOADED False") {
		t.Fatalf("cold start after a failed spare: %+v", st)
	}
}

func TestCheckpointReportWaitsForShoalTrain(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "returned")
	root, _ := filepath.Abs("../python")
	script := fmt.Sprintf(`import shoal.train as st
st.report({"step": 1}, checkpoint="/ck/1")
open(%q, "w").close()
`, marker)
	r, _ := NewRankActor()
	if _, err := r.Start(StartSpec{Argv: []string{"python3", "-c", script}, Env: []string{"PYTHONPATH=" + root}, SyncCheckpoints: true}); err != nil {
		t.Fatal(err)
	}
	// Poll returns as soon as the checkpoint is reported, long before its 20 s
	t0 := time.Now()
	st, _ := r.Poll(20000, 0)
	if st.Last == nil || st.Last.Checkpoint != "/ck/1" || st.Last.Seq != 1 || time.Since(t0) > 15*time.Second {
		t.Fatalf("Poll: %+v after %s, want the checkpoint at once", st, time.Since(t0))
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("report() returned before shoal train acknowledged the checkpoint")
	}
	r.Poll(0, st.Last.Seq) // shoal train has it
	if st := pollDone(t, r); st.Code != 0 {
		t.Fatalf("rank: %+v", st)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("report() did not return after the acknowledgement")
	}
}

// FuzzParsePython: any command line either is not taken, or parses into a command whose
// argv() parses back to the same thing; the interpreter's options never swallow the target.
func FuzzParsePython(f *testing.F) {
	for _, s := range []string{"python3\x00t.py\x00a", "python\x00-m\x00pkg", "python\x00-uB\x00-c\x00x", "python\x00-X\x00dev\x00t.py",
		"python3.11\x00-mpkg\x00-c", "python\x00-i\x00t.py", "python\x00-", "python\x00--\x00t.py", "bash\x00x", "python\x00-W"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		argv := strings.Split(s, "\x00")
		c, ok := ParsePython(argv)
		if !ok {
			return
		}
		if c.Mode != "script" && c.Mode != "module" && c.Mode != "code" || len(c.Interp) == 0 || c.Interp[0] != argv[0] {
			t.Fatalf("ParsePython(%q) = %+v", argv, c)
		}
		again, ok := ParsePython(c.argv())
		if c.Mode == "script" && strings.HasPrefix(c.Target, "-") {
			t.Fatalf("ParsePython(%q): an option %q taken for the script", argv, c.Target)
		}
		if !ok || !reflect.DeepEqual(again.Interp, c.Interp) || again.Mode != c.Mode || again.Target != c.Target || len(again.Args) != len(c.Args) {
			t.Fatalf("ParsePython(%q) = %+v, but its argv() %q parses to %+v, %v", argv, c, c.argv(), again, ok)
		}
	})
}

func TestCPUTimesOfThisProcessCPUs(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Skip("no affinity mask:", err)
	}
	idle, total, ok := cpuTimes(&set)
	if !ok || total <= 0 || idle < 0 || idle > total {
		t.Fatalf("cpuTimes = %v idle of %v, ok %v; want sane clock ticks from /proc/stat", idle, total, ok)
	}
	// a spare waits no longer than it is told, even on a machine that is never idle
	t0 := time.Now()
	if !waitIdle(300*time.Millisecond, func() bool { return false }) || time.Since(t0) > 5*time.Second {
		t.Fatalf("waitIdle(300ms) took %s", time.Since(t0))
	}
	if waitIdle(time.Minute, func() bool { return true }) {
		t.Fatal("a cancelled wait must report it")
	}
}
