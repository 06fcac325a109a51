package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Record
		bad      error // nil: accepted
	}{
		{"cluster.json", `{"id":"0123456789ab","address":"/x","secret":"s","pid":7,"dir":"/tmp/shoal-0/0123456789ab","slurm_job":"42","store_dir":"/dev/shm/shoal-0123456789ab"}`, Record{ID: "0123456789ab", SlurmJob: "42"}, nil},
		{"no job", `{"id":"abcdefabcdef"}`, Record{ID: "abcdefabcdef"}, nil},
		{"traversal", `{"id":"../../something","slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"deep traversal", `{"id":"x/../../../../tmp/victim","slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"upper case", `{"id":"0123456789AB","slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"13 digits", `{"id":"0123456789abc","slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"11 digits", `{"id":"0123456789a","slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"glob", `{"id":"*","slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"empty id", `{"slurm_job":"42"}`, Record{}, ErrBadClusterID},
		{"NUL", "{\"id\":\"0123456789a\\u0000\"}", Record{}, ErrBadClusterID},
		{"not json", `id=0123456789ab`, Record{}, errors.New("parse")},
		{"too long", `{"id":"0123456789ab","pad":"` + strings.Repeat("x", maxRecord) + `"}`, Record{}, errors.New("longer")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRecord(strings.NewReader(tc.in))
			switch {
			case tc.bad == nil && err != nil:
				t.Fatalf("ParseRecord(%q): %v", tc.in, err)
			case tc.bad == nil && got != tc.want:
				t.Fatalf("ParseRecord(%q) = %+v, want %+v", tc.in, got, tc.want)
			case tc.bad == ErrBadClusterID && !errors.Is(err, ErrBadClusterID):
				t.Fatalf("ParseRecord(%q) = %+v, %v; want ErrBadClusterID", tc.in, got, err)
			case tc.bad != nil && err == nil:
				t.Fatalf("ParseRecord(%q) = %+v, want an error", tc.in, got)
			}
		})
	}
}

// FuzzParseRecord: whatever a user writes into a record, an accepted id is exactly 12 lowercase
// hex digits (so no path can be built from it but shoal's own names).
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"id":"0123456789ab","slurm_job":"42"}`))
	f.Add([]byte(`{"id":"../../something","slurm_job":"42"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(bytes.NewReader(b))
		if err != nil {
			return
		}
		if !ValidClusterID(r.ID) || strings.ContainsAny(r.ID, "./-*") {
			t.Fatalf("accepted id %q", r.ID)
		}
		if filepath.Base(filepath.Join("/dev/shm", "shoal-"+r.ID)) != "shoal-"+r.ID {
			t.Fatalf("id %q leaves its directory", r.ID)
		}
	})
}

func TestParseEnviron(t *testing.T) {
	env, err := ParseEnviron(strings.NewReader("SLURM_JOB_ID=42\x00SHOAL_CLUSTER_ID=0123456789ab\x00junk\x00=novar\x00A=b=c\x00SLURM_JOB_ID=43\x00LAST=1"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"SLURM_JOB_ID": "42", "SHOAL_CLUSTER_ID": "0123456789ab", "A": "b=c", "LAST": "1"}
	if len(env) != len(want) {
		t.Fatalf("got %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Fatalf("%s = %q, want %q (all: %v)", k, env[k], v, env)
		}
	}
	big := strings.Repeat("X=y\x00", maxEnviron/4+10)
	if _, err := ParseEnviron(strings.NewReader(big)); !errors.Is(err, ErrProcFormat) {
		t.Fatalf("a %d-byte environ: %v, want it reported as cut", len(big), err)
	}
}

// FuzzParseEnviron: any bytes a process puts in its environment area parse without a panic, and
// every name found is non-empty and holds no '=' or NUL.
func FuzzParseEnviron(f *testing.F) {
	f.Add([]byte("SLURM_JOB_ID=42\x00SHOAL_CLUSTER_ID=0123456789ab\x00"))
	f.Add([]byte("=\x00\x00A\x00B=\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, _ := ParseEnviron(bytes.NewReader(b))
		for k, v := range env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
				t.Fatalf("bad pair %q=%q", k, v)
			}
		}
	})
}

func TestParseStatAndStatus(t *testing.T) {
	st, err := parseStat(strings.NewReader("1234 (a) b) (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615\n"))
	if err != nil || st.State != 'S' || st.PPID != 1 || st.Start != 98765 {
		t.Fatalf("parseStat = %+v, %v", st, err)
	}
	if _, err := parseStat(strings.NewReader("12 (x) S 1")); !errors.Is(err, ErrProcFormat) {
		t.Fatalf("short stat: %v", err)
	}
	uid, err := parseRealUID(strings.NewReader("Name:\tsleep\nUid:\t1001\t0\t0\t0\nGid:\t1\t1\t1\t1\n"))
	if err != nil || uid != 1001 {
		t.Fatalf("parseRealUID = %d, %v; want the real uid 1001, not the effective 0", uid, err)
	}
}

// fixtureMounts reads testdata/cgroup/<layout>/mountinfo and puts its cgroup mounts under the
// fixture's root directory.
func fixtureMounts(t *testing.T, layout string) []CgroupMount {
	dir, _ := filepath.Abs(filepath.Join("testdata", "cgroup", layout))
	f, err := os.Open(filepath.Join(dir, "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := ParseCgroupMounts(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		ms[i].Point = filepath.Join(dir, "root", strings.TrimPrefix(ms[i].Point, "/sys/fs/cgroup"))
	}
	return ms
}

func TestFindJobCgroups(t *testing.T) {
	for _, tc := range []struct {
		layout, job string
		uid         int
		want        []string // relative to the fixture's root
		pids        []int
	}{
		{"v1", "42", 1000, []string{"cpuset/slurm_node2/uid_1000/job_42", "freezer/slurm/uid_1000/job_42"}, []int{100, 101, 102, 103}},
		{"v1", "42", -1, []string{"cpuset/slurm_node2/uid_1000/job_42", "freezer/slurm/uid_1000/job_42"}, []int{100, 101, 102, 103}},
		{"v1", "42", 1001, nil, nil}, // the job's cgroup is under another uid: not this job's user
		{"v1", "44", 1001, []string{"freezer/slurm/uid_1001/job_44"}, []int{300}},
		{"v2", "42", 1000, []string{"machine.slice/node2_slurmstepd.scope/job_42", "system.slice/slurmstepd.scope/job_42"}, []int{100, 101, 102}},
		{"v2", "4", 1000, nil, nil},
		{"hybrid", "42", 1000, []string{"pids/slurm/uid_1000/job_42"}, []int{101}},
		{"hybrid", "43", 1000, nil, nil},
	} {
		t.Run(tc.layout+"/job_"+tc.job+"/uid_"+strconv.Itoa(tc.uid), func(t *testing.T) {
			ms := fixtureMounts(t, tc.layout)
			root, _ := filepath.Abs(filepath.Join("testdata", "cgroup", tc.layout, "root"))
			got := FindJobCgroups(ms, tc.job, tc.uid)
			var rel []string
			var pids []int
			for _, g := range got {
				r, _ := filepath.Rel(root, g)
				rel = append(rel, r)
				pids = append(pids, cgroupProcs(g)...)
			}
			sort.Strings(rel)
			sort.Ints(pids)
			if !slices.Equal(rel, tc.want) || !slices.Equal(pids, tc.pids) {
				t.Fatalf("FindJobCgroups = %v (pids %v), want %v (pids %v)", rel, pids, tc.want, tc.pids)
			}
		})
	}
	if ms := fixtureMounts(t, "v2"); len(ms) != 1 || !ms[0].V2 {
		t.Fatalf("v2 mountinfo: %+v", ms)
	}
	if ms := fixtureMounts(t, "hybrid"); len(ms) != 3 || ms[0].V2 || !ms[2].V2 {
		t.Fatalf("hybrid mountinfo: %+v", ms)
	}
}

func TestInJobCgroup(t *testing.T) {
	v1 := "12:freezer:/slurm/uid_1000/job_42/step_0\n11:memory:/\n"
	v2 := "0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n"
	for _, c := range []struct {
		in, job string
		want    bool
	}{{v1, "42", true}, {v1, "4", false}, {v2, "42", true}, {v2, "420", false}, {"0::/user.slice\n", "42", false}} {
		if got := inJobCgroup([]byte(c.in), c.job); got != c.want {
			t.Errorf("inJobCgroup(%q, %s) = %v", c.in, c.job, got)
		}
	}
}

// start runs sleep with env and, when uid >= 0 and the test is root, as that uid.
func start(t *testing.T, uid int, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// killedBySignal waits (at most 5 s) for cmd and reports whether SIGKILL ended it.
func killedBySignal(cmd *exec.Cmd) bool {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ws := ee.Sys().(syscall.WaitStatus)
			return ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		return false
	case <-time.After(5 * time.Second):
		return false
	}
}

func alive(cmd *exec.Cmd) bool {
	return syscall.Kill(cmd.Process.Pid, 0) == nil
}

// Where the node has no job cgroup: the job's processes are those of the job's uid whose
// environment names the job and shoal; they are killed through a pidfd. A process of the job's
// uid in another job, and (as root) one of another uid naming the job, are left alone.
func TestEpilogKillsTheJobsProcessesByEnvironment(t *testing.T) {
	me := os.Getuid()
	job := strconv.Itoa(4000000000 + os.Getpid()%1000000)
	worker := start(t, -1, "SLURM_JOB_ID="+job, "SHOAL_WORKER_ID=w1")
	agent := start(t, -1, "SLURM_JOB_ID="+job, "SHOAL_CLUSTER_ID=0123456789ab")
	notShoal := start(t, -1, "SLURM_JOB_ID="+job)
	otherJob := start(t, -1, "SLURM_JOB_ID=1"+job, "SHOAL_WORKER_ID=w1")
	var otherUser *exec.Cmd
	if me == 0 {
		otherUser = start(t, 65534, "SLURM_JOB_ID="+job, "SHOAL_WORKER_ID=w1")
	}
	time.Sleep(50 * time.Millisecond) // let exec replace the environments
	r := Epilog(hclog.NewNullLogger(), EpilogOptions{Job: job, UID: me, TmpRoots: []string{t.TempDir()},
		ShmRoot: t.TempDir(), CgroupMounts: []CgroupMount{}, HomeDir: t.TempDir()})
	if !killedBySignal(worker) || !killedBySignal(agent) {
		t.Fatalf("the job's shoal processes were not killed (report %+v)", r)
	}
	if !slices.Contains(r.Clusters, "0123456789ab") {
		t.Errorf("the cluster named in the agent's environment is not in the report: %+v", r)
	}
	if !alive(notShoal) || !alive(otherJob) {
		t.Errorf("killed a process that is not shoal's or of another job (report %+v)", r)
	}
	if otherUser != nil && !alive(otherUser) {
		t.Errorf("killed a process of another uid whose environment names the job (report %+v)", r)
	}
	// with no uid, nothing is chosen by environment
	r = Epilog(hclog.NewNullLogger(), EpilogOptions{Job: "1" + job, UID: -1, TmpRoots: []string{t.TempDir()},
		ShmRoot: t.TempDir(), CgroupMounts: []CgroupMount{}})
	if !alive(otherJob) || len(r.Killed) != 0 || len(r.Problems) == 0 {
		t.Errorf("with no uid the epilog killed by environment, or did not say it would not: %+v", r)
	}
}

// The pidfd kill checks, with the pidfd open, that the pid is still the process examined: a
// start time that does not match (the pid was recycled) means no signal.
func TestKillerRefusesARecycledPid(t *testing.T) {
	cmd := start(t, -1)
	st, err := readProcStat("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	k := &killer{}
	if err := k.kill(cmd.Process.Pid, st.Start+1, -1, nil); !errors.Is(err, errNotSame) {
		t.Fatalf("kill with another start time: %v, want errNotSame", err)
	}
	if err := k.kill(cmd.Process.Pid, st.Start, os.Getuid()+1, nil); !errors.Is(err, errNotSame) {
		t.Fatalf("kill with another uid: %v, want errNotSame", err)
	}
	if !alive(cmd) {
		t.Fatal("a refused kill signalled the process")
	}
	if err := k.kill(cmd.Process.Pid, st.Start, os.Getuid(), nil); err != nil {
		t.Fatal(err)
	}
	k.wait(5 * time.Second)
	if !killedBySignal(cmd) {
		t.Fatal("the pidfd kill did not kill the process")
	}
}

// writeSession makes <tmp>/shoal-<uid>/<name>/<file> holding rec, and the base mode 0700.
func writeSession(t *testing.T, tmp, name, file string, rec any) string {
	t.Helper()
	base := filepath.Join(tmp, "shoal-"+strconv.Itoa(os.Getuid()))
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o700)
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(dir, file), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// Records that are not to be believed: an id that is not a cluster id, an id that is not its
// directory's, a session directory that is a symlink, a base that is not mode 0700 or is a
// symlink. Nothing outside is removed, and each is reported.
func TestEpilogIgnoresHostileRecords(t *testing.T) {
	me := os.Getuid()
	opts := func(tmp, shm string) EpilogOptions {
		return EpilogOptions{Job: "42", UID: me, TmpRoots: []string{tmp}, ShmRoot: shm, ProcRoot: t.TempDir(),
			CgroupMounts: []CgroupMount{}, HomeDir: t.TempDir()}
	}
	t.Run("traversal", func(t *testing.T) {
		tmp, shm, outside := t.TempDir(), t.TempDir(), t.TempDir()
		os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o600)
		writeSession(t, tmp, "0123456789ab", "cluster.json", map[string]string{"id": "../../" + outside, "slurm_job": "42"})
		writeSession(t, tmp, "abcdefabcdef", "member.json", map[string]string{"id": "../" + filepath.Base(outside), "slurm_job": "42"})
		r := Epilog(hclog.NewNullLogger(), opts(tmp, shm))
		if !exists(filepath.Join(outside, "precious")) || len(r.Removed) != 0 || len(r.Problems) < 2 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("id of another directory", func(t *testing.T) {
		tmp, shm := t.TempDir(), t.TempDir()
		other := writeSession(t, tmp, "bbbbbbbbbbbb", "cluster.json", map[string]string{"id": "bbbbbbbbbbbb", "slurm_job": "7"})
		writeSession(t, tmp, "0123456789ab", "cluster.json", map[string]string{"id": "bbbbbbbbbbbb", "slurm_job": "42"})
		r := Epilog(hclog.NewNullLogger(), opts(tmp, shm))
		if !exists(other) || len(r.Clusters) != 0 {
			t.Fatalf("a record naming another directory's id was believed: %+v", r)
		}
	})
	t.Run("symlinked session directory", func(t *testing.T) {
		tmp, shm, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
		os.WriteFile(filepath.Join(elsewhere, "cluster.json"), []byte(`{"id":"0123456789ab","slurm_job":"42"}`), 0o600)
		writeSession(t, tmp, "ffffffffffff", "x", nil)
		base := filepath.Join(tmp, "shoal-"+strconv.Itoa(me))
		os.Symlink(elsewhere, filepath.Join(base, "0123456789ab"))
		os.MkdirAll(filepath.Join(shm, "shoal-0123456789ab"), 0o700)
		r := Epilog(hclog.NewNullLogger(), opts(tmp, shm))
		if len(r.Clusters) != 0 || !exists(filepath.Join(elsewhere, "cluster.json")) || !exists(filepath.Join(shm, "shoal-0123456789ab")) {
			t.Fatalf("a record through a symlink was believed: %+v", r)
		}
	})
	t.Run("base mode 0755", func(t *testing.T) {
		tmp, shm := t.TempDir(), t.TempDir()
		dir := writeSession(t, tmp, "0123456789ab", "cluster.json", map[string]string{"id": "0123456789ab", "slurm_job": "42"})
		os.Chmod(filepath.Dir(dir), 0o755)
		r := Epilog(hclog.NewNullLogger(), opts(tmp, shm))
		if len(r.Clusters) != 0 || !exists(dir) || len(r.Problems) == 0 || !strings.Contains(r.Problems[0], "mode") {
			t.Fatalf("a record in a 0755 base was believed: %+v", r)
		}
	})
	t.Run("symlinked base", func(t *testing.T) {
		tmp, shm, real := t.TempDir(), t.TempDir(), t.TempDir()
		dir := writeSession(t, real, "0123456789ab", "cluster.json", map[string]string{"id": "0123456789ab", "slurm_job": "42"})
		os.Symlink(filepath.Dir(dir), filepath.Join(tmp, "shoal-"+strconv.Itoa(me)))
		r := Epilog(hclog.NewNullLogger(), opts(tmp, shm))
		if len(r.Clusters) != 0 || !exists(dir) || len(r.Problems) == 0 {
			t.Fatalf("a record in a symlinked base was believed: %+v", r)
		}
	})
}

// A symlink inside a removed store is removed, not followed.
func TestRemoveAtDoesNotFollowSymlinks(t *testing.T) {
	shm, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o600)
	store := filepath.Join(shm, "shoal-0123456789ab")
	os.MkdirAll(filepath.Join(store, "a", "b"), 0o700)
	os.Symlink(outside, filepath.Join(store, "a", "b", "link"))
	os.Symlink(outside, filepath.Join(store, "link2"))
	fd, err := openDir(shm)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := removeAt(fd, "shoal-0123456789ab", os.Getuid()); err != nil {
		t.Fatal(err)
	}
	if exists(store) || !exists(filepath.Join(outside, "precious")) {
		t.Fatalf("store left (%v) or the symlink's target removed (%v)", exists(store), !exists(filepath.Join(outside, "precious")))
	}
	if err := removeAt(fd, "shoal-0123456789ab", os.Getuid()+1); err == nil {
		t.Fatal("removeAt of a missing entry succeeded")
	}
}

// The job's cgroup on this machine's real hierarchies: a process moved into
// <v2>/…/slurmstepd.scope/job_N/step_0 dies by cgroup.kill, one in
// <v1 controller>/slurm/uid_<uid>/job_N/step_0 by a pidfd kill; one in another job's cgroup and
// one outside live on. Needs root and the hierarchies mounted.
func TestEpilogKillsTheJobCgroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("moving processes between cgroups needs root")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	mounts, _ := ParseCgroupMounts(f)
	f.Close()
	job := strconv.Itoa(4100000000 + os.Getpid()%1000000)
	for _, v2 := range []bool{true, false} {
		var m *CgroupMount
		for i := range mounts {
			if mounts[i].V2 == v2 && (v2 || strings.HasSuffix(mounts[i].Point, "/pids") || strings.HasSuffix(mounts[i].Point, "/freezer")) {
				m = &mounts[i]
				break
			}
		}
		name := map[bool]string{true: "v2", false: "v1"}[v2]
		t.Run(name, func(t *testing.T) {
			if m == nil {
				t.Skipf("no cgroup %s hierarchy mounted here", name)
			}
			top := filepath.Join(m.Point, "shoal-epilog-test-"+strconv.Itoa(os.Getpid()))
			parent := filepath.Join(top, "slurm", "uid_0")
			if v2 {
				parent = filepath.Join(top, "system.slice", "slurmstepd.scope")
			}
			mine := filepath.Join(parent, "job_"+job, "step_0")
			other := filepath.Join(parent, "job_1"+job, "step_0")
			for _, d := range []string{mine, other} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Skipf("make a cgroup under %s: %v", m.Point, err)
				}
			}
			t.Cleanup(func() { removeCgroupTree(top) })
			in, inOther, outside := start(t, -1), start(t, -1), start(t, -1)
			for d, c := range map[string]*exec.Cmd{mine: in, other: inOther} {
				if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(c.Process.Pid)), 0); err != nil {
					t.Skipf("move a process into %s: %v", d, err)
				}
			}
			r := Epilog(hclog.NewNullLogger(), EpilogOptions{Job: job, UID: 0, CgroupMounts: []CgroupMount{*m},
				TmpRoots: []string{t.TempDir()}, ShmRoot: t.TempDir(), HomeDir: t.TempDir()})
			if len(r.Cgroups) != 1 || r.Cgroups[0] != filepath.Dir(mine) {
				t.Fatalf("job cgroups %v, want [%s]", r.Cgroups, filepath.Dir(mine))
			}
			if !killedBySignal(in) {
				t.Fatalf("the process in the job's cgroup lives on (report %+v)", r)
			}
			_, err := os.Stat(filepath.Join(filepath.Dir(mine), "cgroup.kill"))
			if byPidfd := slices.Contains(r.Killed, in.Process.Pid); byPidfd == (v2 && err == nil) {
				t.Errorf("killed through a pidfd: %v; cgroup.kill present: %v", byPidfd, err == nil)
			}
			if !alive(inOther) || !alive(outside) {
				t.Fatalf("killed a process of another job's cgroup or outside (report %+v)", r)
			}
		})
	}
}
