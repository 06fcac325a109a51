package slurm

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// envMap reads "KEY=value" lines; blank lines and lines starting with '#' are skipped.
func envMap(text string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

func loadEnv(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "env", name))
	if err != nil {
		t.Fatal(err)
	}
	return envMap(string(b))
}

func getter(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustParse(t *testing.T, m map[string]string) *Env {
	t.Helper()
	e, err := ParseEnv(getter(m))
	if err != nil {
		t.Fatalf("ParseEnv: %v", err)
	}
	return e
}

func TestParseEnvBatch(t *testing.T) {
	e := mustParse(t, loadEnv(t, "batch.env"))
	want := &Env{
		JobID: "42", NodeList: "node[1-3]", NNodes: 3, NodeID: 0, ProcID: 0, LocalID: 0,
		NTasks: 5, CPUsOnNode: 2, JobCPUsPerNode: []int{2, 2, 1}, TasksPerNode: []int{2, 2, 1},
		MemPerNodeMB: 4096, JobGPUs: []int{0, 1}, CUDAVisibleDevices: []int{0, 1},
		SubmitDir: "/home/alice/run",
		nodes:     []string{"node1", "node2", "node3"}, nodeName: "node1",
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("ParseEnv(batch.env) =\n%+v\nwant\n%+v", e, want)
	}
	checkHelpers(t, e, helpers{
		head: "node1", name: "node1", index: 0, cpus: 2, mem: 4096 << 20, gpus: []int{0, 1},
	})
}

func TestParseEnvStep(t *testing.T) {
	e := mustParse(t, loadEnv(t, "step.env"))
	if e.StepID != "0" || e.ProcID != 1 || e.NodeID != 1 || e.NTasks != 2 || e.NNodes != 2 {
		t.Errorf("step identity = step %q proc %d node %d ntasks %d nnodes %d, want 0 1 1 2 2",
			e.StepID, e.ProcID, e.NodeID, e.NTasks, e.NNodes)
	}
	if e.NodeList != "node[1-3]" {
		t.Errorf("NodeList = %q, want the job's node[1-3], not the step's SLURM_NODELIST", e.NodeList)
	}
	if !slices.Equal(e.TasksPerNode, []int{1, 1}) || !slices.Equal(e.StepGPUs, []int{2}) {
		t.Errorf("TasksPerNode %v StepGPUs %v, want [1 1] [2]", e.TasksPerNode, e.StepGPUs)
	}
	checkHelpers(t, e, helpers{
		head: "node1", name: "node3", index: 2, cpus: 1, mem: 2048 << 20, gpus: []int{2},
	})
}

func TestParseEnvHet(t *testing.T) {
	e := mustParse(t, loadEnv(t, "het.env"))
	want := []HetGroup{
		{JobID: "100", NodeList: "cpu01", Nodes: []string{"cpu01"}, NNodes: 1, NTasks: 1,
			JobCPUsPerNode: []int{4}, TasksPerNode: []int{1}, MemPerNodeMB: 1024},
		{JobID: "101", NodeList: "gpu[01-02]", Nodes: []string{"gpu01", "gpu02"}, NNodes: 2, NTasks: 4,
			JobCPUsPerNode: []int{8, 8}, TasksPerNode: []int{2, 2}, MemPerCPUMB: 512},
	}
	if !reflect.DeepEqual(e.HetGroups, want) {
		t.Errorf("HetGroups =\n%+v\nwant\n%+v", e.HetGroups, want)
	}
	// No SLURMD_NODENAME in an salloc shell on a login node: nothing is known about "here".
	checkHelpers(t, e, helpers{head: "cpu01", name: "", index: -1, cpus: 0, mem: 0, gpus: nil})
	if got := e.Nodes(); !slices.Equal(got, []string{"cpu01", "gpu01", "gpu02"}) {
		t.Errorf("Nodes() = %q, want the components' nodes in order", got)
	}

	// In a step (srun --het-group=...), SLURM_JOB_NODELIST holds the step's components: it is
	// the one Nodes reports.
	m := loadEnv(t, "het.env")
	m["SLURM_JOB_NODELIST"] = "gpu02,cpu01,gpu01"
	m["SLURM_STEP_ID"] = "0"
	if got := mustParse(t, m).Nodes(); !slices.Equal(got, []string{"gpu02", "cpu01", "gpu01"}) {
		t.Errorf("Nodes() = %q, want SLURM_JOB_NODELIST's order", got)
	}
	m["SLURM_JOB_NODELIST"] = "gpu[01-02]" // srun --het-group=1
	if got := mustParse(t, m).Nodes(); !slices.Equal(got, []string{"gpu01", "gpu02"}) {
		t.Errorf("Nodes() = %q in a step of component 1, want [gpu01 gpu02]", got)
	}
	// The batch script sees only component 0 in SLURM_JOB_NODELIST (Slurm 22.05); the job is
	// every component's nodes, and each node knows its component.
	m = loadEnv(t, "het.env")
	m["SLURM_JOB_NODELIST"] = "cpu01"
	e = mustParse(t, m)
	if got := e.Nodes(); !slices.Equal(got, []string{"cpu01", "gpu01", "gpu02"}) {
		t.Errorf("Nodes() = %q in the batch step, want every component's nodes", got)
	}
	for node, g := range map[string]int{"cpu01": 0, "gpu02": 1, "login1": -1} {
		if got := e.HetGroupOf(node); got != g {
			t.Errorf("HetGroupOf(%s) = %d, want %d", node, got, g)
		}
	}
	// Components that share nodes list each node once.
	m = loadEnv(t, "het.env")
	m["SLURM_JOB_NODELIST_HET_GROUP_1"] = "cpu01,gpu01"
	if got := mustParse(t, m).Nodes(); !slices.Equal(got, []string{"cpu01", "gpu01"}) {
		t.Errorf("Nodes() = %q, want [cpu01 gpu01]", got)
	}
}

type helpers struct {
	head, name  string
	index, cpus int
	mem         uint64
	gpus        []int
}

func checkHelpers(t *testing.T, e *Env, want helpers) {
	t.Helper()
	got := helpers{
		head: e.HeadNode(), name: e.NodeName(), index: e.NodeIndex(),
		cpus: e.CPUsOnThisNode(), mem: e.MemoryBytesOnThisNode(), gpus: e.GPUs(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("helpers = %+v, want %+v", got, want)
	}
}

func TestEnvHelpers(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-3]", "SLURMD_NODENAME": "n2"}
	}
	tests := []struct {
		name string
		set  map[string]string
		want helpers
	}{
		{"minimal", nil, helpers{head: "n1", name: "n2", index: 1}},
		{"cpus from the per-node list", map[string]string{"SLURM_JOB_CPUS_PER_NODE": "4,8,16"},
			helpers{head: "n1", name: "n2", index: 1, cpus: 8}},
		{"SLURM_CPUS_ON_NODE wins", map[string]string{"SLURM_JOB_CPUS_PER_NODE": "4,8,16", "SLURM_CPUS_ON_NODE": "6"},
			helpers{head: "n1", name: "n2", index: 1, cpus: 6}},
		{"per-node list of the wrong length is not guessed from", map[string]string{"SLURM_JOB_CPUS_PER_NODE": "4,8"},
			helpers{head: "n1", name: "n2", index: 1}},
		{"memory per cpu", map[string]string{"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "3"},
			helpers{head: "n1", name: "n2", index: 1, cpus: 3, mem: 3000 << 20}},
		{"memory per node wins", map[string]string{"SLURM_MEM_PER_NODE": "10", "SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "3"},
			helpers{head: "n1", name: "n2", index: 1, cpus: 3, mem: 10 << 20}},
		{"huge memory saturates", map[string]string{"SLURM_MEM_PER_NODE": "18446744073709551615"},
			helpers{head: "n1", name: "n2", index: 1, mem: 1<<64 - 1}},
		{"job gpus", map[string]string{"SLURM_JOB_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"},
			helpers{head: "n1", name: "n2", index: 1, gpus: []int{2, 3}}},
		{"step gpus win", map[string]string{"SLURM_STEP_GPUS": "3", "SLURM_JOB_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0"},
			helpers{head: "n1", name: "n2", index: 1, gpus: []int{3}}},
		{"cuda visible devices last", map[string]string{"CUDA_VISIBLE_DEVICES": "1,0"},
			helpers{head: "n1", name: "n2", index: 1, gpus: []int{1, 0}}},
		{"gpu uuids are not indices", map[string]string{"CUDA_VISIBLE_DEVICES": "GPU-8c1f2a1e-0000"},
			helpers{head: "n1", name: "n2", index: 1}},
		{"NoDevFiles", map[string]string{"CUDA_VISIBLE_DEVICES": "NoDevFiles"},
			helpers{head: "n1", name: "n2", index: 1}},
		{"gpu ranges", map[string]string{"SLURM_JOB_GPUS": "0-2,5"},
			helpers{head: "n1", name: "n2", index: 1, gpus: []int{0, 1, 2, 5}}},
		{"node not in the list", map[string]string{"SLURMD_NODENAME": "other", "SLURM_JOB_CPUS_PER_NODE": "4(x3)"},
			helpers{head: "n1", name: "other", index: -1}},
		{"old variable names", map[string]string{"SLURM_JOB_ID": "", "SLURM_JOBID": "7", "SLURM_JOB_NODELIST": "", "SLURM_NODELIST": "n[1-3]"},
			helpers{head: "n1", name: "n2", index: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			for k, v := range tt.set {
				m[k] = v
			}
			checkHelpers(t, mustParse(t, m), tt.want)
		})
	}
}

func TestEnvReturnsCopies(t *testing.T) {
	e := mustParse(t, map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a,b", "SLURM_JOB_GPUS": "0"})
	e.Nodes()[0] = "x"
	e.GPUs()[0] = 9
	if e.HeadNode() != "a" || e.GPUs()[0] != 0 {
		t.Errorf("changing returned slices changed the Env: head %q gpus %v", e.HeadNode(), e.GPUs())
	}
}

func TestParseEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		is   []error
		want string
	}{
		{"not in a job", map[string]string{"HOME": "/root"}, []error{ErrNotInJob},
			"read slurm environment: SLURM_JOB_ID is not set; run this inside an sbatch/salloc allocation or under srun"},
		{"no node list", map[string]string{"SLURM_JOB_ID": "1"}, []error{ErrNotInJob},
			"read slurm environment: SLURM_JOB_ID is set but SLURM_JOB_NODELIST is not; run this inside an sbatch/salloc allocation or under srun"},
		{"bad job id", map[string]string{"SLURM_JOB_ID": "1a", "SLURM_JOB_NODELIST": "n1"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_JOB_ID="1a" is not a job ID (decimal digits)`},
		{"bad node list", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "node[3-1]"}, []error{ErrInvalidEnv, ErrHostlist},
			`read slurm environment: SLURM_JOB_NODELIST: parse hostlist "node[3-1]": range 3-1 has low bound above high bound`},
		{"bad old node list", map[string]string{"SLURM_JOB_ID": "1", "SLURM_NODELIST": "a[1-2]b"}, []error{ErrInvalidEnv, ErrHostlist},
			`read slurm environment: SLURM_NODELIST: parse hostlist "a[1-2]b": "b" follows the last ']' in "a[1-2]b"; Slurm 22.05 does not allow text after the last bracket of a name`},
		{"empty node list", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": " , "}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_JOB_NODELIST=" , " holds no host names`},
		{"bad count", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_NNODES": "-1"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_NNODES="-1" is not a number from 0 to 4294967295`},
		{"bad rank", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_PROCID": "zero"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_PROCID="zero" is not a number from 0 to 4294967295`},
		{"bad cpus per node", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_CPUS_PER_NODE": "2(x0)"}, []error{ErrInvalidEnv, ErrCounts},
			`read slurm environment: SLURM_JOB_CPUS_PER_NODE: parse count list "2(x0)": item "2(x0)" repeats zero times`},
		{"memory with a unit", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_MEM_PER_NODE": "4G"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_MEM_PER_NODE="4G" is not a size in megabytes (decimal digits)`},
		{"bad gpu list", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_GPUS": "gpu0"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_JOB_GPUS="gpu0": "gpu0" is not a device index or an index range`},
		{"too much in total", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_CPUS_PER_NODE": "1(x1048576)"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_JOB_CPUS_PER_NODE: the Slurm variables hold more than 1048576 host names, counts and device indices in total`},
		{"het size zero", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_HET_SIZE": "0"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_HET_SIZE="0" is not a component count from 1 to 128`},
		{"het size too big", map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_HET_SIZE": "129"}, []error{ErrInvalidEnv},
			`read slurm environment: SLURM_HET_SIZE="129" is not a component count from 1 to 128`},
		{"het group missing", map[string]string{"SLURM_JOB_ID": "1", "SLURM_HET_SIZE": "2", "SLURM_JOB_NODELIST_HET_GROUP_0": "n1"}, []error{ErrNotInJob},
			`read slurm environment: SLURM_HET_SIZE is 2 but SLURM_JOB_NODELIST_HET_GROUP_1 is not set`},
		{"het group bad list", map[string]string{"SLURM_JOB_ID": "1", "SLURM_HET_SIZE": "1", "SLURM_JOB_NODELIST_HET_GROUP_0": "n[2-1]"}, []error{ErrInvalidEnv, ErrHostlist},
			`read slurm environment: SLURM_JOB_NODELIST_HET_GROUP_0: parse hostlist "n[2-1]": range 2-1 has low bound above high bound`},
		{"het group bad tasks", map[string]string{"SLURM_JOB_ID": "1", "SLURM_HET_SIZE": "1", "SLURM_JOB_NODELIST_HET_GROUP_0": "n1", "SLURM_TASKS_PER_NODE_HET_GROUP_0": "x"}, []error{ErrInvalidEnv, ErrCounts},
			`read slurm environment: SLURM_TASKS_PER_NODE_HET_GROUP_0: parse count list "x": item "x": count "x" is not a number from 0 to 4294967295`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEnv(getter(tt.env))
			if err == nil {
				t.Fatalf("ParseEnv = %+v, want error %q", e, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("error %v does not wrap %v", err, target)
				}
			}
		})
	}
}

func TestScrub(t *testing.T) {
	var env []string
	for k, v := range loadEnv(t, "step.env") {
		env = append(env, k+"="+v)
	}
	env = append(env, "SLURM_PROCIDX=kept", "NOEQUALS")
	slices.Sort(env)
	orig := slices.Clone(env)

	got := Scrub(env)
	if !slices.Equal(env, orig) {
		t.Fatal("Scrub modified its argument")
	}
	removed := []string{
		"SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_GTIDS", "SLURM_TASK_PID",
		"SLURM_NTASKS", "SLURM_NPROCS", "SLURM_TASKS_PER_NODE", "SLURM_STEPID", "SLURM_STEP_ID",
		"SLURM_STEP_GPUS", "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_LAUNCHER_PORT",
		"SLURM_SRUN_COMM_HOST", "SLURM_LAUNCH_NODE_IPADDR", "SLURM_CPU_BIND", "SLURM_CPU_BIND_TYPE",
		"PMIX_RANK", "PMIX_NAMESPACE",
	}
	kept := []string{
		"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_NNODES",
		"SLURMD_NODENAME", "SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE", "SLURM_MEM_PER_CPU",
		"SLURM_JOB_GPUS", "SLURM_SUBMIT_DIR", "CUDA_VISIBLE_DEVICES", "HOME", "SLURM_PROCIDX", "NOEQUALS",
	}
	has := func(key string) bool {
		return slices.ContainsFunc(got, func(kv string) bool { k, _, _ := strings.Cut(kv, "="); return k == key })
	}
	for _, k := range removed {
		if has(k) {
			t.Errorf("Scrub kept %s", k)
		}
	}
	for _, k := range kept {
		if !has(k) {
			t.Errorf("Scrub removed %s", k)
		}
	}
	if !slices.IsSorted(got) {
		t.Error("Scrub changed the order of the variables")
	}

	// A worker started with the scrubbed environment still reads its allocation, but no
	// longer any rank.
	m := map[string]string{}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	e := mustParse(t, m)
	if e.ProcID != -1 || e.LocalID != -1 || e.NodeID != -1 || e.NTasks != 0 || e.StepID != "" {
		t.Errorf("after Scrub: proc %d local %d node %d ntasks %d step %q; want no rank",
			e.ProcID, e.LocalID, e.NodeID, e.NTasks, e.StepID)
	}
	if e.HeadNode() != "node1" || e.NodeName() != "node3" || e.CPUsOnThisNode() != 1 {
		t.Errorf("after Scrub: head %q node %q cpus %d; want node1 node3 1", e.HeadNode(), e.NodeName(), e.CPUsOnThisNode())
	}
}

func TestRankVarsIsACopy(t *testing.T) {
	RankVars()[0] = "HOME"
	if got := Scrub([]string{"HOME=/root", "SLURM_PROCID=0"}); !slices.Equal(got, []string{"HOME=/root"}) {
		t.Errorf("after changing the slice RankVars returned, Scrub gives %q", got)
	}
}

func FuzzParseEnv(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzParseEnv; the input is "KEY=value" lines.
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEnv(getter(envMap(s)))
		if err != nil {
			if !errors.Is(err, ErrNotInJob) && !errors.Is(err, ErrInvalidEnv) {
				t.Fatalf("error %v wraps neither ErrNotInJob nor ErrInvalidEnv", err)
			}
			return
		}
		nodes := e.Nodes()
		if e.JobID == "" || len(nodes) == 0 || e.HeadNode() != nodes[0] {
			t.Fatalf("accepted env with job %q nodes %q", e.JobID, nodes)
		}
		if i := e.NodeIndex(); i >= len(nodes) || (i >= 0 && nodes[i] != e.NodeName()) {
			t.Fatalf("NodeIndex %d does not point at %q in %q", i, e.NodeName(), nodes)
		}
		_ = e.CPUsOnThisNode()
		_ = e.MemoryBytesOnThisNode()
		_ = e.GPUs()
	})
}

func TestCUDAIndex(t *testing.T) {
	base := map[string]string{"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1", "SLURMD_NODENAME": "n1"}
	tests := []struct {
		name string
		set  map[string]string
		want map[int]int
	}{
		{"no GPUs", nil, nil},
		{"step GPUs renumbered by ConstrainDevices", map[string]string{"SLURM_STEP_GPUS": "4,5", "CUDA_VISIBLE_DEVICES": "0,1"},
			map[int]int{4: 0, 5: 1}},
		{"job GPUs renumbered (batch step)", map[string]string{"SLURM_JOB_GPUS": "2,6", "CUDA_VISIBLE_DEVICES": "0,1"},
			map[int]int{2: 0, 6: 1}},
		{"step GPUs win over the job's", map[string]string{"SLURM_JOB_GPUS": "0,1,2,3", "SLURM_STEP_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"},
			map[int]int{3: 0}},
		{"not constrained: the same indices", map[string]string{"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "2,3"}, nil},
		{"CUDA_VISIBLE_DEVICES of another length is not guessed from", map[string]string{"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0"}, nil},
		{"only CUDA_VISIBLE_DEVICES", map[string]string{"CUDA_VISIBLE_DEVICES": "1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			for k, v := range tt.set {
				m[k] = v
			}
			got := mustParse(t, m).CUDAIndex()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CUDAIndex() = %v, want %v", got, tt.want)
			}
		})
	}
}
