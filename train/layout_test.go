package train

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-hpc/shoal/wire"
)

func TestLayout(t *testing.T) {
	tests := []struct {
		name   string
		placed []Placed
		order  []string
		// want: per world rank, "actor node local node_rank local_world"
		want []string
	}{
		{"one node, GPUs out of order",
			[]Placed{{Node: "n1", GPUs: []int{3}}, {Node: "n1", GPUs: []int{1}}, {Node: "n1", GPUs: []int{2}}, {Node: "n1", GPUs: []int{0}}},
			[]string{"n1"},
			[]string{"3 n1 0 0 4", "1 n1 1 0 4", "2 n1 2 0 4", "0 n1 3 0 4"}},
		{"nodes in the cluster's order, ranks of a node consecutive",
			[]Placed{{Node: "n2"}, {Node: "n1"}, {Node: "n2"}, {Node: "n3"}, {Node: "n1"}},
			[]string{"n1", "n2", "n3"},
			[]string{"1 n1 0 0 2", "4 n1 1 0 2", "0 n2 0 1 2", "2 n2 1 1 2", "3 n3 0 2 1"}},
		{"a node missing from the order comes last",
			[]Placed{{Node: "x"}, {Node: "n1"}},
			[]string{"n1"},
			[]string{"1 n1 0 0 1", "0 x 0 1 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for i, r := range Layout(tt.placed, tt.order) {
				if r.Rank != i {
					t.Fatalf("rank %d has Rank %d", i, r.Rank)
				}
				got = append(got, strings.Join([]string{itoa(r.Actor), r.Node, itoa(r.LocalRank), itoa(r.NodeRank), itoa(r.LocalWorldSize)}, " "))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Layout:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func itoa(i int) string { return joinInts([]int{i}) }

func TestNodeOrder(t *testing.T) {
	got := NodeOrder([]wire.NodeInfo{{ID: "head"}, {ID: "n3"}, {ID: "n1"}, {ID: "n2"}})
	if want := []string{"head", "n1", "n2", "n3"}; !slices.Equal(got, want) {
		t.Fatalf("NodeOrder = %v, want %v (the head first, then by name)", got, want)
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestEnv(t *testing.T) {
	placed := []Placed{{Node: "a", GPUs: []int{4}, NCCL: map[string]string{"NCCL_SOCKET_IFNAME": "=ib0"}}, {Node: "a", GPUs: []int{5}}}
	ranks := Layout(placed, []string{"a"})
	w := World{Size: 2, MasterAddr: "10.0.0.1", MasterPort: 29400, Attempt: 2, MaxRestarts: 3, CPUs: 7.5, Checkpoint: "/ck/7", RunID: "r"}
	e := envMap(Env(ranks[1], placed[1], w))
	want := map[string]string{"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "0",
		"GROUP_RANK": "0", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400", "TORCHELASTIC_RESTART_COUNT": "2",
		"TORCHELASTIC_MAX_RESTARTS": "3", "OMP_NUM_THREADS": "7", "CUDA_VISIBLE_DEVICES": "5", "SHOAL_TRAIN_CHECKPOINT": "/ck/7"}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %q, want %q", k, e[k], v)
		}
	}
	if _, ok := e["NCCL_SOCKET_IFNAME"]; ok {
		t.Error("rank 1 got rank 0's node's NCCL choice; each rank's own Placed decides")
	}
	w.GPUMode = GPUsShared
	e = envMap(Env(ranks[0], placed[0], w))
	if e["CUDA_VISIBLE_DEVICES"] != "4,5" || e["LOCAL_RANK"] != "0" || e["NCCL_SOCKET_IFNAME"] != "=ib0" {
		t.Errorf("shared mode: CUDA_VISIBLE_DEVICES=%q LOCAL_RANK=%q NCCL_SOCKET_IFNAME=%q", e["CUDA_VISIBLE_DEVICES"], e["LOCAL_RANK"], e["NCCL_SOCKET_IFNAME"])
	}
	w.CPUs = 0.5
	if e := envMap(Env(ranks[0], Placed{Node: "a"}, w)); e["OMP_NUM_THREADS"] != "1" {
		t.Errorf("half a CPU: OMP_NUM_THREADS=%q, want 1", e["OMP_NUM_THREADS"])
	} else if _, ok := e["CUDA_VISIBLE_DEVICES"]; ok {
		t.Error("a rank without GPUs must not get CUDA_VISIBLE_DEVICES")
	}
}

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "SLURM_PROCID=3", "SLURM_LOCALID=1", "SLURM_NTASKS=12", "SLURM_JOB_ID=7", "RANK=9", "HOME=/h"}
	got := MergeEnv(base, []string{"RANK=0", "WORLD_SIZE=2"})
	want := []string{"PATH=/bin", "SLURM_JOB_ID=7", "HOME=/h", "RANK=0", "WORLD_SIZE=2"}
	if !slices.Equal(got, want) {
		t.Fatalf("MergeEnv = %q, want %q (Slurm rank variables gone, ours win)", got, want)
	}
}

func TestPlan(t *testing.T) {
	node := func(id string, cpu, gpu float64, alive bool) wire.NodeInfo {
		return wire.NodeInfo{ID: id, Alive: alive, Total: map[string]float64{"CPU": cpu, "GPU": gpu}}
	}
	gpuNodes := []wire.NodeInfo{node("a", 64, 8, true), node("b", 64, 8, true)}
	cpuNodes := []wire.NodeInfo{node("a", 4, 0, true), node("b", 2, 0, true), node("c", 8, 0, false)}
	tests := []struct {
		name  string
		nodes []wire.NodeInfo
		o     PlanOptions
		ranks int
		res   map[string]float64
		err   string
	}{
		{"auto on GPU nodes: one rank per GPU", gpuNodes, PlanOptions{NprocPerNode: "auto", GPUsPerRank: -1}, 16, map[string]float64{"CPU": 8, "GPU": 1}, ""},
		{"auto on CPU nodes: the smallest live node's CPUs", cpuNodes, PlanOptions{NprocPerNode: "auto", GPUsPerRank: -1}, 4, map[string]float64{"CPU": 1}, ""},
		{"a number, fewer nodes", gpuNodes, PlanOptions{NprocPerNode: "2", NNodes: 1, GPUsPerRank: -1}, 2, map[string]float64{"CPU": 32, "GPU": 4}, ""},
		{"more ranks than CPUs: a share of a CPU", cpuNodes, PlanOptions{NprocPerNode: "4", GPUsPerRank: -1}, 8, map[string]float64{"CPU": 0.5}, ""},
		{"explicit resources", gpuNodes, PlanOptions{NprocPerNode: "gpu", CPUsPerRank: 2, GPUsPerRank: 1}, 16, map[string]float64{"CPU": 2, "GPU": 1}, ""},
		{"gpu without GPUs", cpuNodes, PlanOptions{NprocPerNode: "gpu", GPUsPerRank: -1}, 0, nil, "no GPUs"},
		{"too many nodes", cpuNodes, PlanOptions{NprocPerNode: "1", NNodes: 3, GPUsPerRank: -1}, 0, nil, "--nnodes 3: the cluster has 2 live node(s) (a,b)"},
		{"not a number", cpuNodes, PlanOptions{NprocPerNode: "two"}, 0, nil, `--nproc-per-node "two": use a positive number`},
		{"zero", cpuNodes, PlanOptions{NprocPerNode: "0"}, 0, nil, "use a positive number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, res, err := Plan(tt.nodes, tt.o)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || n != tt.ranks || !reflect.DeepEqual(res, tt.res) {
				t.Fatalf("Plan = %d, %v, %v; want %d, %v", n, res, err, tt.ranks, tt.res)
			}
		})
	}
}

func FuzzPlan(f *testing.F) {
	for _, s := range []string{"auto", "gpu", "cpu", "8", "0", "-1", " 3 ", "1e3", "9999999999999999999", ""} {
		f.Add(s, 0)
	}
	nodes := []wire.NodeInfo{{ID: "a", Alive: true, Total: map[string]float64{"CPU": 4, "GPU": 2}}}
	f.Fuzz(func(t *testing.T, nproc string, nnodes int) {
		n, res, err := Plan(nodes, PlanOptions{NprocPerNode: nproc, NNodes: nnodes, GPUsPerRank: -1})
		if err != nil {
			if !strings.Contains(err.Error(), "--n") {
				t.Fatalf("error %q does not name the flag", err)
			}
			return
		}
		if n <= 0 || len(res) == 0 {
			t.Fatalf("Plan(%q) = %d ranks of %v without an error", nproc, n, res)
		}
	})
}
